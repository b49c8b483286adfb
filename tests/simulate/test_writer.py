"""The cohort directory written by simulate_cohort: layout, geometry, images, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from medimp.simulate import SimulationError, simulate_cohort
from medimp.simulate.anatomy import LABELS
from medimp.study import default_study, load_study


def read(cohort: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(cohort / name, dtype={"patient_id": str})


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_tables(simulated_cohort: Path) -> None:
    c = simulated_cohort
    for name in ("manifest.csv", "exams.csv", "patients.csv", "truth.csv", "study.yaml"):
        assert (c / name).is_file(), name
    assert load_study(c / "study.yaml") == default_study()
    manifest, exams, patients = read(c, "manifest.csv"), read(c, "exams.csv"), read(c,
                                                                                "patients.csv")
    assert list(manifest.columns) == ["patient_id", "exam", "phase", "path", "acquisition_s"]
    assert len(patients) == 16 and patients["patient_id"].is_unique
    assert set(manifest["phase"]) == {"pre", "arterial", "tubular"}
    # every image exists, every acquired exam has images, truth covers exactly the exams
    assert all((c / p).is_file() for p in manifest["path"])
    keys = set(map(tuple, exams[["patient_id", "exam"]].to_numpy()))
    assert set(map(tuple, manifest[["patient_id", "exam"]].to_numpy())) == keys
    truth = read(c, "truth.csv")
    assert set(map(tuple, truth[["patient_id", "exam"]].to_numpy())) == keys
    pre = manifest[manifest["phase"] == "pre"]["acquisition_s"]
    art = manifest[manifest["phase"] == "arterial"]["acquisition_s"]
    assert (pre == 0).all() and art.between(15, 45).all()
    assert (c / "figures" / "montage.png").stat().st_size > 1000
    assert (c / "figures" / "enhancement_curves.png").stat().st_size > 1000


def test_nifti_geometry_and_masks(simulated_cohort: Path) -> None:
    c = simulated_cohort
    manifest = read(c, "manifest.csv")
    spacings = set()
    for (pid, exam), g in manifest.groupby(["patient_id", "exam"]):
        imgs = [nib.load(c / p) for p in g["path"]]
        mask = nib.load(c / "truth" / "masks" / f"{pid}_{exam}.nii.gz")
        for img in [*imgs, mask]:
            assert img.shape == (24, 24, 24)
            np.testing.assert_allclose(img.affine, imgs[0].affine)
        zooms = imgs[0].header.get_zooms()
        np.testing.assert_allclose(np.abs(np.diag(imgs[0].affine)[:3]), zooms, rtol=1e-6)
        assert nib.aff2axcodes(imgs[0].affine) == ("L", "P", "S")
        spacings.add(tuple(np.round(zooms, 3)))
        labels = np.asarray(mask.dataobj)
        assert set(np.unique(labels)) == set(LABELS.values())
        data = np.asarray(imgs[0].dataobj)
        assert data.dtype == np.int16 and data.min() >= 0
    assert len(spacings) > 1  # voxel spacing varies between patients


@pytest.fixture(scope="module")
def image_features(make_cohort) -> pd.DataFrame:
    """Per exam, simple features measured with the true masks, joined to truth and exams."""
    c = make_cohort(40, (20, 20, 20), 1, "nifti")
    manifest = read(c, "manifest.csv")
    rows = []
    for (pid, exam), g in manifest.groupby(["patient_id", "exam"]):
        paths = dict(zip(g["phase"], g["path"], strict=True))
        if not {"pre", "arterial"} <= set(paths):
            continue
        cortex = np.asarray(nib.load(c / "truth" / "masks" / f"{pid}_{exam}.nii.gz").dataobj) == 1
        pre = np.asarray(nib.load(c / paths["pre"]).dataobj).astype(float)
        art = np.asarray(nib.load(c / paths["arterial"]).dataobj).astype(float)
        ratio = art[cortex] / np.maximum(pre[cortex], 1.0)
        rows.append({"patient_id": pid, "exam": exam, "mean_pre": pre.mean(),
                     "enh": art[cortex].mean() / pre[cortex].mean(),
                     # heterogeneity of cortical enhancement: fibrotic patches enhance poorly
                     "enh_heterogeneity": ratio.std() / np.median(ratio)})
    df = pd.DataFrame(rows)
    for name in ("truth.csv", "exams.csv"):
        df = df.merge(read(c, name), on=["patient_id", "exam"])
    assert len(df) >= 100
    return df


def test_enhancement_tracks_true_gfr(image_features: pd.DataFrame) -> None:
    """Cortical arterial/pre enhancement (true mask) correlates with true GFR."""
    assert spearmanr(image_features["enh"], image_features["gfr_true"])[0] >= 0.5


def test_global_mean_intensity_hides_gfr(image_features: pd.DataFrame) -> None:
    """Random gain, bias field and noise: the mean intensity says nothing about function."""
    for col in ("gfr_true", "decline_rate"):
        assert abs(spearmanr(image_features["mean_pre"], image_features[col])[0]) < 0.3


def test_images_hold_prognosis_beyond_egfr(image_features: pd.DataFrame) -> None:
    """Patchy cortical enhancement (fibrosis) predicts the future decline; today's eGFR barely."""
    df = image_features
    rho_img = spearmanr(df["enh_heterogeneity"], df["decline_rate"])[0]
    rho_egfr = spearmanr(df["egfr"], df["decline_rate"])[0]
    assert spearmanr(df["enh_heterogeneity"], df["fibrosis_fraction"])[0] >= 0.6
    assert rho_img >= 0.5
    assert rho_img > abs(rho_egfr) + 0.2


