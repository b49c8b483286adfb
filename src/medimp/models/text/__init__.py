"""Text encoders: Hugging Face encoders from a local folder, and a CLIP text transformer."""

from medimp.models.text.cache import CacheInfo, PromptCache
from medimp.models.text.clip_text import ClipTextEncoder, create_clip_text_encoder
from medimp.models.text.hf import TextEncoder, create_text_encoder, parse_freeze

__all__ = [
    "CacheInfo",
    "ClipTextEncoder",
    "PromptCache",
    "TextEncoder",
    "create_clip_text_encoder",
    "create_text_encoder",
    "parse_freeze",
]
