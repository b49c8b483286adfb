"""``clip_rn50_3d``: CLIP's modified ResNet made 3D, MEDIMP's image encoder.

Differences from a plain ResNet (Radford et al. 2021), carried to 3D as in MEDIMP:

- a stem of three 3×3×3 convolutions (the first with stride (1, 2, 2): MRI volumes are thinner
  in depth), followed by an average pool instead of a max pool;
- anti-aliased strided bottlenecks: the stride is an average pool before the last 1×1×1
  convolution (and before the shortcut's convolution), never a strided convolution;
- attention pooling: the mean token queries all positions (with a learned positional
  embedding) instead of a global average.

MEDIMP's configuration: layers (3, 4, 6, 3), width 64, embedding 1024, input 96×144×192.
Parameter names follow CLIP's ``visual`` tower (``conv1``, ``layer1.0.downsample.0``,
``attnpool.q_proj``...), so a 2D CLIP RN50 checkpoint can be inflated with
``load_inflated(model, path, prefix="visual.")``.

One deliberate change: the positional embedding is interpolated (trilinear) when the feature grid
differs from the one of ``input_size``, so other input sizes can be encoded. The input must be at
least 16·s in each dimension (s = first stride, so 16×32×32 by default); small test volumes use
``first_stride=(1, 1, 1)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from medimp.models._errors import ModelError
from medimp.models._registry import register_image_encoder
from medimp.models.image._base import check_volume

__all__ = ["AttentionPool3d", "Bottleneck3d", "ModifiedResNet3d"]


def _avgpool(k: int) -> nn.Module:
    return nn.AvgPool3d(k)


class Bottleneck3d(nn.Module):
    """1×1×1 → 3×3×3 → [avgpool] → 1×1×1 bottleneck with an avgpool-then-conv shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.avgpool = _avgpool(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv3d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", _avgpool(stride) if stride > 1 else nn.Identity()),
                ("0", nn.Conv3d(inplanes, out, 1, bias=False)),
                ("1", nn.BatchNorm3d(out)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(y + identity)


class AttentionPool3d(nn.Module):
    """Multi-head attention of the mean token over all grid positions (CLIP's attnpool).

    Args:
        grid: feature-grid size (d, h, w) the positional embedding is made for.
        embed_dim: channels of the feature map.
        num_heads: attention heads (must divide ``embed_dim``).
        output_dim: width of the output (``c_proj``).
    """

    def __init__(self, grid: Sequence[int], embed_dim: int, num_heads: int,
                 output_dim: int | None = None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ModelError(f"attention heads ({num_heads}) must divide the feature width "
                             f"({embed_dim})")
        self.grid = tuple(int(g) for g in grid)
        self.positional_embedding = nn.Parameter(
            torch.randn(math.prod(self.grid) + 1, embed_dim) / embed_dim**0.5
        )
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def _pos(self, grid: tuple[int, ...]) -> torch.Tensor:
        pos = self.positional_embedding
        if grid == self.grid:
            return pos
        cls, spatial = pos[:1], pos[1:]
        c = spatial.shape[-1]
        spatial = spatial.T.reshape(1, c, *self.grid)
        spatial = functional.interpolate(spatial, size=grid, mode="trilinear",
                                         align_corners=False)
        return torch.cat([cls, spatial.reshape(c, -1).T], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool a feature map ``[B, C, d, h, w]`` to ``[B, output_dim]``."""
        b, c = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # [B, L, C]
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self._pos(tuple(x.shape[2:])).to(tokens.dtype)
        h, hd = self.num_heads, c // self.num_heads
        q = self.q_proj(tokens[:, :1]).view(b, 1, h, hd).transpose(1, 2)
        k = self.k_proj(tokens).view(b, -1, h, hd).transpose(1, 2)
        v = self.v_proj(tokens).view(b, -1, h, hd).transpose(1, 2)
        out = functional.scaled_dot_product_attention(q, k, v)  # [B, h, 1, hd]
        return self.c_proj(out.transpose(1, 2).reshape(b, c))


def _grid_of(input_size: Sequence[int], first_stride: Sequence[int]) -> tuple[int, ...]:
    # conv(k3, p1, stride s) gives ceil(n/s); then the stem pool and 3 strided stages halve
    # (floor, as nn.AvgPool3d); a size that reaches 0 means the input is too small.
    grid = []
    for n, s in zip(input_size, first_stride, strict=True):
        n = math.ceil(n / s)
        for _ in range(4):
            n //= 2
        grid.append(n)
    if min(grid) < 1:
        need = [16 * s for s in first_stride]
        raise ModelError(
            f"clip_rn50_3d: input size {list(input_size)} is too small; with first_stride "
            f"{list(first_stride)} each of D, H, W must be at least {need}"
        )
    return tuple(grid)


class ModifiedResNet3d(nn.Module):
    """CLIP's modified ResNet in 3D; ``forward`` returns ``[B, num_features]``.

    Args:
        in_channels: number of input phases.
        layers: bottlenecks per stage.
        width: stem width (stage widths are width, 2·width, 4·width, 8·width; features 32·width).
        embed_dim: output width of the attention pool.
        heads: attention heads (default ``32·width // 64`` as CLIP).
        input_size: (D, H, W) the positional embedding is sized for.
        first_stride: stride of the first stem convolution.
    """

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        embed_dim: int = 1024,
        *,
        heads: int | None = None,
        input_size: Sequence[int] = (96, 144, 192),
        first_stride: Sequence[int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ModelError(f"layers must be 4 positive block counts, got {list(layers)}")
        if width < 2 or width % 2:
            raise ModelError(f"width must be an even number >= 2, got {width}")
        if len(input_size) != 3 or len(first_stride) != 3:
            raise ModelError("input_size and first_stride must have 3 entries (D, H, W)")
        self.in_channels = in_channels
        self.input_size = tuple(int(s) for s in input_size)
        self.first_stride = tuple(int(s) for s in first_stride)
        half = width // 2
        self.conv1 = nn.Conv3d(in_channels, half, 3, stride=tuple(first_stride), padding=1,
                               bias=False)
        self.bn1 = nn.BatchNorm3d(half)
        self.conv2 = nn.Conv3d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(half)
        self.conv3 = nn.Conv3d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm3d(width)
        self.avgpool = _avgpool(2)
        self.relu = nn.ReLU(inplace=True)
        inplanes = width
        stages = []
        for i, blocks in enumerate(layers):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            mods = [Bottleneck3d(inplanes, planes, stride)]
            inplanes = planes * Bottleneck3d.expansion
            mods += [Bottleneck3d(inplanes, planes) for _ in range(1, blocks)]
            stages.append(nn.Sequential(*mods))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        feat = width * 32
        heads = heads or max(1, feat // 64)
        self.attnpool = AttentionPool3d(_grid_of(self.input_size, first_stride), feat, heads,
                                        embed_dim)
        self.num_features = int(embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.attnpool.c_proj.in_features**-0.5
        for lin in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj,
                    self.attnpool.c_proj):
            nn.init.normal_(lin.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)  # each residual block starts as identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` of volumes ``[B, C, D, H, W]``."""
        check_volume(x, self.in_channels, "clip_rn50_3d")
        _grid_of(tuple(x.shape[2:]), self.first_stride)  # clear error if too small
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


@register_image_encoder
def clip_rn50_3d(
    in_channels: int,
    embed_dim: int | None = None,
    *,
    layers: Sequence[int] = (3, 4, 6, 3),
    width: int = 64,
    heads: int | None = None,
    input_size: Sequence[int] = (96, 144, 192),
    first_stride: Sequence[int] = (1, 2, 2),
) -> nn.Module:
    """MEDIMP's 3D CLIP ResNet-50; ``embed_dim=None`` means the paper's 1024."""
    return ModifiedResNet3d(
        in_channels, layers=tuple(layers), width=width,
        embed_dim=1024 if embed_dim is None else int(embed_dim), heads=heads,
        input_size=tuple(input_size), first_stride=tuple(first_stride),
    )
