"""MEDIMP augmentations: configurable, reproducible, identical geometry for all phases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medimp.data.pipeline.augment import AugmentConfig, build_augment, load_augment_config


def _exam(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    pre = np.zeros((16, 16, 16), np.float32)
    pre[3:9, 4:12, 6:14] = 1.0
    pre += 0.1 * rng.random(pre.shape, dtype=np.float32)
    return torch.from_numpy(np.stack([pre, 2.0 * pre, 3.0 * pre]))


def _apply(config: AugmentConfig, seed: int, image: torch.Tensor) -> torch.Tensor:
    aug = build_augment(config)
    aug.set_random_state(seed=seed)
    return torch.as_tensor(aug({"image": image.clone()})["image"])


def test_yaml_roundtrip_defaults_and_errors(tmp_path) -> None:
    path = tmp_path / "aug.yaml"
    path.write_text("flip_prob: 0.3\ngamma: [0.8, 1.2]\n")
    cfg = load_augment_config(path)
    assert cfg.flip_prob == 0.3 and cfg.gamma == (0.8, 1.2)
    assert cfg.noise_std == AugmentConfig().noise_std  # missing keys take their default
    path.write_text("flip_probability: 0.3\n")
    with pytest.raises(ValueError, match=r"aug\.yaml"):
        load_augment_config(path)
    path.write_text("gamma: [2.0, 1.0]\n")
    with pytest.raises(ValueError, match="gamma"):
        load_augment_config(path)
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_augment_config(path)


def test_every_field_has_a_description() -> None:
    for name, field in AugmentConfig.model_fields.items():
        assert field.description, name


def test_same_seed_same_result_other_seed_differs() -> None:
    cfg = AugmentConfig(
        flip_prob=0.5, affine_prob=1.0, blur_prob=0.5, noise_prob=1.0, gamma_prob=0.5
    )
    img = _exam()
    a, b = _apply(cfg, 7, img), _apply(cfg, 7, img)
    c = _apply(cfg, 8, img)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, img)
    assert torch.isfinite(a).all()


def test_spatial_transform_is_shared_by_all_phases() -> None:
    # flips and affine are linear in intensity: if phases are 1x, 2x, 3x each other before,
    # they still are after, but only if the same geometry was applied to every channel
    cfg = AugmentConfig(
        flip_prob=0.5, affine_prob=1.0, rotate_deg=20, blur_prob=1.0, noise_prob=0, gamma_prob=0
    )
    for seed in range(4):
        out = _apply(cfg, seed, _exam())
        assert not torch.allclose(out[0], _exam()[0])
        torch.testing.assert_close(out[1], 2 * out[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out[2], 3 * out[0], atol=1e-4, rtol=1e-4)


def test_gamma_keeps_phase_order() -> None:
    cfg = AugmentConfig.none().model_copy(update={"gamma_prob": 1.0, "gamma": (1.5, 1.5)})
    out = _apply(cfg, 0, _exam())
    # one intensity mapping for the whole exam: the enhancement order pre < arterial < tubular
    # survives in every voxel of the kidney block
    block = out[:, 3:9, 4:12, 6:14]
    assert (block[1] > block[0]).all() and (block[2] > block[1]).all()


def test_none_is_identity() -> None:
    img = _exam()
    assert torch.equal(_apply(AugmentConfig.none(), 0, img), img)


@pytest.mark.parametrize("probability", [0.5, 1.0])
def test_reseeding_in_place_gives_monai_s_own_draws(probability) -> None:
    """``Reseeder`` (the generators re-seeded in place) augments exactly as MONAI's
    ``set_random_state(seed=...)`` (a new generator for every transform at every call)."""
    from medimp.data.pipeline.augment import Reseeder

    cfg = AugmentConfig(flip_prob=probability, affine_prob=probability,
                        blur_prob=probability, noise_prob=probability, gamma_prob=probability)
    ours, monai = build_augment(cfg), build_augment(cfg)
    reseed = Reseeder(ours)
    x = torch.rand(3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    for seed in [0, 1, 7, 2**31 - 2, 123456, *range(20, 30)]:
        reseed(seed)
        monai.set_random_state(seed=seed)
        a = ours({"image": x.clone()})["image"]
        b = monai({"image": x.clone()})["image"]
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), seed
    assert reseed._plan is not None  # the in-place path was taken after the first call
