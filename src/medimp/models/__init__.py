"""medimp.models: image encoders (by name from a registry), text encoders, heads, losses.

- :func:`create_image_encoder` / :func:`list_image_encoders`: 3D encoders ``[B,C,D,H,W] ->
  [B,F]`` with ``num_features``; :func:`register_image_encoder` adds one.
- :func:`create_text_encoder`: a Hugging Face encoder from a local folder with its tokenizer,
  masked pooling, layer-index freezing and a frozen-prefix cache.
- :class:`ProjectionHead`, :class:`ClipLoss`, :class:`SigLipLoss` (patient-masked).
- :func:`gather_with_grad`: all-gather across processes keeping gradients.
"""

from medimp._textmodel import default_text_model_path
from medimp.models._errors import CheckpointError, ModelError, TextModelError
from medimp.models._registry import (
    create_image_encoder,
    list_image_encoders,
    register_image_encoder,
)
from medimp.models.heads import ProjectionHead
from medimp.models.losses import ClipLoss, SigLipLoss, same_group_mask
from medimp.models.text import TextEncoder, create_text_encoder

__all__ = [
    "CheckpointError",
    "ClipLoss",
    "ModelError",
    "ProjectionHead",
    "SigLipLoss",
    "TextEncoder",
    "TextModelError",
    "create_image_encoder",
    "create_text_encoder",
    "default_text_model_path",
    "list_image_encoders",
    "register_image_encoder",
    "same_group_mask",
]
