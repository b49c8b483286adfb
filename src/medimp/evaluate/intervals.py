"""Confidence intervals that carry the variability of the training folds and of pretraining seeds.

A cross-validated metric varies for three reasons: which patients were sampled, how they fell
into folds, and (for a pretrained encoder) which pretraining seed was drawn. A bootstrap of
fixed out-of-fold predictions sees only the first, conditional on the fitted probes, and its
"95%" intervals were measured to cover the true AUC far less often (``benchmarks/coverage.py``).

Here a metric is computed on each test fold of each repeat (``J = repeats × folds`` values) and
summarised with the **corrected resampled t** of Nadeau & Bengio (2003), as used for repeated
k-fold CV by Bouckaert & Frank (2004): the variance of the mean of the J fold values is
``(1/J + n_test/n_train) · s²`` (the second term accounts for the overlap of the training
sets), with ``J - 1`` degrees of freedom. For a method with several pretraining runs, the
fold values are averaged over runs, and the variance of the run means divided by the number of
runs is added (seed variance); the degrees of freedom follow Welch–Satterthwaite. A paired
comparison does the same on the per-fold differences (the folds are shared by every method).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from medimp.evaluate.scoring import auc

__all__ = ["Interval", "corrected_interval", "delong_variance", "fold_metric",
           "minimal_detectable_difference"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its standard error, 95% interval and two-sided p (vs ``null``)."""

    estimate: float
    se: float
    low: float
    high: float
    p_value: float
    df: float
    n_runs: int
    seed_sd: float | None  # sd of the run means (None with one run)


