"""The fast inner logistic regression returns scikit-learn's probabilities bit for bit, and
falls back to scikit-learn when it would not."""

import warnings

import numpy as np
import pytest
from sklearn._loss.loss import HalfSquaredError
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from medimp.evaluate import fastlogit


def _reference(X, y, Xt, C, max_iter):
    return LogisticRegression(C=C, max_iter=max_iter).fit(X, y).predict_proba(Xt)[:, 1]


def _problems(n_problems: int):
    rng = np.random.default_rng(7)
    made = 0
    while made < n_problems:
        n, p = int(rng.integers(8, 120)), int(rng.integers(1, 70))
        X = rng.normal(size=(n, p)) * rng.uniform(0.1, 5)
        if made % 3 == 0:
            X = np.asfortranarray(X)  # scikit-learn copies to C order: so must the fast path
        if made % 4 == 0:
            X = np.hstack([X, X])[:, ::2]  # a strided view, as the added-value model passes
        y = (X[:, 0] + rng.normal(size=n) > rng.normal()).astype(int)
        if len(np.unique(y)) < 2:
            continue
        if made % 5 == 0:
            y = np.where(y == 1, 5, 2)  # any two labels: the larger is the positive class
        made += 1
        yield X, y, rng.normal(size=(int(rng.integers(1, 30)), X.shape[1]))


@pytest.mark.parametrize("C", [0.01, 0.1, 1.0, 10.0, 1e4])
def test_bit_identical_to_logistic_regression(C):
    """The fast path itself (not a fall-back) against scikit-learn: probabilities,
    coefficients, intercept and iterations."""
    for X, y, Xt in _problems(40):
        assert fastlogit._usable(X, y, Xt, np.unique(y), C=C, max_iter=2000)
        proba, coef, n_iter = fastlogit._fast(X, (y == y.max()).astype(float), Xt, C, 2000)
        clf = LogisticRegression(C=C, max_iter=2000).fit(X, y)
        assert np.array_equal(proba, clf.predict_proba(Xt)[:, 1])
        assert np.array_equal(coef, np.r_[clf.coef_.ravel(), clf.intercept_])
        assert n_iter == clf.n_iter_[0]
        assert np.array_equal(fastlogit.logistic_proba(X, y, Xt, C, 2000), proba)
    assert fastlogit._STATE["verified"] is True


@pytest.mark.parametrize("bad", ["nan_test", "inf_train", "float_labels", "no_columns",
                                 "no_test_rows", "negative_max_iter"])
def test_bad_input_gets_scikit_learns_error(bad):
    rng = np.random.default_rng(1)
    X, Xt, y, max_iter = rng.normal(size=(20, 3)), rng.normal(size=(4, 3)), np.arange(20) % 2, 100
    if bad == "nan_test":
        Xt[0, 0] = np.nan
    elif bad == "inf_train":
        X[0, 0] = np.inf
    elif bad == "float_labels":
        y = y + 0.5
    elif bad == "no_columns":
        X, Xt = X[:, :0], Xt[:, :0]
    elif bad == "no_test_rows":
        Xt = Xt[:0]
    else:
        max_iter = -1
    with pytest.raises(ValueError):  # scikit-learn's message varies by case
        fastlogit.logistic_proba(X, y, Xt, 1.0, max_iter)


def test_unconverged_fit_warns_like_scikit_learn():
    X, y, Xt = next(_problems(1))
    with pytest.warns(ConvergenceWarning, match="failed to converge after 2 iteration") as rec:
        got = fastlogit.logistic_proba(X, y, Xt, 10.0, 2)
    texts = [str(w.message) for w in rec if issubclass(w.category, ConvergenceWarning)]
    with pytest.warns(ConvergenceWarning) as ref:
        _reference(X, y, Xt, 10.0, 2)
    assert texts == [str(w.message) for w in ref if issubclass(w.category, ConvergenceWarning)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert np.array_equal(got, _reference(X, y, Xt, 10.0, 2))


def test_one_class_gets_scikit_learns_error():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="only one class"):
        fastlogit.logistic_proba(X, np.ones(10, int), X, 1.0)


def test_another_loss_is_caught_and_falls_back(monkeypatch):
    """A scikit-learn whose loss differed from the fast path's (here: another loss put in its
    place) is found on the process's first fit: a warning, and scikit-learn's numbers from
    then on."""
    monkeypatch.setitem(fastlogit._STATE, "verified", None)
    monkeypatch.setattr(fastlogit, "_LOSS", HalfSquaredError())  # a "changed" scikit-learn
    problems = list(_problems(3))
    X, y, Xt = problems[0]
    with pytest.warns(RuntimeWarning, match="differs from the fast path"):
        first = fastlogit.logistic_proba(X, y, Xt, 1.0)
    assert np.array_equal(first, _reference(X, y, Xt, 1.0, 100))
    assert fastlogit._STATE["verified"] is False
    for X, y, Xt in problems[1:]:
        assert np.array_equal(fastlogit.logistic_proba(X, y, Xt, 1.0),
                              _reference(X, y, Xt, 1.0, 100))
