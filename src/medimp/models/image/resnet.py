"""MONAI 3D ResNets (10/18/34/50) as feature encoders, with configurable width.

Subclassing MONAI's ``ResNet`` keeps its parameter names (``conv1``, ``bn1``, ``layerK.i.convJ``,
``layerK.i.downsample.0``), which are also torchvision's: a 2D torchvision/timm ResNet state dict
can be inflated into these encoders with :func:`medimp.models.image.inflate.load_inflated`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock, ResNetBottleneck
from torch import nn

from medimp.models._errors import ModelError
from medimp.models._registry import register_image_encoder
from medimp.models.image._base import check_volume

__all__ = ["ResNet3dEncoder"]

_DEPTHS = {
    10: (ResNetBlock, (1, 1, 1, 1)),
    18: (ResNetBlock, (2, 2, 2, 2)),
    34: (ResNetBlock, (3, 4, 6, 3)),
    50: (ResNetBottleneck, (3, 4, 6, 3)),
}


class ResNet3dEncoder(ResNet):
    """A MONAI 3D ResNet returning globally pooled features ``[B, num_features]``.

    Without ``embed_dim`` the classifier ``fc`` is absent; with it, ``fc`` is a linear map to
    ``embed_dim``.
    """

    def __init__(
        self,
        depth: int,
        in_channels: int,
        embed_dim: int | None = None,
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        width_multiplier: float = 1.0,
        conv1_size: int = 7,
        conv1_stride: int | Sequence[int] = 2,
        no_max_pool: bool = False,
        norm: str = "batch",
    ) -> None:
        if depth not in _DEPTHS:
            raise ModelError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        widths = [int(w) for w in widths]
        if len(widths) != 4 or min(widths) < 1:
            raise ModelError(f"widths must be 4 positive channel counts, got {widths}")
        block, layers = _DEPTHS[depth]
        scaled = [max(1, round(w * width_multiplier)) for w in widths]
        super().__init__(
            block=block,
            layers=list(layers),
            block_inplanes=scaled,
            spatial_dims=3,
            n_input_channels=in_channels,
            conv1_t_size=conv1_size,
            conv1_t_stride=tuple(conv1_stride) if not isinstance(conv1_stride, int)
            else conv1_stride,
            no_max_pool=no_max_pool,
            num_classes=int(embed_dim) if embed_dim is not None else 1,
            feed_forward=embed_dim is not None,
            norm=norm,
        )
        self.in_channels = in_channels
        self.depth = depth
        natural = scaled[-1] * block.expansion
        self.num_features = int(embed_dim) if embed_dim is not None else natural

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` of volumes ``[B, C, D, H, W]``."""
        check_volume(x, self.in_channels, f"resnet{self.depth}_3d")
        return super().forward(x)


def _builder(depth: int):
    def build(in_channels: int, embed_dim: int | None = None, **kwargs: Any) -> nn.Module:
        return ResNet3dEncoder(depth, in_channels, embed_dim, **kwargs)

    build.__name__ = f"resnet{depth}_3d"
    build.__doc__ = (
        f"MONAI 3D ResNet-{depth}; ``widths`` (4 stage channel counts) and ``width_multiplier`` "
        "set its width (e.g. ``widths=(8, 16, 32, 64)`` for tests); keyword arguments as "
        "ResNet3dEncoder."
    )
    return build


for _depth in sorted(_DEPTHS):
    register_image_encoder(_builder(_depth))
