"""Projection heads: encoder features → the shared image–text embedding space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from medimp.models._errors import ModelError

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Linear (CLIP) or two-layer MLP (SimCLR, Hager et al.) projection.

    Args:
        in_features: width of the encoder features.
        embed_dim: width of the shared embedding.
        kind: ``"linear"`` or ``"mlp"`` (Linear → GELU → Linear, hidden width ``hidden``).
        hidden: hidden width of the MLP (default ``max(in_features, embed_dim)``).
        normalize: L2-normalise the output (the losses also normalise, so this is for
            embedding export and retrieval).
    """

    def __init__(
        self,
        in_features: int,
        embed_dim: int,
        kind: str = "linear",
        hidden: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ModelError(f"projection head kind={kind!r} is not 'linear' or 'mlp'")
        if in_features < 1 or embed_dim < 1:
            raise ModelError(f"in_features and embed_dim must be >= 1, got {in_features}, "
                             f"{embed_dim}")
        self.kind = kind
        self.normalize = normalize
        self.in_features = int(in_features)
        self.num_features = int(embed_dim)
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_features, embed_dim)
        else:
            h = int(hidden or max(in_features, embed_dim))
            self.net = nn.Sequential(nn.Linear(in_features, h), nn.GELU(), nn.Linear(h, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``[B, in_features]`` to ``[B, embed_dim]`` (unit norm if ``normalize``)."""
        y = self.net(x)
        return functional.normalize(y, dim=-1) if self.normalize else y
