"""Graft survival from frozen features: penalised Cox on PCA-reduced embeddings.

In the same repeated, patient-grouped CV as the probes (stratified by event): on each training
fold, standardise, reduce with PCA, fit a penalised Cox model (lifelines ``CoxPHFitter``) and
score the test patients. Harrell's C is computed **on each test fold** with that fold's model,
so risks of different models are never ranked against each other; with few events a fold holds
few comparable pairs, so the fold values are averaged **weighted by their comparable pairs**
(a fold without a pair is left out and counted) and their CI is the corrected resampled t
(:mod:`medimp.evaluate.intervals`) with the effective number of folds. For the Kaplan–Meier
plot only, risks become within-fold percentiles, averaged over repeats; patients are split at
the median into a high and a low risk group. Their log-rank p is **descriptive**: the split
comes from the same cross-validated risks, so it is not a test of the model (the C-index's CI
is).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medimp.data import Cohort
from medimp.evaluate.cv import Split, make_splits
from medimp.evaluate.embeddings import level_data
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.intervals import corrected_interval

__all__ = ["SurvivalResult", "comparable_pairs", "cox_cross_validate", "harrell_c"]


@dataclass
class SurvivalResult:
    """Cross-validated survival results of one method."""

    patients: np.ndarray
    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray  # [repeats, n] within-fold risk percentile
    c_index: float  # mean of the per-fold C-indices
    c_index_ci: tuple[float, float]
    logrank_p: float | None
    group: np.ndarray  # 1 = high predicted risk
    n_components: int
    fold_c: np.ndarray  # [folds × repeats] Harrell's C of each test fold (NaN: no pair)
    test_train_ratio: float
    fold_pairs: np.ndarray | None = None  # [folds × repeats] comparable pairs of each fold


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C: share of comparable pairs where the higher risk fails first (NaN if none)."""
    from lifelines.utils import concordance_index

    try:
        return float(concordance_index(time, -np.asarray(risk), event))
    except ZeroDivisionError:  # lifelines: no comparable pair (e.g. no event in the fold)
        return float("nan")


def comparable_pairs(time: np.ndarray, event: np.ndarray) -> int:
    """Pairs whose order of failure is known: one patient fails (event) before the other's
    time (Harrell's definition; the C-index is a share of these)."""
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    return int(np.sum(e[:, None] & (t[:, None] < t[None, :])))


def cox_cross_validate(features: pd.DataFrame, surv: pd.DataFrame, tables: Cohort, *,
                       n_splits: int, repeats: int, seed: int, n_components: int = 5,
                       penalizer: float = 0.1, n_boot: int | None = None,
                       impute: bool = False) -> SurvivalResult:
    """Cross-validated penalised Cox model on patient-mean features.

    Args:
        features: embeddings-table layout.
        surv: ``patient_id``, ``time_days``, ``event`` (from ``labels.survival_table``).
        tables: the cohort.
        n_splits, repeats, seed: outer CV, stratified by event.
        n_components: PCA components (capped by the training size and feature count).
        penalizer: lifelines L2 penalty.
        n_boot: ignored (the CI is the corrected resampled t of the fold C-indices).
        impute: fill missing features with the training median (clinical tables).
    """
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test

    patients = surv["patient_id"].astype(str).to_numpy()
    time = surv["time_days"].to_numpy(float)
    event = surv["event"].to_numpy(int)
    splits: list[Split] = make_splits(patients, event, n_splits, repeats, seed)
    data = level_data(features, "patient_mean", tables, patients)
    X = data.X
    n_rep = max(s.repeat for s in splits) + 1
    risk = np.full((n_rep, len(patients)), np.nan)
    fold_c = np.full(len(splits), np.nan)
    pairs = np.zeros(len(splits))
    k_used = n_components
    for j, split in enumerate(splits):
        tr, te = split.train, split.test
        k = max(1, min(n_components, len(tr) - 2, X.shape[1]))
        k_used = min(k_used, k)
        steps = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []
        reducer = make_pipeline(*steps, StandardScaler(), PCA(n_components=k, random_state=seed))
        z_tr = reducer.fit_transform(X[tr])
        z_te = reducer.transform(X[te])
        cols = [f"pc{i}" for i in range(k)]
        df = pd.DataFrame(z_tr, columns=cols).assign(time=time[tr], event=event[tr])
        cph = CoxPHFitter(penalizer=penalizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cph.fit(df, duration_col="time", event_col="event")
            except (ValueError, np.linalg.LinAlgError) as exc:  # lifelines ConvergenceError
                raise EvaluationError(f"Cox model did not converge on a training fold: {exc}; "
                                      "raise --cox-penalizer or lower the PCA components"
                                      ) from exc
        r = cph.predict_log_partial_hazard(pd.DataFrame(z_te, columns=cols)).to_numpy()
        fold_c[j] = harrell_c(time[te], event[te], r)
        pairs[j] = comparable_pairs(time[te], event[te])
        risk[split.repeat, te] = (rankdata(r) - 0.5) / len(r)
    ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))
    iv = corrected_interval(fold_c, ratio, null=0.5, clip=(0, 1), weights=pairs)
    mean_risk = risk.mean(axis=0)
    group = (mean_risk > np.median(mean_risk)).astype(int)
    p = None
    if 0 < group.sum() < len(group):
        res = logrank_test(time[group == 1], time[group == 0], event[group == 1],
                           event[group == 0])
        p = float(res.p_value)
    return SurvivalResult(patients=patients, time=time, event=event, risk=risk,
                          c_index=iv.estimate, c_index_ci=(iv.low, iv.high),
                          logrank_p=p, group=group, n_components=k_used, fold_c=fold_c,
                          test_train_ratio=ratio, fold_pairs=pairs)
