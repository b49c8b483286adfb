"""Continuous endpoints: the eGFR at K years (tasks ``egfr_yK``), predicted by a ridge probe.

Thresholding the eGFR at 45 throws most of its information away; the regression tasks use it
as it is. The target of patient i at K years is the eGFR at K years, or **0 when the graft was
lost before K years** (a lost graft has no function; the binary task counts it as poor status
for the same reason). A patient with neither is unknown: left out and counted, exactly as in
the binary task of the same horizon, so the two tasks have the same patients and the
regression task reuses the binary task's outer folds (paired comparisons across methods see the
same patients, whatever the endpoint).

The probe (:class:`RidgeProbe`) is a :func:`medimp.evaluate.models.make_model` pipeline ending
in ``Ridge(alpha)``; ``alpha`` (and, for ``clinical+NAME`` models, the number of principal
components of the image embedding) is chosen by the mean squared error of per-patient
out-of-fold predictions in an inner, patient-grouped CV on the training folds only. The inner
CV solves every ``alpha`` at once in closed form from one SVD per inner fold, so the grid costs
about as much as a single fit. Per test fold: R², MAE and Spearman's ρ (:func:`fold_scores`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin

from medimp.data import Cohort, assert_no_patient_leak
from medimp.evaluate.cv import OuterFolds
from medimp.evaluate.embeddings import level_data
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.labels import load_cohort, make_labels
from medimp.evaluate.models import make_model, make_preprocessor
from medimp.evaluate.probes import ProbeError, group_mean, inner_splits
from medimp.evaluate.shared import combined_split

__all__ = ["RegressionCVResult", "RegressionTaskCV", "RidgeProbe", "cross_validate_regression",
           "fold_scores", "mae", "make_targets", "r2", "regression_predictions",
           "regression_task_name", "ridge_path", "spearman"]

REGRESSION_METRICS = ("r2", "mae", "spearman")


def regression_task_name(horizon_years: int) -> str:
    """Name of the continuous task for horizon K, e.g. ``egfr_y2``."""
    return f"egfr_y{horizon_years}"


def make_targets(cohort: Any, horizon_years: int, threshold: float | None = None
                 ) -> pd.DataFrame:
    """The eGFR target of every patient at ``horizon_years``.

    Returns:
        One row per patient (the order of ``patients.csv``): ``patient_id``, ``target``
        (mL/min/1.73 m²: the eGFR at K years; 0 for a graft lost before K years; NaN when
        unknown), ``known`` and ``reason`` (as :func:`medimp.evaluate.make_labels`: "egfr",
        "graft_loss..." or "unknown"). ``known`` is the binary task's ``known``: both tasks
        have the same patients.
    """
    tables = load_cohort(cohort)
    lab = make_labels(tables, horizon_years, threshold)
    col = tables.study.outcomes.egfr[horizon_years]
    egfr = pd.to_numeric(tables.patients[col], errors="coerce").to_numpy(float)
    reason = lab["reason"].astype(str).to_numpy()
    lost = np.char.startswith(reason.astype(str), "graft_loss")
    known = lab["known"].to_numpy(bool)
    target = np.where(lost, 0.0, egfr)
    target = np.where(known, target, np.nan)
    if np.any(known & ~np.isfinite(target)):  # a known status without a value: say which
        bad = lab.loc[known & ~np.isfinite(target), "patient_id"].tolist()
        raise EvaluationError(
            f"{tables.root / 'patients.csv'}: patients {bad[:5]} have a known status at "
            f"{horizon_years} years but no eGFR in {col!r} and no graft loss before it")
    return pd.DataFrame({"patient_id": lab["patient_id"].to_numpy(), "target": target,
                         "known": known, "reason": reason})


# --- fold metrics ------------------------------------------------------------------------------

def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination on one test fold (1 - SSE/SST about the fold's mean)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    sst = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / sst if sst > 0 else float("nan")


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error (mL/min/1.73 m²)."""
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(pred, float))))


