"""PretrainConfig: YAML, overrides, and clear errors for unknown keys and wrong types."""

from __future__ import annotations

import re

import pytest

from medimp.train import ConfigError, PretrainConfig, load_config, save_config
from medimp.train.config import apply_overrides


def test_every_option_has_a_default_and_description() -> None:
    cfg = PretrainConfig()
    assert cfg.method == "medimp" and cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 0.2
    assert cfg.optim.grad_clip == 1.0

    def walk(model_cls, prefix=""):
        for name, field in model_cls.model_fields.items():
            assert field.description, f"{prefix}{name} lacks a description"
            assert not field.is_required(), f"{prefix}{name} has no default"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{prefix}{name}.")

    walk(PretrainConfig)


def test_yaml_roundtrip_and_overrides(tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("method: image_ssl\noptim:\n  lr: 0.001\npreprocess:\n  shape: [16, 16, 16]\n")
    cfg = load_config(path, ["optim.lr=3e-4", "epochs=3", "image_encoder.kwargs.width=4",
                             "precision=bf16-mixed"])
    assert cfg.method == "image_ssl"
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.epochs == 3
    assert cfg.image_encoder.kwargs == {"width": 4}
    assert cfg.precision == "bf16-mixed"
    assert load_config(None, ["precision=32"]).precision == "32"  # YAML reads 32 as a number
    assert cfg.preprocess["shape"] == [16, 16, 16]
    out = tmp_path / "saved.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg


def test_unknown_key_is_an_error(tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim\.learning_rate"):
        load_config(path)
    with pytest.raises(ConfigError, match="batchsize"):
        load_config(None, ["batchsize=4"])


def test_wrong_type_is_an_error() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        load_config(None, ["epochs=many"])
    with pytest.raises(ConfigError, match="method"):
        load_config(None, ["method=dino"])
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(None, {"batch_size": 1})


def test_bad_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["epochs"])


def test_override_into_a_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not a group"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_architecture_ignores_run_control() -> None:
    a = PretrainConfig(epochs=2, batch_size=4)
    b = PretrainConfig(epochs=50, batch_size=8, num_workers=2)
    assert a.architecture() == b.architecture()
    c = PretrainConfig(embed_dim=64)
    assert c.architecture() != a.architecture()



@pytest.mark.parametrize(("override", "message"), [
    ("optim.lrr", "optim.lrr: unknown option; did you mean optim.lr?"),   # typo in a group
    ("optm.lr", "optm: unknown option; did you mean optim?"),             # typo in the group
    ("epoch", "epoch: unknown option; did you mean epochs?"),
    ("lr", "lr: unknown option; did you mean optim.lr?"),                 # wrong group
    ("text.frezee", "text.frezee: unknown option; did you mean text.freeze?"),
])
def test_unknown_key_suggests_the_closest_valid_ones(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, [f"{override}=1"])
    with pytest.raises(ConfigError, match=r"see docs/train\.md"):
        load_config(None, ["zzz_nothing_like_it=1"])
