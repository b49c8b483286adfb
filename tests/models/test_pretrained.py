"""Pretrained 2D weights from the three layouts (OpenAI CLIP TorchScript, open_clip, plain
ResNet), built here with the exact key names (nothing can be downloaded), inflated into the 3D
encoders; the inflated trunk answers a depth-constant volume as the 2D network answers the
slice."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock
from torch import nn

from medimp.models import CheckpointError, create_image_encoder
from medimp.models.image.pretrained import read_2d_checkpoint, read_script_archive

WIDTH, LAYERS = 8, (1, 1, 1, 1)


# --- a tiny 2D copy of OpenAI CLIP's ModifiedResNet (clip/model.py), same parameter names ---
class Bottleneck2d(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = nn.Identity()
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride) if stride > 1 else nn.Identity()),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(self.avgpool(y)))
        return self.relu(y + self.downsample(x))


class AttentionPool2d(nn.Module):
    def __init__(self, spacial: int, dim: int, heads: int, out: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial**2 + 1, dim) / dim**0.5)
        self.k_proj, self.q_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.c_proj = nn.Linear(dim, dim), nn.Linear(dim, out)
        self.num_heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(x.mean(dim=(2, 3)))  # enough for tracing; the keys are what matter


class ModifiedResNet2d(nn.Module):
    def __init__(self, width: int = WIDTH, layers=LAYERS, output_dim: int = 1024) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU()
        inplanes, stages = width, []
        for i, n in enumerate(layers):
            planes = width * 2**i
            mods = [Bottleneck2d(inplanes, planes, 1 if i == 0 else 2)]
            inplanes = planes * 4
            mods += [Bottleneck2d(inplanes, planes) for _ in range(1, n)]
            stages.append(nn.Sequential(*mods))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(7, width * 32, 2, output_dim)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attnpool(self.trunk(x))


class CLIP(nn.Module):
    """The OpenAI layout: visual tower beside a (stub) text tower and logit_scale."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = ModifiedResNet2d()
        self.token_embedding = nn.Embedding(10, 16)
        self.ln_final = nn.LayerNorm(16)
        self.logit_scale = nn.Parameter(torch.ones([]) * 4.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model.eval()


def _trunk3d(enc: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for conv, bn in ((enc.conv1, enc.bn1), (enc.conv2, enc.bn2), (enc.conv3, enc.bn3)):
        x = enc.relu(bn(conv(x)))
    x = enc.avgpool(x)
    return enc.layer4(enc.layer3(enc.layer2(enc.layer1(x))))


@pytest.fixture(scope="module")
def openai_rn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CLIP]:
    torch.manual_seed(0)
    clip = CLIP()
    _randomise(clip)
    path = tmp_path_factory.mktemp("openai") / "RN50.pt"
    torch.jit.trace(clip, torch.randn(1, 3, 32, 32)).save(str(path))
    return path, clip


def test_openai_torchscript_is_read_without_its_code(openai_rn, tmp_path: Path) -> None:
    path, clip = openai_rn
    state = read_script_archive(path)
    assert set(state) >= set(clip.state_dict())
    for k, v in clip.state_dict().items():
        assert torch.equal(state[k], v), k
    # the code is never read: an archive whose code is garbage reads the same
    broken = tmp_path / "RN50_nocode.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if "/code/" in item.filename:
                data = b"raise SystemExit('code was executed')\n"
            dst.writestr(item, data)
    assert torch.equal(read_script_archive(broken)["visual.conv1.weight"],
                       clip.visual.conv1.weight)
    sd, layout = read_2d_checkpoint(path)
    assert layout == "openai_clip" and "conv1.weight" in sd and "logit_scale" not in sd


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_archive_referencing_other_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"visual.x": _Evil()}, protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps(()))
    with pytest.raises(CheckpointError, match=r"references (posix|os)\.system.*refused"):
        read_script_archive(path)


def test_inflated_clip_trunk_on_a_depth_constant_volume_equals_the_2d_one(openai_rn) -> None:
    path, clip = openai_rn
    enc = create_image_encoder("clip_rn50_3d", 2, pretrained=path, width=WIDTH, layers=LAYERS,
                               heads=2, input_size=(32, 32, 32), first_stride=(1, 2, 2)).eval()
    assert torch.allclose(enc.attnpool.c_proj.weight, clip.visual.attnpool.c_proj.weight)
    grey = torch.randn(1, 1, 32, 32)
    depth = 160  # the trunk's depth receptive field is < 64 slices: the middle is interior
    with torch.no_grad():
        y2 = clip.visual.trunk(grey.repeat(1, 3, 1, 1))  # RGB stem fed a grey slice
        y3 = _trunk3d(enc, grey.unsqueeze(2).repeat(1, 2, depth, 1, 1))  # two phases
    mid = y3.shape[2] // 2
    assert y3.shape[2] == depth // 16
    for d in (mid - 1, mid, mid + 1):
        torch.testing.assert_close(y3[:, :, d], y2, atol=2e-5, rtol=1e-4)


