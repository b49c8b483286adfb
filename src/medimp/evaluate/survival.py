"""Graft survival from frozen features: penalised Cox on PCA-reduced embeddings.

In the same repeated, patient-grouped CV as the probes (stratified by event): on each training
fold, standardise, reduce with PCA, fit a penalised Cox model (lifelines ``CoxPHFitter``) and
score the test patients. Risks are turned into within-fold percentiles so that the
out-of-fold risks of different folds can be pooled; the C-index is computed per repeat, averaged,
with a patient-level bootstrap CI. Patients are then split at the median of their mean
out-of-fold risk into a high and a low risk group, compared by Kaplan–Meier and a log-rank test.
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
from medimp.evaluate._cohort import EvaluationError
from medimp.evaluate.bootstrap import bootstrap_indices
from medimp.evaluate.cv import Split, make_splits
from medimp.evaluate.embeddings import level_data

__all__ = ["SurvivalResult", "cox_cross_validate", "harrell_c"]


@dataclass
class SurvivalResult:
    """Cross-validated survival results of one method."""

    patients: np.ndarray
    time: np.ndarray
    event: np.ndarray
    risk: np.ndarray  # [repeats, n] within-fold risk percentile
    c_index: float
    c_index_ci: tuple[float, float]
    logrank_p: float | None
    group: np.ndarray  # 1 = high predicted risk
    n_components: int


def harrell_c(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C: share of comparable pairs where the higher risk fails first."""
    from lifelines.utils import concordance_index

    return float(concordance_index(time, -np.asarray(risk), event))


def cox_cross_validate(features: pd.DataFrame, surv: pd.DataFrame, tables: Cohort, *,
                       n_splits: int, repeats: int, seed: int, n_components: int = 5,
                       penalizer: float = 0.1, n_boot: int = 1000,
                       impute: bool = False) -> SurvivalResult:
    """Cross-validated penalised Cox model on patient-mean features.

    Args:
        features: embeddings-table layout.
        surv: ``patient_id``, ``time_days``, ``event`` (from ``labels.survival_table``).
        tables: the cohort.
        n_splits, repeats, seed: outer CV, stratified by event.
        n_components: PCA components (capped by the training size and feature count).
        penalizer: lifelines L2 penalty.
        n_boot: bootstrap resamples for the C-index CI.
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
    k_used = n_components
    for split in splits:
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
        risk[split.repeat, te] = (rankdata(r) - 0.5) / len(r)
    cs = np.array([harrell_c(time, event, risk[r]) for r in range(n_rep)])
    idx = bootstrap_indices(len(patients), n_boot, seed)
    boot = []
    for b in idx:
        if event[b].sum() == 0:
            continue
        boot.append(np.mean([harrell_c(time[b], event[b], risk[r, b]) for r in range(n_rep)]))
    lo, hi = (np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan))
    mean_risk = risk.mean(axis=0)
    group = (mean_risk > np.median(mean_risk)).astype(int)
    p = None
    if 0 < group.sum() < len(group):
        res = logrank_test(time[group == 1], time[group == 0], event[group == 1],
                           event[group == 0])
        p = float(res.p_value)
    return SurvivalResult(patients=patients, time=time, event=event, risk=risk,
                          c_index=float(cs.mean()), c_index_ci=(float(lo), float(hi)),
                          logrank_p=p, group=group, n_components=k_used)