def test_missing_phase_occurs_and_is_not_pre(make_cohort) -> None:
    manifest = read(make_cohort(40, (20, 20, 20), 1, "nifti"), "manifest.csv")
    n_phases = manifest.groupby(["patient_id", "exam"])["phase"].agg(set)
    incomplete = n_phases[n_phases.map(len) < 3]
    assert 1 <= len(incomplete) <= 0.1 * len(n_phases)
    assert all("pre" in s for s in incomplete)


def test_same_seed_same_bytes(tmp_path: Path, make_cohort) -> None:
    first = make_cohort(10, (16, 16, 12), 4, "nifti")
    again = simulate_cohort(tmp_path / "again", 10, shape=(16, 16, 12), seed=4, workers=2,
                            progress=False)
    assert digest(again) == digest(first)  # and independent of the worker count
    other = simulate_cohort(tmp_path / "other", 10, shape=(16, 16, 12), seed=5, workers=1,
                            progress=False)
    a, b = digest(first), digest(other)
    differing = [k for k in set(a) & set(b) if a[k] != b[k]]
    assert "patients.csv" in differing and any(k.endswith(".nii.gz") for k in differing)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_patients": 5}, ">= 10"),
    ({"n_patients": 12, "shape": (24, 0, 24)}, "--shape"),
    ({"n_patients": 12, "shape": (24, -3, 24)}, "--shape"),
    ({"n_patients": 12, "fmt": "analyze"}, "--format"),
])
def test_bad_arguments_write_nothing(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(SimulationError, match=match):
        simulate_cohort(tmp_path / "out", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SimulationError, match="--overwrite"):
        simulate_cohort(out, 10, shape=(12, 12, 12), progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    # --overwrite replaces a cohort, never a folder holding the user's own files
    with pytest.raises(SimulationError, match=r"keep\.txt.*would delete"):
        simulate_cohort(out, 10, shape=(12, 12, 12), overwrite=True, progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    simulate_cohort(out, 10, shape=(12, 12, 12), progress=False)
    first = (out / "patients.csv").read_bytes()
    simulate_cohort(out, 10, shape=(12, 12, 12), seed=1, overwrite=True, progress=False)
    assert (out / "manifest.csv").is_file()
    assert (out / "patients.csv").read_bytes() != first  # the old cohort was replaced
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folders left behind