def spearman(y: np.ndarray, pred: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either side is constant."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    if len(y) < 3 or np.ptp(y) == 0 or np.ptp(pred) == 0:
        return float("nan")
    return float(stats.spearmanr(y, pred).statistic)


def fold_scores(y: np.ndarray, predictions: np.ndarray,
                tests: Sequence[tuple[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """R², MAE and Spearman's ρ on each test fold: ``{metric: [J]}``.

    Args:
        y: ``[n]`` targets.
        predictions: ``[R, n]`` out-of-fold predictions (one row per CV repeat).
        tests: ``(repeat, test indices)`` of each outer fold.
    """
    predictions = np.atleast_2d(predictions)
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "r2": r2, "mae": mae, "spearman": spearman}
    return {name: np.array([fn(y[idx], predictions[r, idx]) for r, idx in tests])
            for name, fn in fns.items()}


# --- the probe ---------------------------------------------------------------------------------

def ridge_path(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
               alphas: Sequence[float]) -> np.ndarray:
    """Predictions ``[len(alphas), n_test]`` of ``Ridge(alpha)`` (with intercept) per alpha.

    One SVD of the centred training matrix gives every alpha: the coefficients are
    ``V diag(s / (s² + alpha)) Uᵀ (y - ȳ)``, scikit-learn's ``Ridge`` solution.
    """
    a = np.asarray(alphas, dtype=float)
    ym = float(np.mean(y_train))
    if X_train.shape[1] == 0:
        return np.full((len(a), len(X_test)), ym)
    xm = X_train.mean(axis=0)
    u, s, vt = np.linalg.svd(X_train - xm, full_matrices=False)
    uty = u.T @ (np.asarray(y_train, float) - ym)
    coefs = (s / (s**2 + a[:, None]) * uty) @ vt  # [A, p]
    return ym + coefs @ (X_test - xm).T


def _strata(y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Tertile of each sample's patient mean target: the inner folds' stratification."""
    ug, means = group_mean(y, groups)
    cuts = np.quantile(means, [1 / 3, 2 / 3])
    per_group = dict(zip(ug, np.digitize(means, cuts), strict=True))
    return np.array([per_group[g] for g in groups])


def _cap_k(k: int, n_image: int, n_rows: int) -> int:
    return int(max(0, min(k, n_image, n_rows - 1)))


class RidgeProbe(RegressorMixin, BaseEstimator):
    """:func:`~medimp.evaluate.models.make_model` ``("continuous", method_kind)``; ``alpha``
    (and ``k`` for a combined model) from an inner patient-grouped CV on the training data.

    Args:
        alphas: ridge penalties tried (the features are standardised first).
        method_kind: "embedding", "clinical" (median imputation) or "combined".
        n_clinical: leading clinical columns of a combined table.
        ks: principal components of the image part tried (combined only; 0 = table alone).
        inner_splits: folds of the inner CV.
        seed: inner CV shuffling.
    """

    def __init__(self, alphas: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0), *,
                 method_kind: str = "embedding", n_clinical: int = 0,
                 ks: Sequence[int] = (0,), inner_splits: int = 3, seed: int = 0) -> None:
        self.alphas = alphas
        self.method_kind = method_kind
        self.n_clinical = n_clinical
        self.ks = ks
        self.inner_splits = inner_splits
        self.seed = seed

    def _ks(self) -> list[int]:
        return sorted({int(k) for k in self.ks}) if self.method_kind == "combined" else [0]

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None):
        """Choose alpha (and k) by inner CV on (X, y), then refit on all of it.

        Args:
            X: features, one row per sample.
            y: continuous targets.
            groups: patient of each sample (kept on one side of every inner split;
                predictions averaged per patient before scoring).
        """
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if self.method_kind == "embedding" and not np.all(np.isfinite(X)):
            raise ProbeError("features contain NaN or infinite values")
        if not np.all(np.isfinite(y)):
            raise ProbeError("targets contain NaN or infinite values")
        n_groups = len(np.unique(groups))
        if n_groups < 6:
            raise ProbeError(f"need at least 6 patients to fit a ridge probe, got {n_groups}")
        alphas = np.asarray(self.alphas, dtype=float)
        ks = self._ks()
        n_image = X.shape[1] - self.n_clinical
        oof = np.full((len(ks), len(alphas), len(y)), np.nan)
        n_inner = min(self.inner_splits, n_groups // 2)
        for tr, te in inner_splits(_strata(y, groups), groups, n_inner, self.seed):
            kmax = _cap_k(max(ks), n_image, len(tr))
            if self.method_kind == "combined":  # the clinical part shared across methods
                z_tr, z_te = combined_split(X[tr], X[te], self.n_clinical, kmax, self.seed)
            else:
                pre = make_preprocessor(self.method_kind, n_clinical=self.n_clinical, k=kmax,
                                        seed=self.seed)
                z_tr = pre.fit_transform(X[tr])
                z_te = pre.transform(X[te])
            for i, k in enumerate(ks):
                cols = self.n_clinical + min(k, kmax) if self.method_kind == "combined" \
                    else z_tr.shape[1]
                oof[i][:, te] = ridge_path(z_tr[:, :cols], y[tr], z_te[:, :cols], alphas)
        done = np.all(np.isfinite(oof), axis=(0, 1))
        _, yg = group_mean(y[done], groups[done])
        mse = np.array([[np.mean((group_mean(oof[i, a, done], groups[done])[1] - yg) ** 2)
                         for a in range(len(alphas))] for i in range(len(ks))])
        i, a = np.unravel_index(int(np.argmin(mse)), mse.shape)  # ties: fewest components
        self.inner_mse_ = mse
        self.best_param_ = float(alphas[a])
        self.best_k_ = _cap_k(ks[i], n_image, len(y)) if self.method_kind == "combined" else 0
        self.model_ = make_model("continuous", self.method_kind,  # type: ignore[arg-type]
                                 alpha=self.best_param_, n_clinical=self.n_clinical,
                                 k=self.best_k_, seed=self.seed).fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted eGFR per row."""
        return self.model_.predict(np.asarray(X, dtype=float))


# --- cross-validation --------------------------------------------------------------------------

@dataclass
class RegressionCVResult:
    """Out-of-fold predictions of one continuous task × method × level."""

    patients: np.ndarray
    y: np.ndarray
    predictions: np.ndarray  # [repeats, n]
    params: list[tuple[float, int]] = field(default_factory=list)  # (alpha, k) per fold
    n_samples: int = 0


def cross_validate_regression(features: pd.DataFrame, patients: np.ndarray, y: np.ndarray, *,
                              level: str, tables: Cohort, splits: Sequence[Any],
                              make_probe: Callable[[], RidgeProbe]) -> RegressionCVResult:
    """Fit ``make_probe()`` on each training fold and predict the test fold, per patient.

    Args:
        features: embeddings-table layout (:mod:`medimp.evaluate.embeddings`).
        patients: the task's patients, as indexed by ``splits``.
        y: their targets.
        level: "exam", "patient_mean" or "patient_latest" (exam level: every exam a training
            sample with its patient's target; test predictions averaged per patient).
        tables: the cohort.
        splits: the outer folds (``repeat``, ``train``, ``test`` indices), shared with the
            binary task of the same horizon.
        make_probe: returns a fresh :class:`RidgeProbe`.
    """
    patients = np.asarray(patients).astype(str)
    y = np.asarray(y, dtype=float)
    data = level_data(features, level, tables, patients)
    target_of = dict(zip(patients, y, strict=True))
    ys = np.array([target_of[p] for p in data.patient_id])
    n_rep = max(s.repeat for s in splits) + 1
    preds = np.full((n_rep, len(patients)), np.nan)
    pos = {p: i for i, p in enumerate(patients)}
    params = []
    for split in splits:
        tr = np.isin(data.patient_id, patients[split.train])
        te = np.isin(data.patient_id, patients[split.test])
        assert_no_patient_leak(data.patient_id[tr], data.patient_id[te])
        probe = make_probe()
        probe.fit(data.X[tr], ys[tr], groups=data.patient_id[tr])
        ug, pm = group_mean(probe.predict(data.X[te]), data.patient_id[te])
        preds[split.repeat, [pos[g] for g in ug]] = pm
        params.append((probe.best_param_, probe.best_k_))
    if np.isnan(preds).any():
        missing = patients[np.isnan(preds).any(axis=0)]
        raise EvaluationError(f"no out-of-fold prediction for patients {list(missing[:5])}")
    return RegressionCVResult(patients=patients, y=y, predictions=preds, params=params,
                              n_samples=len(data.patient_id))


@dataclass
class RegressionTaskCV(OuterFolds):
    """Cross-validation output of one continuous task (the binary task's folds)."""

    task: str
    horizon: int
    patients: np.ndarray
    y: np.ndarray
    splits: list
    n_graft_loss: int
    results: dict[tuple[str, str], RegressionCVResult] = field(default_factory=dict)


def regression_predictions(members: Any, rtcvs: list[RegressionTaskCV]) -> pd.DataFrame:
    """Out-of-fold eGFR predictions per task, method, run, level, repeat and patient.

    Args:
        members: key -> :class:`medimp.evaluate.replicates.Member` of every result's key.
        rtcvs: the continuous tasks' cross-validations.
    """
    parts = []
    for rtcv in rtcvs:
        for (key, level), res in rtcv.results.items():
            m = members[key]
            n_rep, n = res.predictions.shape
            parts.append(pd.DataFrame({
                "task": rtcv.task, "method": m.method, "run": m.run or "", "level": level,
                "probe": "ridge", "repeat": np.repeat(np.arange(n_rep), n),
                "patient_id": np.tile(res.patients, n_rep), "target": np.tile(res.y, n_rep),
                "prediction": res.predictions.ravel()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["task", "method", "run", "level", "probe", "repeat", "patient_id", "target",
                 "prediction"])
