"""Is the predicted risk right, and is it useful? Brier score, calibration, decision curves.

All of it is computed from the out-of-fold probabilities of the binary tasks (``[R, n]`` per
run: R CV repeats × n patients), never from a model's own training data.

* **Brier score** per test fold, averaged, with the corrected resampled t interval of the AUC
  (:func:`medimp.evaluate.intervals.corrected_interval`); lower is better; a model that always
  predicts the prevalence π scores π(1-π).
* **Calibration intercept and slope** (logistic recalibration, Cox 1958; Van Calster et al.
  2019): on each repeat's out-of-fold probabilities p, ``logit P(y=1) = a + logit(p)`` gives
  the intercept ``a`` (calibration-in-the-large; 0 is ideal, > 0: risks too low) and
  ``logit P(y=1) = a + b·logit(p)`` the slope ``b`` (1 is ideal; < 1: risks too extreme, the
  usual sign of overfitting). The estimate is the mean over repeats (and runs); the 95% CI is
  normal with the mean Wald variance of the fits plus, for several runs, the variance of the
  run means divided by their number. A fit that does not converge (separation) is left out.
* **Net benefit** (Vickers & Elkin 2006) at risk threshold t: ``TP/n - FP/n · t/(1-t)``,
  treating as positive every patient whose risk is at least t; "treat all" is
  ``π - (1-π)·t/(1-t)`` and "treat none" 0. :func:`decision_curve` averages it over repeats
  and runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit

__all__ = [
    "DEFAULT_THRESHOLDS",
    "CalibrationFit",
    "brier",
    "calibration_fit",
    "calibration_summary",
    "calibration_table",
    "decision_curve",
    "net_benefit",
    "treat_all",
]

DEFAULT_THRESHOLDS = np.round(np.arange(0.05, 0.5001, 0.01), 2)
_EPS = 1e-6


def brier(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Mean squared difference between probability and outcome along the last axis."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    return np.mean((p - y) ** 2, axis=-1)


@dataclass(frozen=True)
class CalibrationFit:
    """Logistic recalibration of one set of probabilities (NaN where a fit failed)."""

    intercept: float
    intercept_var: float
    slope: float
    slope_var: float


def _irls(X: np.ndarray, y: np.ndarray, offset: np.ndarray,
          max_iter: int = 50) -> tuple[np.ndarray, np.ndarray] | None:
    """Maximum-likelihood logistic regression (Newton); (coefficients, covariance) or None."""
    beta = np.zeros(X.shape[1])
    for _ in range(max_iter):
        mu = expit(offset + X @ beta)
        w = mu * (1 - mu)
        hess = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(hess, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(beta)) > 30:  # separation: the likelihood has no finite maximum
            return None
        if np.max(np.abs(step)) < 1e-8:
            mu = expit(offset + X @ beta)
            hess = X.T @ (X * (mu * (1 - mu))[:, None])
            try:
                return beta, np.linalg.inv(hess)
            except np.linalg.LinAlgError:
                return None
    return None


def calibration_fit(y: np.ndarray, p: np.ndarray) -> CalibrationFit:
    """Calibration intercept (slope fixed at 1) and slope of probabilities ``p``."""
    y = np.asarray(y, dtype=float)
    lp = logit(np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS))
    nan = float("nan")
    if len(np.unique(y)) < 2:
        return CalibrationFit(nan, nan, nan, nan)
    one = np.ones((len(y), 1))
    icpt = _irls(one, y, lp)
    slope = _irls(np.column_stack([one[:, 0], lp]), y, np.zeros(len(y))) \
        if np.ptp(lp) > 0 else None
    return CalibrationFit(
        intercept=float(icpt[0][0]) if icpt else nan,
        intercept_var=float(icpt[1][0, 0]) if icpt else nan,
        slope=float(slope[0][1]) if slope else nan,
        slope_var=float(slope[1][1, 1]) if slope else nan)


@dataclass(frozen=True)
class CalibrationSummary:
    """Intercept and slope with 95% intervals, over repeats and runs."""

    intercept: float
    intercept_low: float
    intercept_high: float
    slope: float
    slope_low: float
    slope_high: float


def _pool(est: list[np.ndarray], var: list[np.ndarray], level: float) -> tuple[float, ...]:
    """Mean over repeats per run, then over runs; within (Wald) + between-run variance."""
    run_means = np.array([np.nanmean(e) if np.isfinite(e).any() else np.nan for e in est])
    run_vars = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in var])
    ok = np.isfinite(run_means) & np.isfinite(run_vars)
    if not ok.any():
        return (float("nan"),) * 3
    m, within = float(run_means[ok].mean()), float(run_vars[ok].mean())
    between = float(run_means[ok].var(ddof=1) / ok.sum()) if ok.sum() > 1 else 0.0
    half = float(stats.norm.ppf(0.5 + level / 2)) * np.sqrt(within + between)
    return m, m - half, m + half


def calibration_summary(y: np.ndarray, runs: Sequence[np.ndarray],
                        level: float = 0.95) -> CalibrationSummary:
    """Calibration intercept and slope of out-of-fold probabilities, with CIs.

    Args:
        y: ``[n]`` 0/1 outcomes.
        runs: per pretraining run, ``[R, n]`` out-of-fold probabilities (R CV repeats).
        level: coverage of the intervals.
    """
    fits = [[calibration_fit(y, row) for row in np.atleast_2d(s)] for s in runs]
    icpt = _pool([np.array([f.intercept for f in r]) for r in fits],
                 [np.array([f.intercept_var for f in r]) for r in fits], level)
    slope = _pool([np.array([f.slope for f in r]) for r in fits],
                  [np.array([f.slope_var for f in r]) for r in fits], level)
    return CalibrationSummary(*icpt, *slope)


def net_benefit(y: np.ndarray, p: np.ndarray,
                thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Net benefit ``TP/n - FP/n · t/(1-t)`` of treating patients with risk >= t, per t."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    treat = p[None, :] >= t[:, None]
    n = len(y)
    tp = (treat & y[None, :]).sum(axis=1) / n
    fp = (treat & ~y[None, :]).sum(axis=1) / n
    return tp - fp * t / (1 - t)


def treat_all(y: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Net benefit of treating everyone: ``π - (1-π)·t/(1-t)``."""
    prev = float(np.mean(np.asarray(y).astype(bool)))
    t = np.asarray(thresholds, dtype=float)
    return prev - (1 - prev) * t / (1 - t)


