"""Helpers shared by the image encoders: input checks and the optional output projection."""

from __future__ import annotations

import torch
from torch import nn

from medimp.models._errors import ModelError


def check_volume(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise :class:`ModelError` unless ``x`` is ``[B, in_channels, D, H, W]``."""
    if x.ndim != 5 or x.shape[1] != in_channels:
        raise ModelError(
            f"{name}: expected a batch of volumes [B, {in_channels}, D, H, W], "
            f"got shape {list(x.shape)}; in_channels is the number of phases per exam"
        )


def output_projection(num_features: int, embed_dim: int | None) -> tuple[nn.Module, int]:
    """A linear map to ``embed_dim`` (or identity when ``None``) and the resulting width."""
    if embed_dim is None:
        return nn.Identity(), num_features
    return nn.Linear(num_features, int(embed_dim)), int(embed_dim)
