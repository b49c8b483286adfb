"""Done-when of dynamic acquisitions: a cohort of 4D NIfTI exams, one of classic dynamic DICOM
series and one of enhanced multi-frame DICOM each validate, pretrain and evaluate with no
conversion step, and give the same preprocessed tensors as the same data in 3D files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medimp.data import read_cohort, validate_cohort
from medimp.data.pipeline.cache import PreprocessCache
from medimp.data.pipeline.preprocess import PreprocessConfig, load_exam_volume
from tests.data._dynamic_helpers import (
    EXPECTED_FRAMES,
    make_classic_dicom_cohort,
    make_enhanced_dicom_cohort,
    make_nifti4d_cohort,
)

TINY = {"image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
        "embed_dim": 16, "epochs": 1, "batch_size": 8, "val_fraction": 0.25,
        "preprocess": {"shape": [16, 16, 16]}, "augment": None,
        "optim": {"lr": 1e-3, "warmup_epochs": 0}, "log_every_n_steps": 1}
MAKERS = {"nifti4d": ("nifti", make_nifti4d_cohort),
          "classic_dicom": ("dicom", make_classic_dicom_cohort),
          "enhanced_dicom": ("dicom", make_enhanced_dicom_cohort)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_dynamic_cohort_validates_pretrains_and_evaluates(kind: str, make_cohort,
                                                          tmp_path: Path) -> None:
    from medimp.evaluate import EvalConfig, evaluate, read_metrics
    from medimp.train import load_config, pretrain
    from medimp.train.config import apply_overrides

    fmt, make = MAKERS[kind]
    ref_root = make_cohort(24, (16, 16, 16), 0, fmt)
    root = make(ref_root, tmp_path / "cohort")
    report = validate_cohort(root)
    assert report.ok, report.errors
    assert report.summary["dynamic_series"] == len(report.summary["dynamic"]) > 40
    assert all(d["frames"] == EXPECTED_FRAMES for d in report.summary["dynamic"].values())

    dyn, ref = read_cohort(root), read_cohort(ref_root)
    pre = PreprocessConfig(shape=(16, 16, 16))
    cache = PreprocessCache(tmp_path / "cache")  # pretraining below reads these, not the series
    for key in dyn.exam_keys():
        a, ma = load_exam_volume(dyn, *key, pre, cache=cache)
        b, mb = load_exam_volume(ref, *key, pre)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_allclose(a, b, atol=1e-6)

    cache.flush()
    cfg = load_config(None, apply_overrides({**TINY, "cache_dir": str(tmp_path / "cache")},
                                            ["method=medimp"]))
    run = pretrain(root, tmp_path / "run", cfg, progress=False)
    res = evaluate(root, {"medimp": run}, tmp_path / "eval",
                   EvalConfig(n_splits=3, repeats=1, n_bootstrap=50, levels=["patient_mean"],
                              probes=["logistic"], survival=False))
    m = read_metrics(res.metrics_path)
    assert "medimp" in {r.method for r in m.records}
    from medimp.report import write_report

    html = write_report(res.out_dir).read_text(encoding="utf-8")
    assert "dynamic curve" in html