def decision_curve(y: np.ndarray, runs: Sequence[np.ndarray],
                   thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """Net benefit of a method (mean over CV repeats and runs) beside treat-all and treat-none.

    Returns:
        ``threshold``, ``net_benefit``, ``treat_all``, ``treat_none`` (0), one row per t.
    """
    t = np.asarray(thresholds, dtype=float)
    nb = np.mean([net_benefit(y, row, t) for s in runs for row in np.atleast_2d(s)], axis=0)
    return pd.DataFrame({"threshold": t, "net_benefit": nb, "treat_all": treat_all(y, t),
                         "treat_none": 0.0})


def calibration_table(y: np.ndarray, runs: Sequence[np.ndarray], n_bins: int = 5
                      ) -> pd.DataFrame:
    """Observed rate per group of predicted risk, with Wilson 95% intervals.

    Each patient's risk is its out-of-fold probability averaged over repeats and runs; the
    patients are split into ``n_bins`` groups of equal size (quantiles of the risk,
    scikit-learn's ``calibration_curve`` strategy "quantile").

    Returns:
        ``bin``, ``n``, ``mean_predicted``, ``observed``, ``observed_low``, ``observed_high``.
    """
    from sklearn.calibration import calibration_curve

    y = np.asarray(y).astype(int)
    risk = np.mean([np.atleast_2d(s).mean(axis=0) for s in runs], axis=0)
    n_bins = max(1, min(n_bins, len(np.unique(risk))))
    observed, predicted = calibration_curve(y, risk, n_bins=n_bins, strategy="quantile")
    # the groups calibration_curve used (its own binning rule), for the counts
    edges = np.percentile(risk, np.linspace(0, 1, n_bins + 1) * 100)
    counts = np.bincount(np.searchsorted(edges[1:-1], risk), minlength=n_bins)
    counts = counts[counts > 0]
    low, high = _wilson(np.round(observed * counts), counts)
    return pd.DataFrame({"bin": np.arange(len(counts)), "n": counts,
                         "mean_predicted": predicted, "observed": observed,
                         "observed_low": low, "observed_high": high})


def _wilson(k: np.ndarray, n: np.ndarray, z: float = 1.959964) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half
