"""Image-encoder registry: every encoder builds tiny and maps [B,C,D,H,W] to [B,F]."""

from __future__ import annotations

import json

import pytest
import torch

from medimp.models import ModelError, create_image_encoder, list_image_encoders

TINY = {
    "tiny_cnn_3d": {"widths": (4, 8)},
    "resnet10_3d": {"widths": (4, 8, 8, 16)},
    "resnet18_3d": {"widths": (4, 8, 8, 16)},
    "resnet34_3d": {"widths": (4, 4, 8, 8)},
    "resnet50_3d": {"widths": (4, 4, 8, 8)},
    "clip_rn50_3d": {"width": 8, "layers": (1, 1, 1, 1), "heads": 2,
                     "input_size": (16, 16, 16), "first_stride": (1, 1, 1)},
    "vit_3d": {"img_size": (16, 16, 16), "patch_size": 8, "hidden_size": 32, "mlp_dim": 64,
               "num_layers": 1, "num_heads": 2},
}


def test_registry_lists_all_required_encoders():
    names = list_image_encoders()
    for required in ("tiny_cnn_3d", "resnet10_3d", "resnet18_3d", "resnet34_3d", "resnet50_3d"):
        assert required in names


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("embed_dim", [None, 12])
def test_each_encoder_forward_tiny(name, embed_dim):
    if name not in list_image_encoders():
        pytest.skip(f"{name} not registered yet")
    torch.manual_seed(0)
    enc = create_image_encoder(name, in_channels=3, embed_dim=embed_dim, **TINY[name])
    x = torch.randn(2, 3, 16, 16, 16)
    y = enc(x)
    assert y.shape == (2, enc.num_features)
    if embed_dim is not None:
        assert enc.num_features == embed_dim
    assert torch.isfinite(y).all()
    y.sum().backward()  # every encoder trains end to end
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_encoder_config_rebuilds_same_architecture():
    enc = create_image_encoder("resnet10_3d", in_channels=2, embed_dim=8, widths=(4, 8, 8, 16))
    cfg = json.loads(json.dumps(enc.encoder_config))  # exportable as JSON
    again = create_image_encoder(**cfg)
    again.load_state_dict(enc.state_dict())
    enc.eval()
    again.eval()
    x = torch.randn(1, 2, 16, 16, 16)
    assert torch.equal(enc(x), again(x))


def test_unknown_encoder_lists_known_names():
    with pytest.raises(ModelError, match=r"unknown image encoder 'resnet11_3d'.*resnet10_3d"):
        create_image_encoder("resnet11_3d", in_channels=1)


def test_unknown_option_is_a_model_error():
    with pytest.raises(ModelError, match="tiny_cnn_3d"):
        create_image_encoder("tiny_cnn_3d", in_channels=1, no_such_option=3)


def test_wrong_input_channels_is_clear():
    enc = create_image_encoder("tiny_cnn_3d", in_channels=3, widths=(4,))
    with pytest.raises(ModelError, match=r"\[B, 3, D, H, W\].*\[2, 1, 16, 16, 16\]"):
        enc(torch.randn(2, 1, 16, 16, 16))


def test_resnet_width_multiplier_scales_features():
    a = create_image_encoder("resnet18_3d", in_channels=1, widths=(8, 16, 32, 64))
    b = create_image_encoder("resnet18_3d", in_channels=1, widths=(8, 16, 32, 64),
                             width_multiplier=0.5)
    assert a.num_features == 64
    assert b.num_features == 32
    assert create_image_encoder("resnet50_3d", in_channels=1).num_features == 2048
