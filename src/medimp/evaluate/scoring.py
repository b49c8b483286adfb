"""Patient-level scores of a binary prediction: ROC AUC, balanced accuracy and F1.

Each is computed along the last axis, so one call scores a single test fold (``[n]``) or many
rows at once (``[..., n]``); a score that is undefined (one class only) is NaN.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["auc", "balanced_accuracy", "f1"]


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
