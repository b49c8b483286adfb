"""Fit the prognosis models on every labelled patient of a cohort, and apply them elsewhere.

One code path for ``medimp fit-prognosis`` (fit, then save), ``medimp evaluate --external``
(fit on DEV, apply to EXT, score) and ``medimp predict`` (load, apply). For every task
(``status_yK``: poor graft status at K years, a probability; ``egfr_yK``: the eGFR at K years)
the models are

* ``clinical_only``: the clinical table at the exams (:func:`medimp.evaluate.baselines.
  clinical_features`);
* ``NAME``: the image-only probe of a pretraining method, once per pretraining run;
* ``clinical+NAME``: the clinical table plus NAME's embedding (once per run),

each at the ``patient_mean`` level (a patient's exams averaged), with hyper-parameters and the
decision threshold chosen by the probes' inner cross-validation on the fitting cohort
(:mod:`medimp.evaluate.probes`). The fitted object is the probe's scikit-learn pipeline, saved
without pickles by :mod:`medimp.prognosis.serialize`.

Uncertainty of one run's estimate: the approximate covariance of the fitted linear model's
coefficients in its transformed feature space (the inverse penalised Hessian of the logistic
regression, ``σ²·(Z'Z + αI)⁻¹`` for the ridge) gives a standard error of the linear predictor;
the ridge's prediction interval adds the residual variance on the fitting cohort. Several runs
are combined in :mod:`medimp.prognosis.predict`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimp.data import Cohort
from medimp.errors import MedimpError
from medimp.evaluate.added import combined_features
from medimp.evaluate.embeddings import feature_columns, level_data
from medimp.evaluate.labels import make_labels, task_name
from medimp.evaluate.probes import create_probe
from medimp.evaluate.regression import RidgeProbe, make_targets, regression_task_name

__all__ = ["CLINICAL", "FitConfig", "FittedModel", "PrognosisError", "apply_model",
           "combine_tables", "fit_model", "model_targets", "patient_matrix"]

CLINICAL = "clinical_only"
LEVEL = "patient_mean"
TaskKind = Literal["binary", "continuous"]
FeatureKind = Literal["clinical", "embedding", "combined"]


class PrognosisError(MedimpError):
    """A prognosis model that cannot be fitted, saved, loaded or applied (names the fix)."""


@dataclass(frozen=True)
class FitConfig:
    """What is fitted: horizons, threshold and the probes' inner-CV grids."""

    horizons: tuple[int, ...] = (2, 3, 4)
    threshold: float | None = None
    Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    pca_ks: tuple[int, ...] = (0, 2, 4, 8)
    inner_splits: int = 3
    seed: int = 0
    continuous: bool = True
    survival_event: str = "graft_loss"  # external C-index: graft_loss or poor_status


@dataclass
class FittedModel:
    """One fitted model: which features, which task, its pipeline and its uncertainty."""

    model: str  # clinical_only | NAME | clinical+NAME
    method: str | None  # NAME; None for clinical_only
    run: str | None  # the pretraining run's label; None for clinical_only
    task: str
    kind: TaskKind
    features: FeatureKind
    pipeline: Any  # a fitted scikit-learn Pipeline (medimp.prognosis.serialize.ALLOWED)
    columns: list[str]  # feature columns, in the order the pipeline takes them
    threshold: float | None = None  # binary: Youden threshold from the inner CV
    params: dict[str, float] = field(default_factory=dict)
    coef_cov: np.ndarray | None = None  # [1 + p, 1 + p] of (intercept, coefficients)
    resid_var: float | None = None  # continuous: residual variance on the fitting cohort
    n: int = 0
    n_pos: int | None = None

    @property
    def key(self) -> str:
        """Unique name: ``model[#run]/task``."""
        return f"{self.model}{'#' + self.run if self.run else ''}/{self.task}"


def model_targets(cohort: Cohort, horizon: int, kind: TaskKind,
                  threshold: float | None) -> tuple[str, pd.DataFrame]:
    """``(task, table)`` of the patients with a known outcome: patient_id, y."""
    lab = make_labels(cohort, horizon, threshold)
    if kind == "binary":
        known = lab[lab["known"]]
        return task_name(horizon), pd.DataFrame({"patient_id": known["patient_id"].astype(str),
                                                 "y": known["label"].astype(float)})

    tg = make_targets(cohort, horizon, threshold)
    known = tg[tg["known"]]
    return regression_task_name(horizon), pd.DataFrame({
        "patient_id": known["patient_id"].astype(str), "y": known["target"].astype(float)})


