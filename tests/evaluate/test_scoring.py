"""The vectorised scores agree with scikit-learn, ties and one-class folds included."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from medimp.evaluate.scoring import auc, balanced_accuracy, f1


def test_metrics_match_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.random(50), 1)  # many ties
    p = (s > 0.5).astype(int)
    assert np.isclose(auc(y, s), roc_auc_score(y, s))
    assert np.isclose(balanced_accuracy(y, p), balanced_accuracy_score(y, p))
    assert np.isclose(f1(y, p), f1_score(y, p))
    assert np.isnan(auc(np.ones(5), s[:5]))


def test_scores_along_the_last_axis_match_one_at_a_time() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    s = rng.random((3, 40))
    p = (s > 0.5).astype(int)
    for fn, x in ((auc, s), (balanced_accuracy, p), (f1, p)):
        rows = fn(y[None, :], x)
        assert rows.shape == (3,)
        assert np.allclose(rows, [fn(y, x[i]) for i in range(3)])
    assert f1(y, np.zeros(40, dtype=int)) == 0.0  # nothing predicted positive
