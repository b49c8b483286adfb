"""Text encoders: Hugging Face encoders from a local folder, and a CLIP text transformer."""

from medimp.models.text.cache import CacheInfo, PromptCache
from medimp.models.text.hf import TextEncoder, create_text_encoder, parse_freeze

__all__ = ["CacheInfo", "PromptCache", "TextEncoder", "create_text_encoder", "parse_freeze"]
