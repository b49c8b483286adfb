"""Specific behaviour of the 3D image encoders (beyond the registry smoke test)."""

from __future__ import annotations

import pytest
import torch

from medimp.models import ModelError, create_image_encoder

TINY_CLIP = {"width": 8, "layers": (1, 1, 1, 1), "heads": 2}


def test_clip_rn50_3d_paper_config():
    enc = create_image_encoder("clip_rn50_3d", in_channels=1)
    n_params = sum(p.numel() for p in enc.parameters())
    # CLIP RN50's visual tower is 38M in 2D; 3x3x3 kernels and a 145-token attention pool give
    # ~61M in 3D. A wrong stage width or block count would move this by millions.
    assert 60e6 < n_params < 62.5e6, n_params
    assert enc.num_features == 1024
    assert enc.attnpool.grid == (6, 4, 6)  # 96x144x192 / (16, 32, 32), as MEDIMP
    assert enc.attnpool.positional_embedding.shape == (6 * 4 * 6 + 1, 2048)
    assert enc.conv1.stride == (1, 2, 2)
    assert [len(s) for s in (enc.layer1, enc.layer2, enc.layer3, enc.layer4)] == [3, 4, 6, 3]
    # anti-aliased: no strided convolution anywhere past the stem
    strided = [n for n, m in enc.named_modules()
               if isinstance(m, torch.nn.Conv3d) and max(m.stride) > 1]
    assert strided == ["conv1"]


def test_clip_rn50_3d_other_input_size_interpolates_positions():
    torch.manual_seed(0)
    enc = create_image_encoder("clip_rn50_3d", in_channels=2, embed_dim=8, **TINY_CLIP,
                               input_size=(16, 32, 32)).eval()
    assert enc.attnpool.grid == (1, 1, 1)
    with torch.no_grad():
        a = enc(torch.randn(1, 2, 16, 32, 32))
        b = enc(torch.randn(1, 2, 32, 64, 96))  # grid (2, 2, 3): interpolated embedding
    assert a.shape == b.shape == (1, 8)


def test_clip_rn50_3d_too_small_input_is_clear():
    with pytest.raises(ModelError, match=r"too small.*\[16, 32, 32\]"):
        create_image_encoder("clip_rn50_3d", in_channels=1, **TINY_CLIP,
                             input_size=(16, 16, 16))
    enc = create_image_encoder("clip_rn50_3d", in_channels=1, **TINY_CLIP,
                               input_size=(16, 32, 32))
    with pytest.raises(ModelError, match="too small"):
        enc(torch.randn(1, 1, 16, 16, 16))


def test_clip_rn50_3d_residual_blocks_start_as_identity():
    enc = create_image_encoder("clip_rn50_3d", in_channels=1, **TINY_CLIP,
                               input_size=(16, 32, 32))
    blocks = [*enc.layer1, *enc.layer4]
    assert all(float(b.bn3.weight.detach().abs().sum()) == 0 for b in blocks)


def test_vit_3d_checks_its_input_size():
    enc = create_image_encoder("vit_3d", in_channels=1, img_size=(16, 16, 16), patch_size=8,
                               hidden_size=16, mlp_dim=32, num_layers=1, num_heads=2)
    with pytest.raises(ModelError, match=r"built for volumes of size \[16, 16, 16\]"):
        enc(torch.randn(1, 1, 16, 16, 32))
    with pytest.raises(ModelError, match="divisible"):
        create_image_encoder("vit_3d", in_channels=1, img_size=(20, 16, 16), patch_size=8)