def combine_tables(clinical: pd.DataFrame, embedding: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The clinical table and one run's embedding side by side (clinical columns first)."""

    return combined_features(clinical, embedding)


def patient_matrix(table: pd.DataFrame, cohort: Cohort, patients: np.ndarray,
                   columns: list[str] | None = None) -> np.ndarray:
    """The ``patient_mean`` features of ``patients`` (rows in that order)."""
    if columns is not None:
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise PrognosisError(f"feature column(s) {missing[:5]} absent; the cohort's "
                                 "clinical columns or the embedding size differ from the model's")
        table = table[["patient_id", "exam", "level", *columns]]
    return level_data(table, LEVEL, cohort, np.asarray(patients, dtype=str)).X


def _probe(kind: TaskKind, features: FeatureKind, cfg: FitConfig, n_clinical: int) -> Any:
    """The evaluation's probe for this task and feature kind (the same inner-CV choices)."""
    if kind == "binary":
        if features == "combined":
            from medimp.evaluate.added import CombinedLogisticProbe

            return CombinedLogisticProbe(n_clinical, ks=tuple(cfg.pca_ks), Cs=tuple(cfg.Cs),
                                         inner_splits=cfg.inner_splits, seed=cfg.seed)
        return create_probe("logistic", None, Cs=tuple(cfg.Cs), inner_splits=cfg.inner_splits,
                            seed=cfg.seed, impute=features == "clinical")

    # as the evaluation's own CV builds them (medimp.evaluate.endpoints)
    opts: dict[str, Any] = {"alphas": tuple(cfg.ridge_alphas), "inner_splits": cfg.inner_splits,
                            "seed": cfg.seed, "method_kind": features}
    if features == "combined":
        opts |= {"n_clinical": n_clinical, "ks": tuple(cfg.pca_ks)}
    return RidgeProbe(**opts)


def fit_model(table: pd.DataFrame, cohort: Cohort, targets: pd.DataFrame, *, model: str,
              method: str | None, run: str | None, task: str, kind: TaskKind,
              features: FeatureKind, cfg: FitConfig, n_clinical: int = 0) -> FittedModel:
    """Fit one model on every patient of ``targets`` (the probe's inner CV picks its options)."""
    patients = targets["patient_id"].to_numpy(str)
    y = targets["y"].to_numpy(float)
    columns = feature_columns(table)
    X = patient_matrix(table, cohort, patients)
    probe = _probe(kind, features, cfg, n_clinical)
    probe.fit(X, y.astype(int) if kind == "binary" else y, groups=patients)
    pipe = probe.model_
    params = {"C" if kind == "binary" else "alpha": float(probe.best_param_)}
    if getattr(probe, "best_k_", None) is not None and features == "combined":
        params["k"] = float(probe.best_k_)
    cov, resid = _coef_cov(pipe, X, y, kind)
    return FittedModel(model=model, method=method, run=run, task=task, kind=kind,
                       features=features, pipeline=pipe, columns=columns,
                       threshold=float(probe.threshold_) if kind == "binary" else None,
                       params=params, coef_cov=cov, resid_var=resid, n=len(y),
                       n_pos=int(y.sum()) if kind == "binary" else None)


def _design(pipe: Any, X: np.ndarray) -> np.ndarray:
    z = pipe[:-1].transform(X)
    return np.column_stack([np.ones(len(z)), z])


def _coef_cov(pipe: Any, X: np.ndarray, y: np.ndarray,
              kind: TaskKind) -> tuple[np.ndarray, float | None]:
    est = pipe[-1]
    z1 = _design(pipe, X)
    p = z1.shape[1]
    if kind == "binary":
        prob = est.predict_proba(z1[:, 1:])[:, 1]
        w = prob * (1 - prob)
        pen = np.full(p, 1.0 / float(est.C))
        pen[0] = 0.0
        hess = (z1 * w[:, None]).T @ z1 + np.diag(pen)
        return np.linalg.pinv(hess), None
    pred = est.predict(z1[:, 1:])
    dof = max(len(y) - 1, 1)
    resid = float(np.sum((y - pred) ** 2) / dof)
    pen = np.full(p, float(est.alpha))
    pen[0] = 0.0
    return resid * np.linalg.pinv(z1.T @ z1 + np.diag(pen)), resid


@dataclass
class Applied:
    """One model's estimates for some patients: value, and the standard errors behind it."""

    patients: np.ndarray
    estimate: np.ndarray  # probability (binary) or eGFR (continuous)
    eta: np.ndarray  # linear predictor (logit for binary)
    se: np.ndarray  # standard error of eta (binary) / of the prediction incl. residual


def apply_model(fm: FittedModel, X: np.ndarray, patients: np.ndarray) -> Applied:
    """Estimates of a fitted model for the rows of ``X`` (patient_mean features)."""
    pipe = fm.pipeline
    try:
        z1 = _design(pipe, np.asarray(X, dtype=float))
        if fm.kind == "binary":
            est = pipe.predict_proba(X)[:, 1]
            eta = pipe.decision_function(X)
        else:
            est = pipe.predict(X)
            eta = est
        var = np.einsum("ij,jk,ik->i", z1, fm.coef_cov, z1) if fm.coef_cov is not None \
            else np.zeros(len(z1))
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        # arrays of another shape or type than the pipeline's (a damaged or edited folder)
        raise PrognosisError(f"{fm.key}: the saved model cannot be applied to its "
                             f"{len(fm.columns)} feature columns ({type(exc).__name__}: {exc}); "
                             "the model folder was damaged or edited, refit with medimp "
                             "fit-prognosis") from exc
    if fm.kind == "continuous" and fm.resid_var is not None:
        var = var + fm.resid_var
    return Applied(patients=np.asarray(patients, dtype=str), estimate=np.asarray(est, float),
                   eta=np.asarray(eta, float), se=np.sqrt(np.clip(var, 0.0, None)))


def fit_all(cohort: Cohort, clinical: pd.DataFrame | None,
            embeddings: Mapping[tuple[str, str | None], pd.DataFrame], cfg: FitConfig,
            progress: Callable[[str], None] | None = None) -> list[FittedModel]:
    """Every model of every task: clinical_only, and per (method, run) NAME and clinical+NAME.

    Args:
        cohort: the fitting cohort (its labelled patients).
        clinical: :func:`medimp.evaluate.baselines.clinical_features` of it, or None.
        embeddings: (method, run label or None) -> the run's embeddings of the cohort.
        cfg: horizons, threshold and grids.
        progress: called with a short text before each fit.
    """
    kinds: list[TaskKind] = ["binary", "continuous"] if cfg.continuous else ["binary"]
    out: list[FittedModel] = []
    combined = {key: combine_tables(clinical, emb) for key, emb in embeddings.items()} \
        if clinical is not None else {}
    for kind in kinds:
        for h in cfg.horizons:
            task, targets = model_targets(cohort, h, kind, cfg.threshold)
            jobs: list[tuple[pd.DataFrame, dict[str, Any]]] = []
            if clinical is not None:
                jobs.append((clinical, {"model": CLINICAL, "method": None, "run": None,
                                        "features": "clinical"}))
            for (method, run), emb in embeddings.items():
                jobs.append((emb, {"model": method, "method": method, "run": run,
                                   "features": "embedding"}))
                if (method, run) in combined:
                    table, n_clin = combined[(method, run)]
                    jobs.append((table, {"model": f"clinical+{method}", "method": method,
                                         "run": run, "features": "combined",
                                         "n_clinical": n_clin}))
            for table, spec in jobs:
                if progress is not None:
                    progress(f"{task} {spec['model']}{' ' + spec['run'] if spec['run'] else ''}")
                try:
                    out.append(fit_model(table, cohort, targets, task=task, kind=kind,
                                         cfg=cfg, **spec))
                except (ValueError, KeyError) as exc:  # ProbeError, EvaluationError, ...
                    raise PrognosisError(f"{task} {spec['model']}: {exc}") from exc
    return out
