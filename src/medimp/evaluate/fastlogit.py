"""The probes' inner logistic regressions, bit for bit, without scikit-learn's per-call checks.

An evaluation fits tens of thousands of tiny L2 logistic regressions (a few dozen patients,
tens of features) to choose each probe's penalty. On such problems the arithmetic takes
microseconds; what costs is the work around it that scikit-learn does on every call and every
solver iteration (input validation, array-API dispatch, dataframe detection): about three
quarters of each fit. :func:`logistic_proba` does the same fit with the same numbers in the
same order (scikit-learn's own binomial loss, the same L-BFGS-B call with the same options,
the same prediction), so it returns the very probabilities of
``LogisticRegression(C=C, max_iter=max_iter).fit(X, y).predict_proba(X_test)[:, 1]``.

It checks that claim on each process's first fit rather than assuming it: that fit is computed
both ways, and if the coefficients, intercept, iteration count or probabilities differ in a
single bit (another scikit-learn version that changed its loss or solver call), every later fit
of the process goes through ``LogisticRegression`` and a warning says so. The check covers one
problem, not every one: ``tests/evaluate/test_fastlogit.py`` compares the fast path itself
with scikit-learn on 200 more. Inputs outside the fast path (labels other than two integer
classes, other dtypes, non-finite or empty features, an unusual ``max_iter``) go through
``LogisticRegression``, with its own errors; so does every fit if scikit-learn's private loss
module has moved. See docs/performance.md "Evaluation".
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
from scipy import optimize
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

try:  # scikit-learn's private modules: without them, every fit is LogisticRegression's
    from sklearn._loss.loss import HalfBinomialLoss
    from sklearn.linear_model._logistic import _LOGISTIC_SOLVER_CONVERGENCE_MSG
    from sklearn.utils.optimize import _check_optimize_result
except ImportError:  # pragma: no cover - depends on the installed scikit-learn
    HalfBinomialLoss = None

__all__ = ["logistic_proba"]

_LOSS = HalfBinomialLoss() if HalfBinomialLoss is not None else None
#: LogisticRegression's default stopping tolerance (the probes keep it)
_TOL = 1e-4
#: "verified": None while not yet checked in this process; True: the fast path equals
#: scikit-learn's; False: it does not (every fit goes through LogisticRegression)
_STATE: dict[str, bool | None] = {"verified": None if _LOSS is not None else False}
_LOCK = threading.Lock()


def _loss_gradient(coef: np.ndarray, X: np.ndarray, y: np.ndarray, l2: float
                   ) -> tuple[float, np.ndarray]:
    """``LinearModelLoss(HalfBinomialLoss(), fit_intercept=True).loss_gradient`` without
    sample weights: the mean binomial loss plus ``l2 / 2 * |w|^2``, and its gradient."""
    n, p = X.shape
    weights = coef[:-1]
    raw = X @ weights + np.asarray(coef[-1])
    loss, grad_pointwise = _LOSS.loss_gradient(y_true=y, raw_prediction=raw,
                                               sample_weight=None, n_threads=1)
    value = float(np.sum(loss) / n)
    value += float(0.5 * l2 * (weights @ weights))
    grad_pointwise /= n
    grad = np.empty_like(coef)
    grad[:p] = X.T @ grad_pointwise + l2 * weights
    grad[-1] = np.sum(grad_pointwise)
    return value, grad


def _fast(x_train: np.ndarray, y01: np.ndarray, x_test: np.ndarray, C: float, max_iter: int
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Probabilities of class 1 for ``x_test``, the fitted ``[coef..., intercept]`` and the
    solver's iterations, as ``LogisticRegression`` computes them."""
    X = np.ascontiguousarray(x_train)  # LogisticRegression.fit validates with order="C"
    n, p = X.shape
    res = optimize.minimize(
        _loss_gradient, np.zeros(p + 1), method="L-BFGS-B", jac=True,
        args=(X, y01, 1.0 / (C * n)),
        options={"maxiter": max_iter, "maxls": 50, "gtol": _TOL,
                 "ftol": 64 * np.finfo(float).eps})
    n_iter = _check_optimize_result("lbfgs", res, max_iter,  # scikit-learn's own warning
                                    extra_warning_msg=_LOGISTIC_SOLVER_CONVERGENCE_MSG)
    coef = np.array(res.x)
    # predict_proba: expit(X @ coef_.T + intercept_) with coef_ of shape (1, p)
    coef_t = coef[:-1][None, :].T
    scores = (x_test @ coef_t + coef[-1:]).reshape(-1)
    return expit(scores, out=scores), coef, int(n_iter)


