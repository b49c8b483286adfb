"""``vit_3d``: MONAI's 3D Vision Transformer, mean-pooled over patch tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import ViT
from torch import nn

from medimp.models._errors import ModelError
from medimp.models._registry import register_image_encoder
from medimp.models.image._base import check_volume, output_projection

__all__ = ["ViT3dEncoder"]


class ViT3dEncoder(nn.Module):
    """MONAI ``ViT`` (no classification head) + mean over tokens (+ optional projection).

    The positional embedding is learned for ``img_size``: inputs must have that size.
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int | None = None,
        *,
        img_size: Sequence[int] = (96, 144, 192),
        patch_size: int | Sequence[int] = 16,
        hidden_size: int = 768,
        mlp_dim: int = 3072,
        num_layers: int = 12,
        num_heads: int = 12,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.img_size = tuple(int(s) for s in img_size)
        patch = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(patch_size)
        if len(self.img_size) != 3 or any(s % p for s, p in zip(self.img_size, patch,
                                                                strict=True)):
            raise ModelError(f"vit_3d: img_size {list(self.img_size)} must be 3 sizes divisible "
                             f"by patch_size {list(patch)}")
        if hidden_size % num_heads:
            raise ModelError(f"vit_3d: num_heads ({num_heads}) must divide hidden_size "
                             f"({hidden_size})")
        self.in_channels = in_channels
        self.vit = ViT(
            in_channels=in_channels, img_size=self.img_size, patch_size=patch,
            hidden_size=hidden_size, mlp_dim=mlp_dim, num_layers=num_layers,
            num_heads=num_heads, classification=False, dropout_rate=dropout_rate,
            spatial_dims=3,
        )
        for block in self.vit.blocks:  # unused LayerNorms would trip DDP's unused-parameter check
            if not getattr(block, "with_cross_attention", True):
                block.norm_cross_attn = nn.Identity()
        self.proj, self.num_features = output_projection(hidden_size, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``[B, num_features]`` of volumes ``[B, C, *img_size]``."""
        check_volume(x, self.in_channels, "vit_3d")
        if tuple(x.shape[2:]) != self.img_size:
            raise ModelError(f"vit_3d was built for volumes of size {list(self.img_size)}, got "
                             f"{list(x.shape[2:])}; set img_size to the preprocessing shape")
        tokens, _ = self.vit(x)
        return self.proj(tokens.mean(dim=1))


@register_image_encoder
def vit_3d(in_channels: int, embed_dim: int | None = None, **kw) -> nn.Module:
    """MONAI 3D ViT (default ViT-B/16 at 96×144×192 as MEDIMP's ViT config); all sizes in kw."""
    return ViT3dEncoder(in_channels, embed_dim, **kw)
