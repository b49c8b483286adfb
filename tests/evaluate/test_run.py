"""End to end on a small cohort: metrics.json, CIs, leaks, methods, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medimp.data import assert_no_patient_leak
from medimp.evaluate import EvalConfig, evaluate, read_metrics
from medimp.evaluate.metrics import MetricsFile
from tests.evaluate.conftest import noise_embeddings, truth_embeddings, write_cohort

FAST = {"n_splits": 3, "repeats": 2, "n_bootstrap": 200, "levels": ["exam", "patient_mean"],
        "probes": ["logistic"]}


@pytest.fixture(scope="module")
def result(eval_cohort, tmp_path_factory):
    methods = {"medimp": truth_embeddings(eval_cohort, noise=1.0),
               "random_init": noise_embeddings(eval_cohort)}
    out = tmp_path_factory.mktemp("evalout")
    return evaluate(eval_cohort, methods, out, EvalConfig(**FAST, retrieval=False))


def test_metrics_json_validates(result) -> None:
    raw = json.loads(result.metrics_path.read_text())
    MetricsFile.model_validate(raw)
    m = read_metrics(result.metrics_path)
    assert {t.task for t in m.header.tasks} == {"status_y2", "status_y3", "status_y4"}
    for t in m.header.tasks:
        assert t.n_known + t.n_unknown == m.header.n_patients
    keys = {(r.task, r.method, r.level, r.probe) for r in m.records}
    # tasks × methods × levels, and the clinical+NAME models of the 2 image methods at the
    # endpoint level
    assert len(keys) == len(m.records) == 3 * 4 * 2 + 3 * 2
    assert {r.method for r in m.records} == {"medimp", "random_init", "clinical_only", "oracle",
                                             "clinical+medimp", "clinical+random_init"}
    assert m.header.protocol["n_splits"] == 3


def test_every_ci_contains_its_point(result) -> None:
    for r in result.metrics.records:
        assert r.auc_ci_low <= r.auc <= r.auc_ci_high, r
        assert r.balanced_accuracy_ci_low <= r.balanced_accuracy <= r.balanced_accuracy_ci_high
        assert r.f1_ci_low <= r.f1 <= r.f1_ci_high
    for s in result.metrics.survival:
        assert s.c_index_ci_low <= s.c_index <= s.c_index_ci_high
    for c in (result.metrics.comparisons + result.metrics.regression_comparisons
              + result.metrics.added_value):
        assert c.ci_low <= getattr(c, f"{c.metric}_diff") <= c.ci_high
    for g in result.metrics.regression:
        assert g.r2_ci_low <= g.r2 <= g.r2_ci_high


def test_no_patient_in_train_and_test_of_any_fold(result) -> None:
    folds = pd.read_parquet(result.out_dir / "folds.parquet")
    assert not folds.empty
    for (_task, _rep), by_rep in folds.groupby(["task", "repeat"]):
        tested = []
        for _, f in by_rep.groupby("fold"):
            train = f.loc[f["side"] == "train", "patient_id"].to_numpy()
            test = f.loc[f["side"] == "test", "patient_id"].to_numpy()
            assert_no_patient_leak(train, test)
            assert not set(train) & set(test)
            tested.extend(test)
        assert len(tested) == len(set(tested))  # each patient tested once per repeat
    # and the folds really are what the probes saw
    for cv in result.cv.values():
        for f in cv.folds:
            assert not set(f.train_patients) & set(f.test_patients)


def test_methods_rank_as_expected(result) -> None:
    auc = {(r.task, r.method): r.auc for r in result.metrics.records
           if r.level == "patient_mean"}
    for task in ("status_y2", "status_y3"):
        assert auc[(task, "oracle")] > 0.85
        assert auc[(task, "medimp")] > auc[(task, "random_init")] + 0.2
        assert 0.25 < auc[(task, "random_init")] < 0.75
    comp = [c for c in result.metrics.comparisons if c.other == "random_init"
            and c.level == "patient_mean"]
    assert comp and all(c.auc_diff > 0 for c in comp)
    table = result.comparison_table()
    assert set(table["vs"]) == {"random_init", "clinical_only", "oracle"}
    assert len(table) == 9 and table["p"].between(0, 1).all()


def test_predictions_are_out_of_fold_per_patient(result) -> None:
    pred = result.predictions
    one = pred[(pred.task == "status_y2") & (pred.method == "medimp") & (pred.level == "exam")]
    assert one.groupby("repeat")["patient_id"].nunique().eq(one["patient_id"].nunique()).all()
    assert one["score"].between(0, 1).all()


def _skip_reasons(res):
    return [f"{s.task} {s.method} {s.reason}" for s in res.metrics.skipped]


def test_bad_embeddings_are_skipped_with_a_reason(eval_cohort, tmp_path) -> None:
    good = truth_embeddings(eval_cohort, noise=1.0)
    extra = pd.concat([good, good.head(1).assign(patient_id="ZZ9")], ignore_index=True)
    missing = good[good["patient_id"] != "P003"]
    nan = good.copy()
    nan.loc[5, "e2"] = np.nan
    res = evaluate(eval_cohort, {"medimp": good, "extra": extra, "missing": missing,
                                 "nan": nan}, tmp_path,
                   EvalConfig(**{**FAST, "levels": ["patient_mean"]}, oracle=False,
                              clinical_only=False, survival=False, retrieval=False))
    reasons = "\n".join(_skip_reasons(res))
    assert "extra" in reasons and "ZZ9" in reasons and "not in the cohort" in reasons
    assert "missing" in reasons and "P003" in reasons
    assert "nan" in reasons and f"patient {nan.loc[5, 'patient_id']} exam {nan.loc[5, 'exam']}" \
        in reasons
    assert {r.method for r in res.metrics.records} == {"medimp"}  # the rest still ran
    read_metrics(res.metrics_path)


def test_one_class_and_too_few_patients(tmp_path) -> None:
    root = write_cohort(tmp_path / "c", n_patients=24, seed=3)
    pats = pd.read_csv(root / "patients.csv", dtype={"patient_id": str})
    pats["graft_loss"] = 0
    pats["graft_loss_days"] = np.nan
    pats["egfr_y2"] = 80.0  # everybody good at 2 years: one class
    pats["egfr_y3"] = 80.0
    pats.loc[:1, "egfr_y3"] = 20.0  # two poor at 3 years: fewer than the folds
    pats.to_csv(root / "patients.csv", index=False)
    emb = truth_embeddings(root, noise=1.0)
    res = evaluate(root, {"medimp": emb}, tmp_path / "out",
                   EvalConfig(**{**FAST, "levels": ["patient_mean"]}, retrieval=False))
    reasons = {s.task: s.reason for s in res.metrics.skipped}
    assert "0 graft loss(es) among 24 patients" in reasons["graft_survival"]
    assert "--survival-event poor_status" in reasons["graft_survival"]
    assert "only one class" in reasons["status_y2"]
    assert "fewer than the 3 folds" in reasons["status_y3"]
    assert {r.task for r in res.metrics.records} == {"status_y4"}
    read_metrics(res.metrics_path)


def test_oracle_is_high_on_a_simulated_cohort(make_cohort, tmp_path) -> None:
    cohort = make_cohort(40, (16, 16, 16), 0)
    res = evaluate(cohort, {}, tmp_path,
                   EvalConfig(**{**FAST, "levels": ["patient_latest"]},
                              survival_event="poor_status", retrieval=False))
    oracle = [r for r in res.metrics.records if r.method == "oracle"]
    assert len(oracle) == 3
    for r in oracle:
        assert r.auc > 0.75, r
        assert r.auc_ci_low <= r.auc <= r.auc_ci_high
    assert res.metrics.header.methods["oracle"].startswith("truth.csv")
    # few graft losses in a small simulated cohort: the composite endpoint still has events
    surv = {s.method: s for s in res.metrics.survival}
    assert surv["oracle"].task == "poor_status_survival" and surv["oracle"].n_events >= 3
    assert surv["oracle"].c_index > 0.7


def test_exam_level_trains_on_exams_and_scores_patients(result) -> None:
    for r in result.metrics.records:
        if r.level == "exam":
            assert r.n_samples == 4 * r.n  # every exam of every labelled patient
        else:
            assert r.n_samples == r.n


def test_parallel_jobs_give_the_same_result(eval_cohort, tmp_path) -> None:
    emb = {"medimp": truth_embeddings(eval_cohort, noise=1.0)}
    cfg = {**FAST, "levels": ["patient_mean"], "horizons": [3]}
    runs = [evaluate(eval_cohort, emb, tmp_path / str(j),
                     EvalConfig(**cfg, n_jobs=j, survival=False, retrieval=False,
                                oracle=False)) for j in (1, 2)]
    a, b = ([(r.task, r.method, r.auc, r.f1, r.brier) for r in res.metrics.records]
            for res in runs)
    assert a == b and len(a) == 3  # medimp, clinical_only, clinical+medimp
    a, b = ([(r.task, r.method, r.r2, r.mae) for r in res.metrics.regression] for res in runs)
    assert a == b and len(a) == 3
