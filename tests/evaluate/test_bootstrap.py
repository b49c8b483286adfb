"""Vectorised metrics agree with scikit-learn; CIs and the paired test behave."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from medimp.evaluate.bootstrap import (
    auc,
    balanced_accuracy,
    bootstrap_metrics,
    f1,
    paired_auc_difference,
)


def test_metrics_match_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.random(50), 1)  # many ties
    p = (s > 0.5).astype(int)
    assert np.isclose(auc(y, s), roc_auc_score(y, s))
    assert np.isclose(balanced_accuracy(y, p), balanced_accuracy_score(y, p))
    assert np.isclose(f1(y, p), f1_score(y, p))
    assert np.isnan(auc(np.ones(5), s[:5]))


def test_ci_contains_point_and_narrows_with_signal() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    good = y + rng.normal(0, 0.7, (3, 80))
    res = bootstrap_metrics(y, good, (good > 0.5).astype(int), n_boot=500, seed=0)
    assert res.auc_ci[0] <= res.auc <= res.auc_ci[1]
    assert res.balanced_accuracy_ci[0] <= res.balanced_accuracy <= res.balanced_accuracy_ci[1]
    assert res.f1_ci[0] <= res.f1 <= res.f1_ci[1]
    assert res.auc > 0.75 and res.auc_ci[1] - res.auc_ci[0] < 0.3


def test_paired_difference() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 60)
    good = y + rng.normal(0, 0.5, (2, 60))
    noise = rng.normal(0, 1, (2, 60))
    d, lo, hi, p = paired_auc_difference(y, good, noise, n_boot=500, seed=0)
    assert d > 0.2 and lo > 0 and p < 0.01
    d, lo, hi, p = paired_auc_difference(y, good, good, n_boot=200, seed=0)
    assert d == 0 and lo == 0 and hi == 0 and p == 1.0
