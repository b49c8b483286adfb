"""``tiny_cnn_3d``: a few strided 3D convolutions; for tests, demos and laptop runs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medimp.models._registry import register_image_encoder
from medimp.models.image._base import check_volume, output_projection

__all__ = ["TinyCNN3d", "tiny_cnn_3d"]


class TinyCNN3d(nn.Module):
    """Conv(3³, stride 2) → BatchNorm → ReLU blocks, then global average pooling."""

    def __init__(
        self, in_channels: int, widths: Sequence[int] = (8, 16, 32), embed_dim: int | None = None
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        prev = in_channels
        for w in widths:
            layers += [
                nn.Conv3d(prev, w, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(w),
                nn.ReLU(inplace=True),
            ]
            prev = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.proj, self.num_features = output_projection(prev, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` of volumes ``[B, C, D, H, W]``."""
        check_volume(x, self.in_channels, "tiny_cnn_3d")
        return self.proj(self.pool(self.features(x)).flatten(1))


@register_image_encoder
def tiny_cnn_3d(
    in_channels: int, embed_dim: int | None = None, widths: Sequence[int] = (8, 16, 32)
) -> nn.Module:
    """Tiny 3D CNN; ``widths`` gives the channels of each strided block."""
    return TinyCNN3d(in_channels, widths=tuple(widths), embed_dim=embed_dim)
