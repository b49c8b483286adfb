"""evaluate() with the clinic's endpoints, end to end on a cohort written to disk: eGFR
regression records, clinical+NAME models and their comparisons with clinical_only, Brier and
calibration on every binary record, the curve tables, and the printed answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.evaluate import EvalConfig, evaluate, read_metrics
from medimp.evaluate.calibration import treat_all

from .conftest import noise_embeddings, truth_embeddings

CFG = EvalConfig(n_splits=3, repeats=1, levels=["patient_mean"], probes=["logistic"],
                 Cs=[0.1, 1.0], pca_ks=[0, 2], survival=False, retrieval=False)
IMAGE = ("medimp", "noise")
METHODS = ("medimp", "noise", "clinical_only", "oracle", "clinical+medimp", "clinical+noise")


@pytest.fixture(scope="module")
def result(eval_cohort, tmp_path_factory):
    methods = {"medimp": [truth_embeddings(eval_cohort, 1.0, seed=s) for s in range(3)],
               "noise": noise_embeddings(eval_cohort)}
    return evaluate(eval_cohort, methods, tmp_path_factory.mktemp("ends") / "out", CFG)


def test_regression_records_for_every_method(result):
    m = read_metrics(result.metrics_path)
    own = {(r.task, r.method) for r in m.regression if r.run is None}
    assert own == {(f"egfr_y{k}", name) for k in (2, 3, 4) for name in METHODS}
    for r in m.regression:
        assert r.r2_ci_low <= r.r2 <= r.r2_ci_high <= 1
        assert r.mae > 0 and r.spearman is not None
    runs = [r for r in m.regression if r.method == "medimp" and r.task == "egfr_y2"]
    assert sorted(r.run or "" for r in runs) == ["", "run0", "run1", "run2"]
    agg = next(r for r in runs if r.run is None)
    assert agg.n_runs == 3 and agg.r2_sd is not None
    # the latent truth explains the eGFR, noise does not
    r2 = {r.method: r.r2 for r in m.regression if r.task == "egfr_y2" and r.run is None}
    assert r2["oracle"] > 0.8 > 0.0 > r2["noise"]
    # the same patients as the binary task; graft losses counted as eGFR 0
    counts = {t.task: t for t in m.header.tasks}
    for r in m.regression:
        assert r.n == counts[r.task.replace("egfr", "status")].n_known
    r2_refs = m.regression_comparisons
    assert all(c.metric == "auc" for c in m.comparisons)
    assert {c.other for c in r2_refs} == {"noise", "clinical_only", "oracle"}
    assert all(c.method == "medimp" and c.r2_diff is not None and c.auc_diff is None
               for c in r2_refs)


def test_added_value_comparisons_and_answer(result):
    m = result.metrics
    got = {(c.task, c.method, c.metric) for c in m.added_value}
    want = {(f"status_y{k}", f"clinical+{n}", metric) for k in (2, 3, 4) for n in IMAGE
            for metric in ("auc", "brier")}
    want |= {(f"egfr_y{k}", f"clinical+{n}", "r2") for k in (2, 3, 4) for n in IMAGE}
    assert got == want
    for c in m.added_value:
        assert c.other == "clinical_only"
        assert getattr(c, f"{c.metric}_diff") is not None
        assert c.ci_low <= getattr(c, f"{c.metric}_diff") <= c.ci_high
    medimp = [c for c in m.added_value if c.method == "clinical+medimp"]
    assert all(c.n_runs == 3 and c.other_n_runs == 1 for c in medimp)
    assert any(c.seed_variance for c in medimp)  # unless k = 0 in every fold of every run
    assert all(c.verdict and c.p_holm is not None for c in medimp)
    noise = [c for c in m.added_value if c.method == "clinical+noise"]
    assert all(c.verdict == "not decided: one pretraining run" for c in noise)
    answers = {a.method: a for a in m.added_value_answers}
    assert set(answers) == set(IMAGE)
    assert answers["noise"].answer == "not decided"
    assert "one pretraining run" in answers["noise"].sentence
    assert answers["medimp"].answer in ("yes", "no", "not decided")
    # reference comparisons never include the combined models
    assert not any(c.other.startswith("clinical+") for c in m.comparisons)


def test_binary_records_carry_brier_and_calibration(result):
    m = result.metrics
    for r in m.records:
        assert r.brier is not None and r.brier_ci_low <= r.brier <= r.brier_ci_high
    fitted = [r for r in m.records if r.calibration_slope is not None]
    assert len(fitted) >= len(m.records) // 2
    for r in fitted:
        assert r.calibration_slope_ci_low < r.calibration_slope < r.calibration_slope_ci_high
    # Brier of a method equals the mean over folds of its own predictions' squared error
    preds = result.predictions
    rec = next(r for r in m.records if r.method == "clinical_only" and r.task == "status_y2")
    sub = preds[(preds.task == "status_y2") & (preds.method == "clinical_only")]
    pooled = float(((sub.score - sub.label) ** 2).mean())
    assert rec.brier == pytest.approx(pooled, abs=0.03)


def test_curve_tables_written(result):
    out = result.out_dir
    cal = pd.read_parquet(out / "calibration.parquet")
    dca = pd.read_parquet(out / "decision_curves.parquet")
    egfr = pd.read_parquet(out / "egfr_predictions.parquet")
    assert set(cal["method"]) == set(dca["method"]) >= {"clinical_only", "clinical+medimp"}
    m = result.metrics
    for t in m.header.tasks:
        sub = cal[(cal.task == t.task) & (cal.method == "clinical_only")]
        assert sub["n"].sum() == t.n_known
        d = dca[(dca.task == t.task) & (dca.method == "clinical_only")]
        prev = t.n_pos / t.n_known
        y = np.r_[np.ones(t.n_pos), np.zeros(t.n_known - t.n_pos)]
        assert d["treat_all"].to_numpy() == pytest.approx(treat_all(y, d["threshold"]))
        assert (d["net_benefit"] <= prev + 1e-12).all()  # never above a perfect model's
    assert set(egfr["task"]) == {"egfr_y2", "egfr_y3", "egfr_y4"}
    assert {"target", "prediction"} <= set(egfr.columns)


def test_cli_prints_the_answer_and_the_r2_table(eval_cohort, tmp_path):
    from medimp.cli.evaluate import FPR_DOCS
    from medimp.cli.main import app

    emb = tmp_path / "medimp.parquet"
    truth_embeddings(eval_cohort, 1.0).to_parquet(emb)
    out = CliRunner().invoke(app, [
        "evaluate", "--cohort", str(eval_cohort), "--embeddings", f"img={emb}",
        "--out", str(tmp_path / "ev"), "--folds", "3", "--repeats", "1", "--horizon", "2",
        "--no-knn", "--no-survival", "--no-report"])
    assert out.exit_code == 0, out.output
    assert "Do the images add anything" in out.output
    assert FPR_DOCS in out.output  # the answer points at the tests' measured error rates
    assert "img: not decided: one pretraining run" in out.output
    assert "egfr_y2" in out.output and "R²" in out.output
    assert "clinical+img" in out.output


def test_bad_endpoint_options_are_refused_in_one_line():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="endpoint_level 'patient_mean' is not among"):
        EvalConfig(levels=["exam"], endpoint_level="patient_mean")
    with pytest.raises(ValidationError, match="pca_ks must be non-negative"):
        EvalConfig(pca_ks=[0, -2])
    with pytest.raises(ValidationError, match="ridge_alphas must be positive"):
        EvalConfig(ridge_alphas=[0.0])
    # the default level follows the levels evaluated
    assert EvalConfig(levels=["patient_latest"]).endpoint_level == "patient_latest"


def test_the_printed_pointer_to_the_error_rates_names_a_section_that_exists():
    from medimp.cli.evaluate import FPR_DOCS

    page, _, heading = FPR_DOCS.partition(", ")
    text = (Path(__file__).resolve().parents[2] / page).read_text(encoding="utf-8")
    assert any(line.startswith("## " + heading.strip('"')) for line in text.splitlines())
