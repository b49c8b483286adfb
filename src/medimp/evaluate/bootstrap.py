"""Patient-level bootstrap of ROC AUC, balanced accuracy and F1, and the paired AUC test.

Inputs are out-of-fold predictions of one task: one score and one 0/1 decision per patient and
per CV repeat (arrays ``[R, n]``). A metric is computed on each repeat and averaged over the
repeats; a bootstrap sample draws patients with replacement (the same patients for all
repeats, and for both methods of a paired test) and recomputes that average. All metrics are
vectorised over bootstrap samples, so 1000 resamples cost milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "BootstrapResult",
    "auc",
    "balanced_accuracy",
    "bootstrap_indices",
    "bootstrap_metrics",
    "f1",
    "paired_auc_difference",
]


def auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """ROC AUC along the last axis (Mann–Whitney with tie-averaged ranks); NaN if one class."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(s, dtype=float)
    y, s = np.broadcast_arrays(y, s)
    ranks = rankdata(s, axis=-1)
    n_pos = y.sum(axis=-1)
    n_neg = y.shape[-1] - n_pos
    r_pos = np.where(y, ranks, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def _confusion(y: np.ndarray, p: np.ndarray):
    y = np.asarray(y).astype(bool)
    p = np.asarray(p).astype(bool)
    y, p = np.broadcast_arrays(y, p)
    tp = (y & p).sum(axis=-1)
    fn = (y & ~p).sum(axis=-1)
    fp = (~y & p).sum(axis=-1)
    tn = (~y & ~p).sum(axis=-1)
    return tp, fn, fp, tn


def balanced_accuracy(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Mean of sensitivity and specificity along the last axis; NaN if one class."""
    tp, fn, fp, tn = _confusion(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.5 * (tp / (tp + fn) + tn / (tn + fp))


def f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """F1 of the positive class along the last axis (0 when nothing is predicted positive)."""
    tp, fn, fp, _ = _confusion(y, p)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]`` patient indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimates (mean over repeats) and 95% percentile intervals."""

    auc: float
    auc_ci: tuple[float, float]
    balanced_accuracy: float
    balanced_accuracy_ci: tuple[float, float]
    f1: float
    f1_ci: tuple[float, float]


def _ci(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def bootstrap_metrics(y: np.ndarray, scores: np.ndarray, decisions: np.ndarray,
                      n_boot: int = 1000, seed: int = 0) -> BootstrapResult:
    """Metrics of out-of-fold predictions with patient-level bootstrap 95% CIs.

    Args:
        y: ``[n]`` 0/1 label per patient.
        scores: ``[R, n]`` predicted probability per repeat and patient.
        decisions: ``[R, n]`` 0/1 decision per repeat and patient (threshold from training).
        n_boot: bootstrap resamples of the patients.
        seed: resampling seed (use the same seed for every method to pair them).
    """
    y = np.asarray(y).astype(int)
    scores = np.atleast_2d(scores)
    decisions = np.atleast_2d(decisions)
    idx = bootstrap_indices(len(y), n_boot, seed)
    yb = y[idx]  # [B, n]
    out = {}
    for name, fn, arr in (("auc", auc, scores), ("balanced_accuracy", balanced_accuracy,
                                                  decisions), ("f1", f1, decisions)):
        point = float(np.nanmean(fn(y[None, :], arr)))
        boot = np.nanmean(fn(yb[None, :, :], arr[:, idx]), axis=0) if n_boot else np.array([])
        out[name] = (point, _ci(boot))
    return BootstrapResult(auc=out["auc"][0], auc_ci=out["auc"][1],
                           balanced_accuracy=out["balanced_accuracy"][0],
                           balanced_accuracy_ci=out["balanced_accuracy"][1],
                           f1=out["f1"][0], f1_ci=out["f1"][1])


def paired_auc_difference(y: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                          n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float, float]:
    """Bootstrap test of AUC(a) - AUC(b) on the same patients.

    Returns:
        (difference, ci_low, ci_high, two-sided p-value). The p-value is twice the smaller
        share of bootstrap differences on either side of 0 (at least 1/(n_boot+1)).
    """
    y = np.asarray(y).astype(int)
    a, b = np.atleast_2d(scores_a), np.atleast_2d(scores_b)
    diff = float(np.nanmean(auc(y[None, :], a)) - np.nanmean(auc(y[None, :], b)))
    idx = bootstrap_indices(len(y), n_boot, seed)
    yb = y[idx][None, :, :]
    d = np.nanmean(auc(yb, a[:, idx]), axis=0) - np.nanmean(auc(yb, b[:, idx]), axis=0)
    d = d[np.isfinite(d)]
    lo, hi = _ci(d)
    if d.size == 0:
        return diff, lo, hi, float("nan")
    p = 2 * min((d <= 0).mean(), (d >= 0).mean())
    p = max(min(float(p), 1.0), 1.0 / (d.size + 1))
    return diff, lo, hi, p