def test_open_clip_checkpoint_with_ddp_prefix(openai_rn, tmp_path: Path) -> None:
    _, clip = openai_rn
    path = tmp_path / "epoch_32.pt"
    torch.save({"epoch": 32, "name": "RN50",
                "state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    sd, layout = read_2d_checkpoint(path)
    assert layout == "open_clip" and set(sd) == set(clip.visual.state_dict())
    enc = create_image_encoder("clip_rn50_3d", 3, pretrained=path, width=WIDTH, layers=LAYERS,
                               heads=2, input_size=(32, 32, 32))
    w2 = clip.visual.layer2[0].conv2.weight
    torch.testing.assert_close(enc.layer2[0].conv2.weight, w2.unsqueeze(2).repeat(1, 1, 3, 1, 1)
                               / 3)


def _resnet2d(widths=(8, 16, 16, 32), layers=(2, 2, 2, 2)) -> ResNet:
    return ResNet(ResNetBlock, list(layers), list(widths), spatial_dims=2, n_input_channels=3,
                  conv1_t_size=7, conv1_t_stride=2, num_classes=10)


def test_plain_resnet_state_dict_inflates_and_answers_as_in_2d(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net2 = _randomise(_resnet2d(layers=(1, 1, 1, 1)))
    # torchvision's names exactly
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
            "fc.weight"} <= set(net2.state_dict())
    path = tmp_path / "resnet18.pth"
    torch.save(net2.state_dict(), path)
    enc = create_image_encoder("resnet10_3d", 2, pretrained=str(path),
                               widths=(8, 16, 16, 32)).eval()
    x2 = torch.randn(1, 1, 32, 32)
    depth = 352  # the trunk's depth receptive field is about +-130 slices
    with torch.no_grad():
        def trunk(m, x):
            x = m.act(m.bn1(m.conv1(x)))
            x = m.maxpool(x)
            return m.layer4(m.layer3(m.layer2(m.layer1(x))))
        y2 = trunk(net2, x2.repeat(1, 3, 1, 1))
        y3 = trunk(enc, x2.unsqueeze(2).repeat(1, 2, depth, 1, 1))
    mid = y3.shape[2] // 2
    torch.testing.assert_close(y3[:, :, mid], y2, atol=2e-5, rtol=1e-4)


def test_layout_mismatch_names_the_first_missing_and_surplus_keys(openai_rn,
                                                                  tmp_path: Path) -> None:
    path, _ = openai_rn
    enc = create_image_encoder("resnet18_3d", 3, widths=(8, 16, 16, 32))
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"openai_clip layout.*first missing keys: "
                                              r"layer1\.1\.conv1\.weight.*first surplus keys: "
                                              r"conv2\.weight"):
        from medimp.models.image.pretrained import load_pretrained_2d

        load_pretrained_2d(enc, path)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    r18 = tmp_path / "r18.pt"
    torch.save(_resnet2d().state_dict(), r18)
    with pytest.raises(CheckpointError, match=r"resnet2d layout.*first missing keys: "
                                              r"conv2\.weight.*first surplus keys: "
                                              r"layer1\.1\.conv1\.weight"):
        create_image_encoder("clip_rn50_3d", 3, pretrained=r18, width=WIDTH, layers=LAYERS,
                             heads=2, input_size=(32, 32, 32))


def test_torch_file_holding_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_2d_checkpoint(path)
    buf = io.BytesIO(b"not a zip")
    (tmp_path / "x.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError):
        read_2d_checkpoint(tmp_path / "x.pt")


def test_pretrain_from_the_cli_starts_from_the_inflated_weights(openai_rn, simulated_cohort,
                                                                tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app
    from medimp.train.checkpoint import load_image_encoder

    path, clip = openai_rn
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("image_encoder: {name: clip_rn50_3d, kwargs: {width: 8, layers: [1, 1, 1, 1],"
                   " heads: 2, input_size: [16, 16, 16], first_stride: [1, 1, 1]}}\n"
                   "embed_dim: 8\npreprocess: {shape: [16, 16, 16]}\naugment: null\n"
                   f"cache_dir: {tmp_path / 'cache'}\n")
    run = tmp_path / "run"
    res = CliRunner().invoke(app, [
        "pretrain", "--cohort", str(simulated_cohort), "--out", str(run), "--config", str(cfg),
        "--method", "tabular_clip", "--epochs", "1", "--batch-size", "8", "--no-progress",
        "--set", f"image_encoder.pretrained={path}", "--set", "optim.lr=1e-12"])
    assert res.exit_code == 0, res.output
    enc, _ = load_image_encoder(run)
    w2 = clip.visual.layer3[0].conv3.weight  # 1x1 kernel: depth 1
    torch.testing.assert_close(enc.layer3[0].conv3.weight[:, :, 0], w2, atol=1e-6, rtol=1e-5)
    assert "pretrained:" in (run / "config.yaml").read_text()
    # a missing file is one clear line, not a traceback
    res = CliRunner().invoke(app, [
        "pretrain", "--cohort", str(simulated_cohort), "--out", str(tmp_path / "r2"),
        "--config", str(cfg), "--epochs", "1", "--no-progress",
        "--set", f"image_encoder.pretrained={tmp_path / 'nope.pt'}"])
    assert res.exit_code == 1 and "nope.pt do not exist" in res.output
    assert "Traceback" not in res.output
    # random_init with pretrained weights would export those weights as the "random" floor:
    # refused in one line, before anything is written
    res = CliRunner().invoke(app, [
        "pretrain", "--cohort", str(simulated_cohort), "--out", str(tmp_path / "r3"),
        "--config", str(cfg), "--method", "random_init", "--no-progress",
        "--set", f"image_encoder.pretrained={path}"])
    assert res.exit_code == 1, res.output
    assert res.output.count("\n") == 1 and "not a random initialisation" in res.output
    assert not (tmp_path / "r3").exists()
