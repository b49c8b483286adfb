"""The ``metrics.json`` schema (pydantic) and its atomic writer.

Layout (docs/design.md): a header with the protocol and the cohort counts, and ``records``, a
flat list with one record per task × method (× level × probe). The headline rows are
``level == "patient_mean"`` and ``probe == "logistic"``. Alongside: ``skipped`` (what could not
be evaluated, and why), ``comparisons`` (paired, seed-aware tests of AUC differences), ``survival``
(C-index, log-rank) and ``retrieval`` (R@k, zero-shot).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medimp._io import atomic_write_text
from medimp.errors import validation_problems
from medimp.evaluate.errors import EvaluationError

__all__ = [
    "SCHEMA_VERSION",
    "AddedValue",
    "Comparison",
    "ExternalRecord",
    "Header",
    "MetricsFile",
    "Record",
    "RegressionRecord",
    "RetrievalRecord",
    "Skipped",
    "SurvivalRecord",
    "TaskCount",
    "read_metrics",
    "write_metrics",
]

SCHEMA_VERSION = 3


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number (use null for 'not defined')")
    return v


class Record(_Model):
    """One task × method (× run) × level × probe: patient-level metrics with 95% CIs.

    ``run`` is null for the method's own record: its only run, or, with several pretraining
    runs, the aggregate (mean over runs, seed-aware CI, ``n_runs`` and ``auc_sd``); each run
    also has a record with ``run`` set.
    """

    task: str = Field(description="e.g. 'status_y2': poor graft status at 2 years")
    method: str
    run: str | None = Field(None, description="run label (e.g. 'seed1'); null: the method")
    n_runs: int = Field(1, ge=1, description="pretraining runs behind this record")
    n: int = Field(ge=1, description="patients evaluated (known status)")
    n_pos: int = Field(ge=0, description="patients with poor status")
    auc: float = Field(ge=0, le=1)
    auc_ci_low: float = Field(ge=0, le=1)
    auc_ci_high: float = Field(ge=0, le=1)
    auc_se: float | None = Field(None, description="standard error behind the AUC CI")
    auc_sd: float | None = Field(None, description="sd of the AUC between runs (n_runs > 1)")
    balanced_accuracy: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    balanced_accuracy_ci_low: float | None = None
    balanced_accuracy_ci_high: float | None = None
    f1_ci_low: float | None = None
    f1_ci_high: float | None = None
    level: Literal["exam", "patient_mean", "patient_latest"] = "patient_mean"
    probe: Literal["logistic", "knn"] = "logistic"
    n_samples: int | None = Field(None, description="training samples (exams at exam level)")
    horizon_years: int | None = None
    brier: float | None = Field(None, ge=0, le=1, description="Brier score per test fold, "
                                "averaged (lower is better)")
    brier_ci_low: float | None = None
    brier_ci_high: float | None = None
    calibration_intercept: float | None = Field(
        None, description="logit P(y) = a + logit(p): a (0 ideal; > 0: risks too low)")
    calibration_intercept_ci_low: float | None = None
    calibration_intercept_ci_high: float | None = None
    calibration_slope: float | None = Field(
        None, description="logit P(y) = a + b logit(p): b (1 ideal; < 1: risks too extreme)")
    calibration_slope_ci_low: float | None = None
    calibration_slope_ci_high: float | None = None
    split: Literal["cv"] = Field("cv", description="cross-validated on the cohort; external "
                                 "validation records are in MetricsFile.external")

    _fin = field_validator("balanced_accuracy_ci_low", "balanced_accuracy_ci_high",
                           "f1_ci_low", "f1_ci_high", "brier", "brier_ci_low", "brier_ci_high",
                           "calibration_intercept", "calibration_intercept_ci_low",
                           "calibration_intercept_ci_high", "calibration_slope",
                           "calibration_slope_ci_low", "calibration_slope_ci_high")(_finite)


class RegressionRecord(_Model):
    """One continuous task (eGFR at K years) × method (× run) × level: ridge probe, metrics per
    test fold with 95% CIs (corrected resampled t, seed-aware as the AUC's)."""

    task: str = Field(description="e.g. 'egfr_y2': eGFR at 2 years (0 if the graft was lost)")
    method: str
    run: str | None = Field(None, description="run label; null: the method")
    n_runs: int = Field(1, ge=1)
    n: int = Field(ge=1, description="patients evaluated (known eGFR or graft lost)")
    n_graft_loss: int = Field(0, ge=0, description="patients whose target is 0 (graft lost "
                              "before the horizon)")
    r2: float
    r2_ci_low: float
    r2_ci_high: float
    r2_se: float | None = None
    r2_sd: float | None = Field(None, description="sd of R² between runs (n_runs > 1)")
    mae: float = Field(ge=0, description="mean absolute error, mL/min/1.73 m²")
    mae_ci_low: float | None = None
    mae_ci_high: float | None = None
    spearman: float | None = Field(None, description="Spearman's rho per test fold, averaged")
    spearman_ci_low: float | None = None
    spearman_ci_high: float | None = None
    level: Literal["exam", "patient_mean", "patient_latest"] = "patient_mean"
    probe: Literal["ridge"] = "ridge"
    n_samples: int | None = None
    horizon_years: int | None = None
    split: Literal["cv"] = Field("cv", description="cross-validated; external records are in "
                                 "MetricsFile.external")

    _fin = field_validator("r2", "r2_ci_low", "r2_ci_high", "mae", "mae_ci_low",
                           "mae_ci_high", "spearman", "spearman_ci_low",
                           "spearman_ci_high")(_finite)


class ExternalRecord(_Model):
    """A model fitted on all labelled patients of the development cohort, tested once on the
    external cohort (``evaluate --external``; docs/prognosis.md). ``run`` null: the method's
    only run or the mean over its runs (CI with the between-run variance). Metric fields are
    null where they do not apply (AUC for a continuous task, R² for a binary one)."""

    split: Literal["external"] = "external"
    task: str
    method: str = Field(description="clinical_only, NAME or clinical+NAME")
    run: str | None = None
    n_runs: int = Field(1, ge=1)
    n: int = Field(ge=1, description="external patients with a known outcome")
    n_pos: int | None = None
    level: str = "patient_mean"
    auc: float | None = None
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    auc_sd: float | None = Field(None, description="sd of the AUC between runs")
    balanced_accuracy: float | None = None
    f1: float | None = None
    brier: float | None = None
    brier_ci_low: float | None = None
    brier_ci_high: float | None = None
    calibration_intercept: float | None = None
    calibration_intercept_ci_low: float | None = None
    calibration_intercept_ci_high: float | None = None
    calibration_slope: float | None = None
    calibration_slope_ci_low: float | None = None
    calibration_slope_ci_high: float | None = None
    r2: float | None = None
    r2_ci_low: float | None = None
    r2_ci_high: float | None = None
    mae: float | None = None
    spearman: float | None = None
    c_index: float | None = Field(None, description="Harrell's C of the risk against the "
                                  "external time to event (longest horizon's status task)")
    c_index_ci_low: float | None = None
    c_index_ci_high: float | None = None


class Skipped(_Model):
    """Something that was not evaluated, with the reason (the other tasks still ran)."""

    task: str
    method: str | None = None
    run: str | None = None
    reason: str


class Comparison(_Model):
    """metric(method) - metric(other) on the same folds: corrected resampled t, seed-aware.

    ``metric`` says which difference is set: ``auc_diff`` (binary tasks), ``r2_diff``
    (continuous tasks) or ``brier_diff`` (binary tasks; negative is better); ``ci_low``,
    ``ci_high``, ``p_value``, ``se`` and ``min_detectable_diff`` are of that difference.
    """

    task: str
    method: str
    other: str
    level: str
    probe: str
    n: int
    metric: Literal["auc", "r2", "brier"] = "auc"
    auc_diff: float | None = None
    r2_diff: float | None = None
    brier_diff: float | None = None
    ci_low: float | None = Field(None, description="95% CI of the difference; null or absent "
                                 "only in a file written without one (the report then says "
                                 "'not decided')")
    ci_high: float | None = None
    p_value: float = Field(ge=0, le=1)
    se: float | None = None
    n_runs: int = Field(1, description="runs of the method")
    other_n_runs: int = Field(1, description="runs of the other method")
    seed_variance: bool = Field(False, description="the CI includes the seed variance")
    min_detectable_diff: float | None = Field(
        None, description="true difference detected with 80% power by the two-sided 5% test "
        "(noncentral t with the interval's df)")
    df: float | None = Field(None, description="degrees of freedom of the interval and test "
                             "(Welch–Satterthwaite)")
    seed_var: float | None = Field(None, description="part of se² due to pretraining seeds")
    p_holm: float | None = Field(None, ge=0, le=1, description="p-value after Holm's "
                                 "adjustment over its family (the comparisons of one level "
                                 "and probe: tasks × other methods); null: not a test")
    verdict: str | None = Field(None, description="'better' / 'worse' (the method against "
                                "the other, from p_holm) or 'not decided: <reason>'")


class AddedValue(_Model):
    """"Do the images add anything?": ``clinical+NAME`` against ``clinical_only``, answered
    from the method's added-value comparisons (Holm-adjusted within the method)."""

    method: str = Field(description="the image method NAME")
    answer: Literal["yes", "no", "not decided"]
    sentence: str = Field(description="the answer in words, with the deciding comparisons or "
                          "the differences that would go unseen")
    min_detectable: dict[str, float] = Field(
        default_factory=dict, description="metric -> smallest minimal detectable difference "
        "over the tasks (80% power, alpha 0.05)")
    n_runs: int = 1


class SurvivalRecord(_Model):
    """Graft survival: penalised Cox on PCA-reduced features, cross-validated."""

    task: str = "graft_survival"
    method: str
    run: str | None = None
    n_runs: int = 1
    n: int
    n_events: int
    c_index: float = Field(description="Harrell's C per test fold, averaged weighted by the "
                           "fold's comparable pairs")
    c_index_ci_low: float
    c_index_ci_high: float
    c_index_sd: float | None = Field(None, description="sd between runs (n_runs > 1)")
    logrank_p: float | None = Field(None, description="descriptive only: log-rank p of the "
                                    "patients above vs below the median cross-validated risk; "
                                    "not a test of the model (the C-index's CI is)")
    pca_components: int
    penalizer: float
    n_folds: int | None = Field(None, description="outer folds (repeats x folds)")
    n_folds_dropped: int = Field(0, description="folds without a comparable pair (no event): "
                                 "left out of the C-index")


class RetrievalRecord(_Model):
    """Image→text retrieval and zero-shot GFR-bin classification on held-out patients."""

    method: str
    run: str | None = None
    n_exams: int
    n_patients: int
    heldout: bool = Field(description="True if the patients were not used to pretrain")
    n_candidates: int | None = Field(None, description="distinct prompt texts ranked")
    r_at_1: float
    r_at_5: float
    r_at_10: float
    chance_at_1: float | None = Field(None, description="R@1 of a random ranking")
    chance_at_5: float | None = None
    chance_at_10: float | None = None
    zero_shot_accuracy: float | None = None
    zero_shot_balanced_accuracy: float | None = None
    zero_shot_chance: float | None = None


class TaskCount(_Model):
    """Patients of one task: known (evaluated), poor status, unknown (left out)."""

    task: str
    horizon_years: int
    n_known: int
    n_pos: int
    n_unknown: int
    n_graft_loss: int
    n_graft_loss_undated: int = Field(0, description="of n_graft_loss: lost without a date, "
                                      "follow-up ended before the horizon (counted positive)")
    n_unknown_by_reason: dict[str, int] = Field(
        default_factory=dict, description="unknown status by reason: followup_short, "
        "egfr_missing, followup_unknown, graft_loss_undated (lost without a date, followed "
        "beyond the horizon, no eGFR there)")
    n_exams_dropped: int = Field(0, description="imaged exams of the task's patients on or "
                                 "after the horizon or the graft loss: not used as features")
    n_no_exam: int = Field(0, description="patients with a known status but no imaged exam "
                           "before the horizon or the graft loss: left out of the task")


class Header(_Model):
    """Protocol and cohort counts."""

    schema_version: int = SCHEMA_VERSION
    medimp_version: str
    created: str
    cohort: str
    n_patients: int
    n_exams: int
    threshold: float
    horizons: list[int]
    tasks: list[TaskCount]
    methods: dict[str, str] = Field(description="method -> source (run dir, file, baseline)")
    runs: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="method -> run label -> source, for methods with "
        "several pretraining runs")
    protocol: dict[str, Any]
    reference_method: str | None = None
    notes: list[str] = Field(default_factory=list,
                             description="caveats: one-run methods, runs of another cohort")
    cohort_fingerprint: str | None = None
    external_cohort: str | None = Field(None, description="evaluate --external: the cohort")
    external_fingerprint: str | None = None