def _sklearn_proba(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, C: float,
                   max_iter: int) -> np.ndarray:
    return LogisticRegression(C=float(C), max_iter=max_iter).fit(x_train, y) \
        .predict_proba(x_test)[:, 1]


def _usable(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, classes: np.ndarray, *,
            C: object, max_iter: object) -> bool:
    """Whether the fast path applies to integer labels ``y`` (else LogisticRegression fits,
    with its own errors)."""
    numbers = (float, int, np.floating, np.integer)
    return (len(classes) == 2 and y.ndim == 1
            and isinstance(max_iter, int | np.integer) and not isinstance(max_iter, bool)
            and max_iter >= 0 and isinstance(C, numbers) and not isinstance(C, bool)
            and bool(np.isfinite(C)) and C > 0
            and x_train.ndim == 2 and x_test.ndim == 2
            and x_train.dtype == np.float64 and x_test.dtype == np.float64
            and x_train.dtype.isnative and x_test.dtype.isnative
            and len(y) == len(x_train) and x_train.shape[1] >= 1 and len(x_test) >= 1
            and x_test.shape[1] == x_train.shape[1]
            and bool(np.isfinite(x_train).all()) and bool(np.isfinite(x_test).all()))


def _first_fit(x_train: np.ndarray, y: np.ndarray, y01: np.ndarray, x_test: np.ndarray, *,
               C: float, max_iter: int) -> np.ndarray:
    """This process's first fit, both ways: decides whether the fast path is used from now on,
    and returns scikit-learn's probabilities either way (the same bits when it is)."""
    with warnings.catch_warnings():  # the fast fit below warns as scikit-learn would
        warnings.simplefilter("ignore")
        clf = LogisticRegression(C=float(C), max_iter=max_iter).fit(x_train, y)
    ref = clf.predict_proba(x_test)[:, 1]
    proba, coef, n_iter = _fast(x_train, y01, x_test, float(C), int(max_iter))
    _STATE["verified"] = bool(
        np.array_equal(ref, proba) and np.array_equal(clf.coef_.ravel(), coef[:-1])
        and np.array_equal(clf.intercept_, coef[-1:]) and int(clf.n_iter_[0]) == n_iter)
    if not _STATE["verified"]:
        warnings.warn("medimp.evaluate.fastlogit: this scikit-learn's logistic regression "
                      "differs from the fast path; every probe fit goes through "
                      "LogisticRegression (slower, the same results)", RuntimeWarning,
                      stacklevel=3)
    return ref


def logistic_proba(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, C: float,
                   max_iter: int = 100) -> np.ndarray:
    """``LogisticRegression(C=C, max_iter=max_iter).fit(x_train, y_train)``'s probability of
    class 1 for each row of ``x_test``, bit for bit, faster on small problems.

    Args:
        x_train: training features (float64, rows are samples).
        y_train: labels with two classes; the larger is the positive one.
        x_test: features to score (float64).
        C: inverse L2 penalty.
        max_iter: L-BFGS iterations at most (a ``ConvergenceWarning`` when reached).
    """
    x_train, x_test, y = np.asarray(x_train), np.asarray(x_test), np.asarray(y_train)
    if _STATE["verified"] is not False and y.dtype.kind in "iu":
        classes = np.unique(y)
        if _usable(x_train, y, x_test, classes, C=C, max_iter=max_iter):
            y01 = (y == classes[1]).astype(np.float64)
            if _STATE["verified"] is None:
                with _LOCK:
                    if _STATE["verified"] is None:
                        return _first_fit(x_train, y, y01, x_test, C=C, max_iter=max_iter)
            if _STATE["verified"]:
                return _fast(x_train, y01, x_test, float(C), int(max_iter))[0]
    return _sklearn_proba(x_train, y, x_test, C, max_iter)
