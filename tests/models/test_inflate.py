"""2D → 3D inflation and checked checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock
from safetensors.torch import save_file
from torch import nn

from medimp.models import CheckpointError, create_image_encoder
from medimp.models.checkpoint import load_state_dict_checked, load_state_file
from medimp.models.image.inflate import inflate_2d_state_dict, load_inflated


def _pair(dims: int, cin: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    return nn.Sequential(conv(cin, 4, 3, padding=1), bn(4), nn.ReLU(), conv(4, 5, 3, padding=1))


def _randomise_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)


def test_depth_constant_input_gives_the_2d_response():
    torch.manual_seed(0)
    net2, net3 = _pair(2, 3), _pair(3, 3)
    _randomise_bn(net2)
    net3.load_state_dict(inflate_2d_state_dict(net2.state_dict(), net3))
    net2.eval()
    net3.eval()
    x2 = torch.randn(2, 3, 12, 12)
    x3 = x2.unsqueeze(2).repeat(1, 1, 9, 1, 1)
    with torch.no_grad():
        y2, y3 = net2(x2), net3(x3)
    # two 3x3x3 layers: slices 2..6 are unaffected by the zero padding along depth
    for d in range(2, 7):
        assert torch.allclose(y3[:, :, d], y2, atol=1e-5)
    # without the division by depth the response would be ~3x (MEDIMP's defect)
    assert not torch.allclose(y3[:, :, 4], 3 * y2, atol=1e-2)


def test_stem_channel_adaptation_preserves_grey_response():
    torch.manual_seed(1)
    net2, net3 = _pair(2, 3), _pair(3, 2)  # RGB weights -> 2 phases
    net3.load_state_dict(inflate_2d_state_dict(net2.state_dict(), net3))
    net2.eval()
    net3.eval()
    grey = torch.randn(1, 1, 10, 10)
    with torch.no_grad():
        y2 = net2(grey.repeat(1, 3, 1, 1))
        y3 = net3(grey.unsqueeze(2).repeat(1, 2, 7, 1, 1))
    assert torch.allclose(y3[:, :, 3], y2, atol=1e-5)


def _resnet2d(layers=(2, 2, 2, 2), widths=(4, 8, 8, 16)) -> ResNet:
    return ResNet(ResNetBlock, list(layers), list(widths), spatial_dims=2, n_input_channels=3,
                  conv1_t_size=7, conv1_t_stride=2, num_classes=10)


def test_load_inflated_resnet_from_safetensors(tmp_path):
    torch.manual_seed(2)
    net2 = _resnet2d()
    path = tmp_path / "resnet18_2d.safetensors"
    save_file({k: v.contiguous() for k, v in net2.state_dict().items()}, str(path))
    enc = create_image_encoder("resnet18_3d", in_channels=3, widths=(4, 8, 8, 16))
    load_inflated(enc, path)
    w2, w3 = net2.conv1.weight, enc.conv1.weight
    assert w3.shape == (4, 3, 7, 7, 7)
    assert torch.allclose(w3, w2.unsqueeze(2).repeat(1, 1, 7, 1, 1) / 7)
    assert torch.equal(enc.layer4[1].bn2.running_var, net2.layer4[1].bn2.running_var)
    # the stem responds to a depth-constant volume as the 2D stem does (interior slices)
    x2 = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        y2 = net2.conv1(x2)
        y3 = enc.conv1(x2.unsqueeze(2).repeat(1, 1, 16, 1, 1))
    assert torch.allclose(y3[:, :, 4], y2, atol=1e-5)


def test_other_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(_resnet2d().state_dict(), path)
    enc = create_image_encoder("resnet10_3d", in_channels=3, widths=(4, 8, 8, 16))
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"r18\.pt.*keys unknown.*layer1\.1\.conv1"):
        load_inflated(enc, path)
    wider = create_image_encoder("resnet18_3d", in_channels=3, widths=(8, 8, 8, 16))
    with pytest.raises(CheckpointError, match=r"conv1\.weight \[4, 3, 7, 7\] vs 3D \[8, 3"):
        load_inflated(wider, path)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_pickled_model_and_missing_file_are_refused(tmp_path):
    path = tmp_path / "full_model.pt"
    torch.save(nn.Linear(2, 2), path)  # a pickled module, not a state dict
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_file(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_file(tmp_path / "nope.safetensors")


def test_wrapped_and_prefixed_checkpoints(tmp_path):
    # a CLIP-style checkpoint: visual tower under "visual.", a text tower beside it, a 2D grid
    enc = create_image_encoder("clip_rn50_3d", in_channels=1, width=8, layers=(1, 1, 1, 1),
                               heads=2, input_size=(16, 32, 32))
    state2d = {}
    for k, v in enc.state_dict().items():
        state2d[f"visual.{k}"] = v[:, :, 0] * 0 + 1.0 if v.ndim == 5 else v.clone()
    state2d["visual.conv1.weight"] = torch.ones(4, 3, 3, 3)  # RGB stem
    state2d["visual.attnpool.positional_embedding"] = torch.zeros(50, 256)
    state2d["transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": state2d, "epoch": 3}, path)
    load_inflated(enc, path, prefix="visual.")
    # RGB ones: summed over 3 channels, divided by 1 phase and by depth 3
    assert torch.allclose(enc.conv1.weight, torch.full((4, 1, 3, 3, 3), 3 / 1 / 3))
    assert torch.allclose(enc.layer1[0].conv2.weight, torch.full_like(enc.layer1[0].conv2.weight,
                                                                      1 / 3))


def test_load_state_dict_checked_lists_problems_and_changes_nothing():
    a = create_image_encoder("tiny_cnn_3d", in_channels=1, widths=(4, 8))
    b = create_image_encoder("tiny_cnn_3d", in_channels=1, widths=(4, 6), embed_dim=3)
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(b, a.state_dict(), source="run/model.safetensors")
    msg = str(err.value)
    assert "run/model.safetensors" in msg
    assert "missing keys: proj.weight, proj.bias" in msg
    assert "features.3.weight [8, 4, 3, 3, 3] vs model [6, 4, 3, 3, 3]" in msg
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    c = create_image_encoder("tiny_cnn_3d", in_channels=1, widths=(4, 8))
    load_state_dict_checked(c, a.state_dict())
    assert all(torch.equal(a.state_dict()[k], v) for k, v in c.state_dict().items())
