"""Preprocessing: MONAI geometry, one intensity scale per exam, phase stacking."""

from __future__ import annotations

import numpy as np
import pytest

from medimp.data.pipeline.preprocess import PreprocessConfig, PreprocessError, preprocess_exam

PHASES = ["pre", "arterial", "tubular"]
KEEP = {"spacing": None, "orientation": "RAS"}


def _kidney(shape=(24, 20, 16), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = 10.0 + 5.0 * rng.random(shape, dtype=np.float32)
    vol[8:16, 6:14, 4:12] += 100.0
    return vol.astype(np.float32)


def test_stack_shape_mask_and_missing_phase_is_zero() -> None:
    pre = _kidney()
    vols = {"pre": (pre, np.eye(4)), "arterial": (2 * pre, np.eye(4)), "tubular": None}
    image, mask = preprocess_exam(vols, PHASES, PreprocessConfig(shape=(16, 16, 16)))
    assert image.shape == (3, 16, 16, 16) and image.dtype == np.float32
    assert mask.tolist() == [True, True, False]
    assert not image[2].any()
    assert np.isfinite(image).all()


def test_normalisation_is_per_exam_not_per_phase() -> None:
    pre = _kidney()
    art = 3.0 * pre
    cfg = PreprocessConfig(shape=pre.shape, **KEEP)
    image, _ = preprocess_exam(
        {"pre": (pre, np.eye(4)), "arterial": (art, np.eye(4))}, ["pre", "arterial"], cfg
    )
    lo, hi = np.percentile(pre.astype(np.float64), (1, 99))
    np.testing.assert_allclose(image[0], (pre - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(image[1], (art - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    # the enhancement survives: per-phase normalisation would make both channels equal
    assert image[1].max() > 2.5 * image[0].max()


def test_reference_phase_is_configurable_and_falls_back() -> None:
    pre = _kidney()
    vols = {"pre": (pre, np.eye(4)), "arterial": (2 * pre, np.eye(4))}
    by_art, _ = preprocess_exam(
        vols,
        ["pre", "arterial"],
        PreprocessConfig(shape=pre.shape, reference_phase="arterial", **KEEP),
    )
    lo, hi = np.percentile(2 * pre.astype(np.float64), (1, 99))
    np.testing.assert_allclose(by_art[1], (2 * pre - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(by_art[0], (pre - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    only_art, mask = preprocess_exam(
        {"arterial": (2 * pre, np.eye(4))},
        ["pre", "arterial"],
        PreprocessConfig(shape=pre.shape, **KEEP),
    )
    assert mask.tolist() == [False, True] and np.isfinite(only_art).all()
    with pytest.raises(PreprocessError, match="reference_phase 'venous'"):
        preprocess_exam(vols, ["pre", "arterial"], PreprocessConfig(reference_phase="venous"))


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_constant_volume_gives_zeros_not_nan(value: float) -> None:
    vol = np.full((20, 20, 20), value, np.float32)
    for crop in ("center", "foreground"):
        image, _ = preprocess_exam({"pre": (vol, np.eye(4))}, ["pre"], PreprocessConfig(crop=crop))
        assert np.isfinite(image).all()
        assert np.abs(image).max() <= 1.0  # volume 0, padding (raw 0) at most 1 away
        exact, _ = preprocess_exam(
            {"pre": (vol, np.eye(4))}, ["pre"], PreprocessConfig(crop=crop, shape=vol.shape, **KEEP)
        )
        assert not exact.any()
    # a later phase of a constant exam is scaled relative to the constant level
    image, _ = preprocess_exam(
        {"pre": (vol + 1, np.eye(4)), "arterial": (2 * (vol + 1), np.eye(4))},
        ["pre", "arterial"],
        PreprocessConfig(shape=vol.shape, **KEEP),
    )
    np.testing.assert_allclose(image[1], 1.0, rtol=1e-5)


def test_bad_inputs_raise_typed_errors_naming_the_exam() -> None:
    vol = _kidney()
    bad = vol.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(PreprocessError, match=r"patient P1 exam D15 phase pre.*NaN"):
        preprocess_exam(
            {"pre": (bad, np.eye(4))}, ["pre"], PreprocessConfig(), where="patient P1 exam D15"
        )
    with pytest.raises(PreprocessError, match="3D"):
        preprocess_exam({"pre": (vol[..., None], np.eye(4))}, ["pre"], PreprocessConfig())
    with pytest.raises(PreprocessError, match="singular"):
        preprocess_exam({"pre": (vol, np.zeros((4, 4)))}, ["pre"], PreprocessConfig())
    with pytest.raises(PreprocessError, match="none of the phases"):
        preprocess_exam({"pre": None}, ["pre"], PreprocessConfig())
    assert issubclass(PreprocessError, ValueError)


def test_orientation_to_ras_undoes_a_flipped_affine() -> None:
    vol = _kidney()
    ras, _ = preprocess_exam(
        {"pre": (vol, np.eye(4))}, ["pre"], PreprocessConfig(shape=vol.shape, **KEEP)
    )
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:3, 3] = [vol.shape[0] - 1, vol.shape[1] - 1, 0]
    flipped = vol[::-1, ::-1, :].copy()
    out, _ = preprocess_exam(
        {"pre": (flipped, lps_affine)}, ["pre"], PreprocessConfig(shape=vol.shape, **KEEP)
    )
    np.testing.assert_allclose(out, ras, atol=1e-5)


def test_spacing_resamples_to_target_voxel_size() -> None:
    vol = np.zeros((32, 32, 32), np.float32)
    vol[8:24, 8:24, 8:24] = 1.0  # a 16 mm cube at 1 mm
    cfg = PreprocessConfig(spacing=(2.0, 2.0, 2.0), shape=(16, 16, 16), normalisation="none")
    image, _ = preprocess_exam({"pre": (vol, np.eye(4))}, ["pre"], cfg)
    inside = (image[0] > 0.5).sum()
    assert 7**3 <= inside <= 9**3  # about an 8-voxel cube at 2 mm


def test_phase_on_another_grid_is_resampled_to_the_reference() -> None:
    pre = np.zeros((32, 32, 32), np.float32)
    pre[8:24, 8:24, 8:24] = 1.0
    coarse = pre[::2, ::2, ::2].copy()  # same anatomy at 2 mm
    aff2 = np.diag([2.0, 2.0, 2.0, 1.0])
    aff2[:3, 3] = 0.5  # voxel centres of a 2x down-sampling of the 1 mm grid
    cfg = PreprocessConfig(spacing=None, shape=(32, 32, 32), normalisation="none")
    image, mask = preprocess_exam(
        {"pre": (pre, np.eye(4)), "arterial": (2 * coarse, aff2)}, ["pre", "arterial"], cfg
    )
    assert mask.all()
    core = (slice(10, 22),) * 3
    np.testing.assert_allclose(image[1][core], 2 * image[0][core], atol=1e-4)


def test_foreground_crop_finds_the_kidney_center_crop_does_not() -> None:
    vol = np.zeros((64, 64, 64), np.float32)
    vol[44:54, 4:14, 30:40] = 100.0
    vol[0:64, 0:64, 0:2] = 5.0  # dim table under the patient
    # the table sets p99 (normalised 1.0); the kidney is at 20 and above the threshold
    fg = PreprocessConfig(
        crop="foreground", spacing=None, shape=(16, 16, 16), foreground_threshold=2
    )
    image, _ = preprocess_exam({"pre": (vol, np.eye(4))}, ["pre"], fg)
    assert (image[0] > 0.5).sum() == 1000
    centre = fg.model_copy(update={"crop": "center"})
    image, _ = preprocess_exam({"pre": (vol, np.eye(4))}, ["pre"], centre)
    assert (image[0] > 0.5).sum() == 0


def test_config_is_strict_and_documented() -> None:
    with pytest.raises(ValueError):
        PreprocessConfig(spacings=(1, 1, 1))
    with pytest.raises(ValueError):
        PreprocessConfig(percentiles=(99, 1))
    with pytest.raises(ValueError):
        PreprocessConfig(shape=(0, 32, 32))
    for name, field in PreprocessConfig.model_fields.items():
        assert field.description, name
    a, b = PreprocessConfig(), PreprocessConfig(phase_mode="single")
    assert a.canonical_json() == b.canonical_json()  # one cached exam serves both modes
    assert a.canonical_json() != PreprocessConfig(shape=(16, 16, 16)).canonical_json()
