"""Geometry that makes training silently useless is a warning: a stub volume among full-size
phases, and a field of view far smaller than the preprocessing window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medimp.data import validate_cohort
from medimp.data.pipeline.preprocess import PreprocessConfig
from tests.data.conftest import write_nifti

IMG = "images/P002/D15/arterial.nii.gz"


def test_stub_volume_among_full_phases_warns(tiny_cohort: Path) -> None:
    write_nifti(tiny_cohort / IMG, np.full((2, 2, 2), 50.0, np.float32),
                affine=np.diag([15.0, 15.0, 20.0, 1.0]))
    report = validate_cohort(tiny_cohort)
    assert report.ok
    (w,) = [w for w in report.warnings if "far smaller than phase" in w.problem]
    assert (w.file, w.patient, w.exam, w.phase) == (IMG, "P002", "D15", "arterial")
    assert "2x2x2 voxels" in w.problem and "8x8x6 voxels" in w.problem


def test_small_field_of_view_in_the_window_warns(cohort_factory) -> None:
    """The issue's case: a 51x51x72 mm field of view in the default 32³ x 6 mm window."""
    root = cohort_factory(n_patients=1, exams=("D15",))
    for ph in ("pre", "arterial", "tubular"):
        write_nifti(root / f"images/P001/D15/{ph}.nii.gz",
                    np.random.default_rng(0).uniform(10, 100, (17, 17, 12)).astype(np.float32),
                    affine=np.diag([3.0, 3.0, 6.0, 1.0]))
    report = validate_cohort(root)
    assert report.ok
    (w,) = [w for w in report.warnings if "preprocessing window" in w.problem]
    assert "3 of 3 volume(s)" in w.problem
    assert "51x51x72 mm field of view, fills 3% of the 192x192x192 mm window" in w.problem
    # the same spacing and shape as `medimp validate --suggest-preprocess` (CPU) proposes
    from medimp.data.io.geometry import suggest_preprocess

    sug = suggest_preprocess(report.summary["geometry"].values(), max_side=32)
    assert f"preprocess.spacing={sug['spacing']} and preprocess.shape={sug['shape']}" in w.fix
    assert sug["spacing"] == [1.75, 1.75, 4.5]
    assert w.patient == "P001" and w.exam == "D15" and w.file.startswith("images/P001/D15/")
    # a window that fits the field of view: no warning
    fit = validate_cohort(root, preprocess=PreprocessConfig(spacing=(2.0, 2.0, 2.5)))
    assert not [w for w in fit.warnings if "preprocessing window" in w.problem]


def test_valid_cohort_has_no_geometry_warning(tiny_cohort: Path) -> None:
    report = validate_cohort(tiny_cohort)
    assert not [w for w in report.warnings if "window" in w.problem or "smaller" in w.problem]
