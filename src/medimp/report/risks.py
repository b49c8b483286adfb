"""Absolute risks from the out-of-fold predictions: what a predicted risk means for patients.

A transplant team reads a model through its predicted risks, not its AUC. From
``predictions.parquet`` (one out-of-fold probability per task, method, run, repeat and patient)
each patient's predicted risk is the mean of their out-of-fold probabilities over the CV repeats
(and over the pretraining runs of a method with several); then

* :func:`risk_groups`: patients per predicted-risk group, the mean predicted risk and the
  observed rate of poor status with its Wilson 95% interval (the data of a calibration plot);
* :func:`threshold_table`: sensitivity, specificity, PPV and NPV when every patient with a
  predicted risk at or above a stated threshold is called positive.

These are descriptive: the groups and thresholds are fixed in advance (never tuned on the data),
and the intervals are those of a binomial share.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import pandas as pd
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix

__all__ = ["RISK_EDGES", "THRESHOLDS", "patient_risks", "risk_groups", "threshold_table"]

RISK_EDGES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
THRESHOLDS = (0.1, 0.25, 0.5)


def patient_risks(predictions: pd.DataFrame, task: str, method: str,
                  level: str = "patient_mean", probe: str = "logistic") -> pd.DataFrame:
    """``patient_id, label, risk`` of one task and method: the mean out-of-fold probability."""
    sel = predictions[(predictions["task"] == task) & (predictions["method"] == method)
                      & (predictions["level"] == level) & (predictions["probe"] == probe)]
    if sel.empty:
        return pd.DataFrame(columns=["patient_id", "label", "risk"])
    out = sel.groupby("patient_id", sort=True).agg(label=("label", "first"),
                                                   risk=("score", "mean"))
    return out.reset_index()


def _wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(ci.low), float(ci.high))


def risk_groups(risks: pd.DataFrame, edges: Sequence[float] = RISK_EDGES) -> pd.DataFrame:
    """Per predicted-risk group ``[lo, hi)`` (the last one closed): ``group, n, events,
    mean_risk, observed, observed_low, observed_high``; empty groups are left out."""
    rows = []
    r = risks["risk"].to_numpy(float)
    y = risks["label"].to_numpy(int)
    for i, (lo, hi) in enumerate(pairwise(edges)):
        last = i == len(edges) - 2
        m = (r >= lo) & ((r <= hi) if last else (r < hi))
        n = int(m.sum())
        if n == 0:
            continue
        k = int(y[m].sum())
        low, high = _wilson(k, n)
        rows.append({"group": f"{lo:.0%}–{hi:.0%}", "n": n, "events": k,
                     "mean_risk": float(r[m].mean()), "observed": k / n,
                     "observed_low": low, "observed_high": high})
    return pd.DataFrame(rows, columns=["group", "n", "events", "mean_risk", "observed",
                                       "observed_low", "observed_high"])


def _share(a: int, b: int) -> float | None:
    return a / (a + b) if a + b else None


def threshold_table(risks: pd.DataFrame,
                    thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
    """At each threshold t (positive: risk >= t): ``threshold, positives, tp, fp, fn, tn,
    sensitivity, specificity, ppv, npv`` (None where undefined, e.g. no positive call)."""
    y = risks["label"].to_numpy(int)
    r = risks["risk"].to_numpy(float)
    rows = []
    for t in thresholds:
        call = (r >= t).astype(int)
        tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, call, labels=[0, 1]).ravel())
        rows.append({"threshold": float(t), "positives": tp + fp, "tp": tp, "fp": fp,
                     "fn": fn, "tn": tn, "sensitivity": _share(tp, fn),
                     "specificity": _share(tn, fp), "ppv": _share(tp, fp),
                     "npv": _share(tn, fn)})
    return pd.DataFrame(rows)
