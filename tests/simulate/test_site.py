"""`simulate --site`: another scanner for the same patients; site 0 is the simulator as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.simulate import simulate_cohort
from medimp.simulate.site import DEFAULT_SITE, SITE_RANGES, site_profile
from medimp.study import default_study, load_study

# The content of `simulate_cohort(out, 10, shape=(12, 12, 10), seed=3)` (the CSV tables and the
# voxels and affines of every volume and mask) as the simulator wrote it before sites existed.
# Site 0 must keep writing exactly this. The voxels are hashed rather than the .nii.gz bytes so
# that a different zlib build does not fail the test; study.yaml is compared with
# default_study() instead (its schema gains fields independently of the simulator). A change of
# this value means the default simulator's output changed.
SITE0_DIGEST = "60c06561cca60ecd4c28358f83c3da218d0c6bc14358cf7a593fb9ed0eb37281"


def content_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "figures" in p.parts or p.name == "study.yaml":
            continue
        h.update(p.relative_to(root).as_posix().encode())
        if p.name.endswith(".nii.gz"):
            img = nib.load(p)
            h.update(np.asarray(img.dataobj).tobytes())
            h.update(img.affine.tobytes())
        else:
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("sites")
    return {s: simulate_cohort(root / f"site{s}", 10, shape=(12, 12, 10), seed=3, workers=1,
                               progress=False, site=s) for s in (0, 1)}


def test_site0_is_todays_simulator(sites: dict[int, Path]) -> None:
    assert content_digest(sites[0]) == SITE0_DIGEST
    assert site_profile(0) == DEFAULT_SITE
    assert load_study(sites[0] / "study.yaml") == default_study()


def test_site1_same_patients_other_scanner(sites: dict[int, Path]) -> None:
    s0, s1 = sites[0], sites[1]
    for name in ("patients.csv", "exams.csv", "truth.csv"):  # biology and outcomes
        assert (s0 / name).read_bytes() == (s1 / name).read_bytes(), name
    m0 = pd.read_csv(s0 / "manifest.csv", dtype={"patient_id": str})
    m1 = pd.read_csv(s1 / "manifest.csv", dtype={"patient_id": str})
    cols = ["patient_id", "exam", "phase", "path"]
    pd.testing.assert_frame_equal(m0[cols], m1[cols])  # same exams and phases acquired
    prof = site_profile(1)
    assert prof != DEFAULT_SITE
    art = m1.loc[m1["phase"] == "arterial", "acquisition_s"]
    assert abs(art.mean() - prof.phase_seconds["arterial"]) < 3 * prof.phase_jitter_s["arterial"]
    study = load_study(s1 / "study.yaml")
    assert study.phase_names == default_study().phase_names
    assert {p.name: p.seconds for p in study.phases} == prof.phase_seconds
    lo, hi = prof.fov_inplane_mm
    for path in m1["path"]:
        img0, img1 = nib.load(s0 / path), nib.load(s1 / path)
        assert not np.array_equal(np.asarray(img0.dataobj), np.asarray(img1.dataobj))
        fov = np.asarray(img1.header.get_zooms()[:2]) * np.asarray(img1.shape[:2])
        assert np.all((fov >= lo - 1e-3) & (fov <= hi + 1e-3)), path


@pytest.mark.parametrize("site", [1, 2, 7, 123])
def test_profiles_reproducible_and_within_documented_ranges(site: int) -> None:
    p = site_profile(site)
    assert p == site_profile(site)
    lo, hi = SITE_RANGES["gain_median"]
    assert lo <= p.gain_median <= hi
    assert SITE_RANGES["gain_sigma"][0] <= p.gain_sigma <= SITE_RANGES["gain_sigma"][1]
    assert SITE_RANGES["snr_low"][0] <= p.snr[0] < p.snr[1]
    assert SITE_RANGES["bias_sd"][0] <= p.bias_sd <= SITE_RANGES["bias_sd"][1]
    assert SITE_RANGES["arterial_s"][0] <= p.phase_seconds["arterial"] <= \
        SITE_RANGES["arterial_s"][1]
    assert SITE_RANGES["tubular_s"][0] <= p.phase_seconds["tubular"] <= \
        SITE_RANGES["tubular_s"][1]
    assert p.fov_inplane_mm[0] < p.fov_inplane_mm[1]


@pytest.mark.parametrize(("site", "code"), [("-1", 1), ("x", 2)])
def test_bad_site_one_line(tmp_path: Path, site: str, code: int) -> None:
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "c"), "--patients", "10",
                                   "--shape", "12", "12", "12", "--site", site])
    assert res.exit_code == code
    assert "error" in res.output.lower() and "site" in res.output.lower()
    assert not (tmp_path / "c").exists()