def fold_metric(y: np.ndarray, scores: np.ndarray, tests: Sequence[tuple[int, np.ndarray]],
                fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn(y, scores)`` on each test fold: ``[J]`` values.

    Args:
        y: ``[n]`` labels of the task's patients.
        scores: ``[R, n]`` out-of-fold predictions (one row per CV repeat).
        tests: ``(repeat, test indices)`` of each outer fold.
        fn: a metric of (labels, predictions), e.g. :func:`medimp.evaluate.scoring.auc`.
    """
    scores = np.atleast_2d(scores)
    return np.array([float(fn(y[idx], scores[r, idx])) for r, idx in tests])


def _placements(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per positive, the share of negatives it outranks;
    per negative, the share of positives that outrank it (ties count one half)."""
    pos, neg = s[y == 1], s[y == 0]
    cmp = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return cmp.mean(axis=1), cmp.mean(axis=0)


def delong_variance(y: np.ndarray, scores: np.ndarray,
                    other: np.ndarray | None = None) -> float:
    """DeLong variance of the pooled out-of-fold AUC (or of a paired AUC difference).

    Averaged over the CV repeats (rows of ``scores``). It treats the predictions as fixed:
    it is the patient-sampling part of the uncertainty at the full cohort size, which the
    fold-to-fold variance does not see.
    """
    y = np.asarray(y).astype(int)
    a = np.atleast_2d(np.asarray(scores, dtype=float))
    b = None if other is None else np.atleast_2d(np.asarray(other, dtype=float))
    m, n = int(y.sum()), int((1 - y).sum())
    if m < 2 or n < 2:
        return float("nan")
    out = []
    for r in range(a.shape[0]):
        v10, v01 = _placements(y, a[r])
        if b is not None:
            w10, w01 = _placements(y, b[r % b.shape[0]])
            v10, v01 = v10 - w10, v01 - w01
        out.append(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return float(np.mean(out))


def _run_matrix(values: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(values, dtype=float))


def corrected_interval(values: np.ndarray, test_train_ratio: float, *,
                       other: np.ndarray | None = None, null: float = 0.0,
                       clip: tuple[float, float] | None = None,
                       extra_variance: tuple[float, float] | None = None,
                       level: float = 0.95) -> Interval:
    """Corrected resampled t interval of a mean fold value (or of a paired difference).

    Args:
        values: ``[J]`` fold values of one run, or ``[runs, J]`` of several pretraining runs
            of one method on the same folds.
        test_train_ratio: ``n_test / n_train`` of the outer folds (``1/(k-1)`` for k-fold).
        other: for a paired comparison, the fold values of the other method (``[J]`` or
            ``[runs, J]``, the same folds); the interval is then of ``values - other``.
        null: value tested by the p-value (0 for a difference, 0.5 for an AUC).
        clip: bounds of the metric (e.g. (0, 1)) applied to the interval.
        extra_variance: ``(variance, df)`` of a further independent component (the paired
            test adds the DeLong variance of the pooled difference, see below).
        level: coverage of the interval.

    Folds where a metric is undefined (NaN) are left out. The variance is the corrected CV
    variance of the per-fold (run-averaged) values plus, for each method with several runs,
    the variance of its run means divided by its number of runs.
    """
    mats = [_run_matrix(values)] + ([_run_matrix(other)] if other is not None else [])
    keep = np.logical_and.reduce([np.isfinite(m).all(axis=0) for m in mats])
    mats = [m[:, keep] for m in mats]
    n_folds = int(keep.sum())
    n_runs = mats[0].shape[0]
    if n_folds < 2:
        nan = float("nan")
        return Interval(nan, nan, nan, nan, nan, nan, n_runs, None)
    per_fold = mats[0].mean(axis=0) - (mats[1].mean(axis=0) if other is not None else 0.0)
    estimate = float(per_fold.mean())
    parts = [((1.0 / n_folds + test_train_ratio) * float(per_fold.var(ddof=1)), n_folds - 1)]
    seed_sd = None
    for i, m in enumerate(mats):
        if m.shape[0] > 1:
            sd = float(m.mean(axis=1).std(ddof=1))
            seed_sd = sd if i == 0 else seed_sd
            parts.append((sd**2 / m.shape[0], m.shape[0] - 1))
    if extra_variance is not None and np.isfinite(extra_variance[0]):
        parts.append((float(extra_variance[0]), float(extra_variance[1])))
    var = sum(v for v, _ in parts)
    denom = sum(v**2 / d for v, d in parts if v > 0)
    df = var**2 / denom if denom > 0 else float(n_folds - 1)  # Welch–Satterthwaite
    se = float(np.sqrt(var))
    if se == 0:
        lo = hi = estimate
        p = 1.0 if estimate == null else 0.0
    else:
        q = float(stats.t.ppf(0.5 + level / 2, df))
        lo, hi = estimate - q * se, estimate + q * se
        p = float(2 * stats.t.sf(abs(estimate - null) / se, df))
    if clip is not None:
        lo, hi = max(lo, clip[0]), min(hi, clip[1])
    return Interval(estimate=estimate, se=se, low=float(lo), high=float(hi), p_value=p,
                    df=float(df), n_runs=n_runs, seed_sd=seed_sd)


def minimal_detectable_difference(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided test at ``alpha`` detects with ``power``,
    given the standard error of the difference (normal approximation)."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def auc_interval(y: np.ndarray, runs: Sequence[np.ndarray],
                 tests: Sequence[tuple[int, np.ndarray]], test_train_ratio: float) -> Interval:
    """AUC of one method (one or several runs): mean fold AUC, corrected resampled t CI.

    Args:
        y: ``[n]`` labels.
        runs: per run, ``[R, n]`` out-of-fold scores (R CV repeats), the same folds for all.
        tests: ``(repeat, test indices)`` of each outer fold.
        test_train_ratio: ``n_test / n_train`` of the outer folds.
    """
    values = np.stack([fold_metric(y, s, tests, auc) for s in runs])
    return corrected_interval(values, test_train_ratio, null=0.5, clip=(0.0, 1.0))


def paired_auc_interval(y: np.ndarray, runs_a: Sequence[np.ndarray],
                        runs_b: Sequence[np.ndarray], tests: Sequence[tuple[int, np.ndarray]],
                        test_train_ratio: float) -> Interval:
    """AUC(a) - AUC(b) on the same folds, seed-aware, with the DeLong component added.

    The fold-to-fold variance misses the part of the patient sampling that all folds share
    (measured: on two noise feature sets the corrected t alone rejected 10-13% of the time at
    5%, ``benchmarks/coverage.py``), so the DeLong variance of the pooled out-of-fold AUC
    difference is added as an independent component (matched runs, cycled when the methods
    have different numbers of runs).
    """
    va = np.stack([fold_metric(y, s, tests, auc) for s in runs_a])
    vb = np.stack([fold_metric(y, s, tests, auc) for s in runs_b])
    n = max(len(runs_a), len(runs_b))
    dl = float(np.mean([delong_variance(y, runs_a[i % len(runs_a)], runs_b[i % len(runs_b)])
                        for i in range(n)]))
    return corrected_interval(va, test_train_ratio, other=vb,
                              extra_variance=(dl, len(y) - 2))