class MetricsFile(_Model):
    """The whole ``metrics.json``."""

    header: Header
    records: list[Record]
    skipped: list[Skipped] = Field(default_factory=list)
    comparisons: list[Comparison] = Field(default_factory=list)
    regression: list[RegressionRecord] = Field(
        default_factory=list, description="continuous tasks egfr_yK (ridge probe)")
    regression_comparisons: list[Comparison] = Field(
        default_factory=list, description="R² of the reference method minus each other "
        "method on the continuous tasks (metric 'r2')")
    added_value: list[Comparison] = Field(
        default_factory=list, description="clinical+NAME minus clinical_only, per task and "
        "metric (auc, brier on binary tasks; r2 on continuous ones)")
    added_value_answers: list[AddedValue] = Field(default_factory=list)
    survival: list[SurvivalRecord] = Field(default_factory=list)
    retrieval: list[RetrievalRecord] = Field(default_factory=list)
    external: list[ExternalRecord] = Field(
        default_factory=list, description="external validation (evaluate --external)")


def write_metrics(metrics: MetricsFile, path: str | os.PathLike[str]) -> Path:
    """Validate and write ``metrics.json`` atomically (strict JSON: no NaN)."""
    data = MetricsFile.model_validate(metrics.model_dump()).model_dump(mode="json")
    text = json.dumps(data, indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return Path(path)


def read_metrics(path: str | os.PathLike[str]) -> MetricsFile:
    """Read and validate ``metrics.json``; a file that is not one is an
    :class:`~medimp.evaluate.errors.EvaluationError` naming the file and its first problems."""
    path = Path(path)
    try:
        return MetricsFile.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        problems = validation_problems(exc.errors())
        shown = "; ".join(problems[:3]) + (f"; ... ({len(problems)} problems)"
                                           if len(problems) > 3 else "")
        raise EvaluationError(f"{path}: not a metrics.json medimp can read ({shown}); run "
                              "`medimp evaluate` again to write it") from None
