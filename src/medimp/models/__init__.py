"""medimp.models: image encoders (by name from a registry), text encoders, heads, losses.

- :func:`create_image_encoder` / :func:`list_image_encoders`: 3D encoders ``[B,C,D,H,W] ->
  [B,F]`` with ``num_features``; :func:`register_image_encoder` adds one.
- :func:`create_text_encoder`: a Hugging Face encoder from a local folder with its tokenizer,
  masked pooling, layer-index freezing and a frozen-prefix cache.
- :class:`ProjectionHead`, :class:`ClipLoss`, :class:`SigLipLoss` (patient-masked).
- :func:`create_tabular_encoder`: MLP for clinical tables (``tabular_clip`` baseline).
- :func:`gather_with_grad`: all-gather across processes keeping gradients.
- :func:`load_inflated` / :func:`inflate_2d_state_dict`: 2D checkpoints into 3D encoders;
  :func:`load_state_dict_checked` / :func:`load_state_file`: safe, checked weight loading.

Importing this package does not import MONAI: the image encoders (and the inflation helpers,
which live beside them) load on first use.
"""

from typing import Any

from medimp._textmodel import default_text_model_path
from medimp.models._errors import CheckpointError, ModelError, TextModelError
from medimp.models._registry import (
    create_image_encoder,
    list_image_encoders,
    register_image_encoder,
)
from medimp.models.checkpoint import load_state_dict_checked, load_state_file
from medimp.models.distributed import gather_no_grad, gather_with_grad, is_distributed
from medimp.models.heads import ProjectionHead
from medimp.models.losses import (
    ClipLoss,
    NTXentLoss,
    SigLipLoss,
    SoftClipLoss,
    fact_similarity,
    nt_xent_loss,
    same_group_mask,
    soft_clip_loss,
    soft_targets,
)
from medimp.models.tabular import TabularEncoder, create_tabular_encoder
from medimp.models.text import (
    ClipTextEncoder,
    TextEncoder,
    create_clip_text_encoder,
    create_text_encoder,
)

__all__ = [
    "CheckpointError",
    "ClipLoss",
    "ClipTextEncoder",
    "ModelError",
    "NTXentLoss",
    "ProjectionHead",
    "SigLipLoss",
    "SoftClipLoss",
    "TabularEncoder",
    "TextEncoder",
    "TextModelError",
    "create_clip_text_encoder",
    "create_image_encoder",
    "create_tabular_encoder",
    "create_text_encoder",
    "default_text_model_path",
    "fact_similarity",
    "gather_no_grad",
    "gather_with_grad",
    "inflate_2d_state_dict",
    "is_distributed",
    "list_image_encoders",
    "load_inflated",
    "load_state_dict_checked",
    "load_state_file",
    "nt_xent_loss",
    "register_image_encoder",
    "same_group_mask",
    "soft_clip_loss",
    "soft_targets",
]


_LAZY = {"inflate_2d_state_dict", "load_inflated"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from medimp.models.image import inflate

        return getattr(inflate, name)
    raise AttributeError(f"module 'medimp.models' has no attribute {name!r}")
