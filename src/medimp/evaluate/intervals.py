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
fold values are averaged over runs and the variance of the run means divided by the number of
runs is added (seed variance); the run × fold interaction, which that seed part already holds,
is taken out of the fold part so that it counts once; the degrees of freedom follow
Welch–Satterthwaite. A paired comparison does the same on the per-fold differences (the folds
are shared by every method). How well this covers is measured in ``benchmarks/coverage.py``
(docs/evaluate.md, "How the intervals were chosen").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special, stats

from medimp.evaluate.scoring import auc

__all__ = ["Interval", "auc_interval", "corrected_interval", "fold_metric",
           "minimal_detectable_difference", "paired_auc_interval"]


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


def _run_matrix(values: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(values, dtype=float))


def _means(m: np.ndarray) -> np.ndarray:
    return m.mean(axis=1)


def _interaction_ms(m: np.ndarray) -> float:
    """Run × fold interaction mean square of a ``[runs, J]`` table (two-way ANOVA without
    replication): what is left of each value after its run's and its fold's effects."""
    resid = m - m.mean(axis=1, keepdims=True) - m.mean(axis=0, keepdims=True) + m.mean()
    return float((resid**2).sum() / ((m.shape[0] - 1) * (m.shape[1] - 1)))


def _satterthwaite(terms: list[tuple[float, float]], var: float, fallback: float) -> float:
    """Welch–Satterthwaite df of ``var = sum of coef·mean square`` (``(coef·MS, df)`` terms;
    negative terms allowed, as in an ANOVA variance-component estimate)."""
    denom = sum(t**2 / d for t, d in terms if t != 0 and d > 0)
    return var**2 / denom if denom > 0 and var > 0 else fallback


