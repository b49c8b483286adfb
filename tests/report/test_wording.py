"""The words of the report match what the code computed: the protocol text is derived from the
configuration the evaluation ran, and an older metrics.json still renders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from medimp.evaluate import EvalConfig, evaluate, read_metrics
from medimp.report import write_report
from tests.evaluate.conftest import truth_embeddings


def _protocol(page: str) -> str:
    return re.search(r'<section id="protocol">(.*?)</section>', page, flags=re.S).group(1)


@pytest.fixture(scope="module")
def knn_eval(eval_dir, tmp_path_factory) -> Path:
    """The fixture's cohort evaluated with both probes and a non-default Cox model."""
    cohort = Path(read_metrics(eval_dir / "metrics.json").header.cohort)
    out = tmp_path_factory.mktemp("knn") / "eval"
    evaluate(cohort, {"medimp": truth_embeddings(cohort, noise=1.0)}, out,
             EvalConfig(n_splits=3, repeats=1, horizons=[2], levels=["patient_mean"],
                        probes=["logistic", "knn"], knn_ks=[3, 7], Cs=[0.5, 2.0],
                        survival_pca=3, cox_penalizer=0.25, retrieval=False))
    return out


def test_protocol_names_the_probes_and_models_used(eval_dir, knn_eval) -> None:
    default = _protocol(write_report(eval_dir).read_text(encoding="utf-8"))
    cfg = read_metrics(eval_dir / "metrics.json").header.protocol
    assert cfg["probes"] == ["logistic"]
    assert "logistic regression" in default and "nearest neighbours" not in default
    assert f"{cfg['repeats']} repeats of {cfg['n_splits']}-fold" in default
    assert f"PCA to {cfg['survival_pca']} components" in default
    assert f"L2 penalty {cfg['cox_penalizer']}" in default

    both = _protocol(write_report(knn_eval).read_text(encoding="utf-8"))
    assert "<b>Probes.</b>" in both and "k-nearest neighbours" in both
    assert "k from 3, 7" in both and "penalty C from 0.5, 2.0" in both
    assert "PCA to 3 components" in both and "L2 penalty 0.25" in both
    assert "1 repeats of 3-fold" in both
    assert "patient_latest" not in both  # only the level that was evaluated
    # the endpoints that ran are described in the header's own words
    header = read_metrics(knn_eval / "metrics.json").header.protocol
    for key in ("continuous", "added_value", "calibration"):
        assert str(escape(header[key])) in both  # as the template escapes it


def test_protocol_interval_follows_the_header(eval_dir, tmp_path) -> None:
    """An evaluation recorded with a bootstrap CI is captioned as one, never as the t."""
    import shutil

    copy = tmp_path / "eval"
    shutil.copytree(eval_dir, copy)
    data = json.loads((copy / "metrics.json").read_text(encoding="utf-8"))
    data["header"]["protocol"]["metrics"] = "patient-level ROC AUC; 95% CI by bootstrap"
    (copy / "metrics.json").write_text(json.dumps(data), encoding="utf-8")
    page = write_report(copy).read_text(encoding="utf-8")
    assert "95% CI (percentile bootstrap)" in page
    assert "95% CI (corrected resampled t)" not in page


OLD = {  # a schema-2 metrics.json as the first seed-aware evaluations wrote it
    "header": {"schema_version": 2, "medimp_version": "0.1.0", "created": "2026-01-01",
               "cohort": "/nowhere/cohort", "n_patients": 30, "n_exams": 90,
               "threshold": 45.0, "horizons": [2],
               "tasks": [{"task": "status_y2", "horizon_years": 2, "n_known": 28, "n_pos": 11,
                          "n_unknown": 2, "n_graft_loss": 1}],
               "methods": {"medimp": "runs/medimp", "clinical_only": "clinical table"},
               "protocol": {"cv": "5x repeated, 5-fold"}, "reference_method": "medimp"},
    "records": [{"task": "status_y2", "method": m, "n": 28, "n_pos": 11, "auc": a,
                 "auc_ci_low": a - 0.1, "auc_ci_high": a + 0.1, "balanced_accuracy": 0.6,
                 "f1": 0.5} for m, a in (("medimp", 0.7), ("clinical_only", 0.75))],
    "comparisons": [{"task": "status_y2", "method": "medimp", "other": "clinical_only",
                     "level": "patient_mean", "probe": "logistic", "n": 28, "auc_diff": -0.05,
                     "ci_low": -0.2, "ci_high": 0.1, "p_value": 0.5}],
}


def test_an_old_metrics_file_still_renders(tmp_path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps(OLD), encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert re.findall(r'<section id="([a-z]+)"', page)[-1] == "tripod"
    # the answer from what the file holds, saying what it lacks
    assert "Cannot tell medimp alone apart from the clinical table" in page
    assert "the table plus the images was not evaluated" in page
    assert "No out-of-fold predictions" in page and "No survival model" in page
    assert "Cohort not found" in page
    assert "interval as recorded in metrics.json" in page  # no interval named in the file
