"""The eGFR regression tasks: targets, the closed-form ridge path, and a known-answer case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge

from medimp.data import Cohort, read_cohort
from medimp.evaluate.cv import make_splits
from medimp.evaluate.intervals import corrected_interval
from medimp.evaluate.labels import make_labels
from medimp.evaluate.regression import (
    RidgeProbe,
    cross_validate_regression,
    fold_scores,
    make_targets,
    ridge_path,
)
from medimp.simulate.clinical import simulate_clinical
from medimp.study import default_study


@pytest.fixture(scope="module")
def big_tables() -> Cohort:
    """The simulator's clinical tables for 300 patients (no images: the probe needs none)."""
    patients, exams, _ = simulate_clinical(300, seed=3)
    return Cohort.from_tables(default_study(), exams, patients)


def test_targets_follow_the_binary_task(eval_cohort):
    tables = read_cohort(eval_cohort)
    for k in (2, 3, 4):
        tg = make_targets(tables, k)
        lab = make_labels(tables, k)
        assert (tg["known"] == lab["known"]).all()  # the same patients as status_yK
        lost = tg["reason"] == "graft_loss"
        assert (tg.loc[lost, "target"] == 0).all()
        egfr = tables.patients.set_index("patient_id")[f"egfr_y{k}"]
        ok = tg["reason"] == "egfr"
        assert np.allclose(tg.loc[ok, "target"], egfr.loc[tg.loc[ok, "patient_id"]])
        assert tg.loc[~tg["known"], "target"].isna().all()
    assert (make_targets(tables, 4)["reason"] == "graft_loss").any()  # the rule is exercised


def test_ridge_path_is_sklearn_ridge():
    rng = np.random.default_rng(0)
    X, y, Xt = rng.normal(size=(30, 6)), rng.normal(size=30), rng.normal(size=(7, 6))
    alphas = [0.1, 3.0, 100.0]
    mine = ridge_path(X, y, Xt, alphas)
    for a, row in zip(alphas, mine, strict=True):
        assert row == pytest.approx(Ridge(alpha=a).fit(X, y).predict(Xt), abs=1e-8)


def _cv(tables: Cohort, embedding: np.ndarray, repeats: int = 2):
    tg = make_targets(tables, 2)
    known = tg[tg["known"]]
    patients = known["patient_id"].to_numpy(str)
    y = make_labels(tables, 2).set_index("patient_id").loc[patients, "label"].to_numpy(int)
    splits = make_splits(patients, y, 5, repeats, 0)
    df = pd.DataFrame(embedding, columns=[f"e{i}" for i in range(embedding.shape[1])])
    df.insert(0, "level", "patient")
    df.insert(0, "exam", None)
    df.insert(0, "patient_id", patients)
    res = cross_validate_regression(df, patients, known["target"].to_numpy(float),
                                    level="patient_mean", tables=tables, splits=splits,
                                    make_probe=RidgeProbe)
    tests = [(s.repeat, s.test) for s in splits]
    ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))
    scores = fold_scores(res.y, res.predictions, tests)
    return {m: corrected_interval(v, ratio) for m, v in scores.items()}, res


@pytest.mark.parametrize("noise_ratio", [1.0, 0.5])
def test_known_answer_egfr_plus_noise(big_tables, noise_ratio):
    """An embedding that is the target plus Gaussian noise of sd σ: the best linear predictor
    explains var(t) / (var(t) + σ²) of the variance; the cross-validated R² finds it."""
    tg = make_targets(big_tables, 2)
    t = tg.loc[tg["known"], "target"].to_numpy(float)
    rng = np.random.default_rng(1)
    sigma = noise_ratio * t.std()
    emb = np.column_stack([t + rng.normal(0, sigma, len(t)), rng.normal(size=(len(t), 4))])
    expected = t.var() / (t.var() + sigma**2)
    iv, res = _cv(big_tables, emb)
    assert iv["r2"].low < expected < iv["r2"].high
    assert iv["r2"].estimate == pytest.approx(expected, abs=0.08)
    assert iv["spearman"].estimate > 0.5
    assert iv["mae"].estimate < np.mean(np.abs(t - np.median(t)))  # beats a constant
    assert res.predictions.shape == (2, len(t))


def test_noise_embedding_explains_nothing(big_tables):
    tg = make_targets(big_tables, 2)
    n = int(tg["known"].sum())
    iv, _ = _cv(big_tables, np.random.default_rng(2).normal(size=(n, 5)))
    assert iv["r2"].estimate < 0.03
    assert iv["r2"].low < 0