def corrected_interval(values: np.ndarray, test_train_ratio: float, *,
                       other: np.ndarray | None = None, null: float = 0.0,
                       clip: tuple[float, float] | None = None,
                       level: float = 0.95, weights: np.ndarray | None = None) -> Interval:
    """Corrected resampled t interval of a mean fold value (or of a paired difference).

    Args:
        values: ``[J]`` fold values of one run, or ``[runs, J]`` of several pretraining runs
            of one method on the same folds.
        test_train_ratio: ``n_test / n_train`` of the outer folds (``1/(k-1)`` for k-fold).
        other: for a paired comparison, the fold values of the other method (``[J]`` or
            ``[runs, J]``, the same folds); the interval is then of ``values - other``.
        null: value tested by the p-value (0 for a difference, 0.5 for an AUC).
        clip: bounds of the metric (e.g. (0, 1)) applied to the interval.
        level: coverage of the interval.
        weights: ``[J]`` weight of each fold (e.g. its comparable pairs for a C-index): the
            estimate is the weighted mean, s² the weighted variance and J the effective
            number of folds (Σw)²/Σw²; None: equal weights.

    Folds where a metric is undefined (NaN) in any run are left out. With ``D_j`` the
    (run-averaged) value or difference of fold j, ``s²`` its variance over the J folds and,
    for each method with R >= 2 runs, ``s²_runs`` the variance of its run means and ``MS_int``
    its run × fold interaction mean square, the variance of the estimate is

        V = Σ s²_runs / R  +  (1/J + n_test/n_train) · max(s² − Σ MS_int / R, 0)

    (corrected repeated k-fold t of Nadeau & Bengio 2003 and Bouckaert & Frank 2004; the
    between-run part holds the seed × fold interaction, so it is taken out of the fold part
    and counted once). Degrees of freedom: Welch–Satterthwaite over the mean squares.
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
    if weights is None:
        estimate = float(per_fold.mean())
        s2, j_eff, run_means = float(per_fold.var(ddof=1)), float(n_folds), _means
    else:
        wp = np.asarray(weights, dtype=float)[keep]
        wp = wp / wp.sum()
        estimate = float(wp @ per_fold)
        s2 = float(wp @ (per_fold - estimate) ** 2 / (1.0 - float(wp @ wp)))
        j_eff = 1.0 / float(wp @ wp)

        def run_means(m: np.ndarray, wp: np.ndarray = wp) -> np.ndarray:
            return m @ wp
    c = 1.0 / j_eff + test_train_ratio
    fold_terms = [(c * s2, j_eff - 1.0)]
    seed_terms: list[tuple[float, float]] = []
    seed_sd = None
    for i, m in enumerate(mats):
        r = m.shape[0]
        if r > 1:
            sd = float(run_means(m).std(ddof=1))
            seed_sd = sd if i == 0 else seed_sd
            seed_terms.append((sd**2 / r, r - 1.0))
            fold_terms.append((-c * _interaction_ms(m) / r, (r - 1.0) * (n_folds - 1)))
    fold_var = sum(t for t, _ in fold_terms) if np.isfinite(s2) else 0.0
    if fold_var <= 0:  # the folds vary no more than the interaction explains
        fold_var, fold_terms = 0.0, []
    var = fold_var + sum(t for t, _ in seed_terms)
    df = _satterthwaite(fold_terms + seed_terms, var, j_eff - 1.0)
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


def minimal_detectable_difference(se: float, df: float = np.inf, alpha: float = 0.05,
                                  power: float = 0.8) -> float:
    """Smallest true difference that a two-sided t test at ``alpha`` with ``df`` degrees of
    freedom detects with probability ``power``, given the standard error of the difference.

    The test statistic of a true difference δ follows a noncentral t with ``df`` degrees of
    freedom and noncentrality δ/SE; the δ whose rejection probability is ``power`` is solved
    for (``scipy.stats.nct``). With infinite df this is the normal (z.975 + z.80)·SE = 2.80·SE;
    with the 3-4 df a seed-dominated comparison has, it is about 4·SE.
    """
    if not np.isfinite(se) or se <= 0:
        return float("nan") if not np.isfinite(se) else 0.0
    if not np.isfinite(df) or df > 1e6:
        return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def short(nc: float) -> float:
        return _rejection(crit, df, nc) - power

    hi = crit + 2.0
    while short(hi) < 0 and hi < 1e4:
        hi *= 2.0
    if short(hi) < 0:
        return float("inf")
    return float(optimize.brentq(short, 0.0, hi, xtol=1e-6) * se)


def _rejection(crit: float, df: float, nc: float) -> float:
    """P(|T| > crit) for T noncentral t (df, nc): ``scipy.stats.nct``; where its series does
    not converge (very few df), the same probability by integrating over the chi-square of
    the denominator."""
    upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
    if np.isfinite(upper) and np.isfinite(lower):
        return float(upper + lower)

    return float(integrate.quad(_given_v, 0, np.inf, args=(crit, df, nc), limit=200)[0])


def _given_v(v: float, crit: float, df: float, nc: float) -> float:
    """The integrand of :func:`_rejection`: P(|Z + nc| > crit·sqrt(v/df)) times the chi-square
    density of v. ``stats.norm.sf(x)``, ``stats.norm.cdf(x)`` and ``stats.chi2.pdf(v, df)``
    written as the ``scipy.special`` expressions those distributions evaluate (the same
    numbers, without their per-call overhead: quad calls this hundreds of times per root)."""
    if not 0 < v < np.inf:  # outside the chi-square's support
        return 0.0
    c = crit * np.sqrt(v / df)
    pdf = np.exp(special.xlogy(df / 2.0 - 1, v) - v / 2.0 - special.gammaln(df / 2.0)
                 - (np.log(2) * df) / 2.0)
    return float((special.ndtr(-(c - nc)) + special.ndtr(-c - nc)) * pdf)


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
    """AUC(a) - AUC(b) on the same folds, seed-aware (:func:`corrected_interval` of the
    per-fold AUCs of each run). :func:`medimp.evaluate.compare.paired_comparison` adds the
    verdict and the minimal detectable difference."""
    va = np.stack([fold_metric(y, s, tests, auc) for s in runs_a])
    vb = np.stack([fold_metric(y, s, tests, auc) for s in runs_b])
    return corrected_interval(va, test_train_ratio, other=vb)
