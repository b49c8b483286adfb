"""One call that evaluates every method on every task and writes ``metrics.json``.

``evaluate(cohort, {"medimp": run_dir, "image_ssl": "emb.parquet", ...}, out_dir)`` adds the
``clinical_only`` and (on simulated cohorts) ``oracle`` references, runs the probes in the shared
patient-grouped CV, bootstraps the metrics, compares the reference method with each other
method, fits the survival model and the retrieval checks, and writes into ``out_dir``:

* ``metrics.json`` (schema in :mod:`medimp.evaluate.metrics`),
* ``predictions.parquet``: out-of-fold score and decision per task, method, level, probe,
  repeat and patient,
* ``folds.parquet``: train/test patients of every fold of every task,
* ``survival.parquet``: per method and patient, time, event, mean risk and risk group,
* ``embeddings/<method>.parquet``: the feature tables used (for the report's 2D map).

Bad input (one class, too few patients, embeddings not matching the cohort, NaN) is recorded in
``metrics.json["skipped"]`` with the reason; the other tasks still run.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from pydantic import BaseModel, ConfigDict, Field

from medimp import __version__
from medimp._io import atomic_path
from medimp.data import Cohort
from medimp.evaluate._cohort import EvaluationError, load_cohort
from medimp.evaluate.baselines import clinical_features, oracle_features
from medimp.evaluate.bootstrap import bootstrap_metrics, paired_auc_difference
from medimp.evaluate.cv import CVResult, cross_validate, make_splits
from medimp.evaluate.embeddings import check_embeddings, read_embeddings
from medimp.evaluate.labels import make_labels, survival_table, task_name
from medimp.evaluate.metrics import (
    Comparison,
    Header,
    MetricsFile,
    Record,
    Skipped,
    SurvivalRecord,
    TaskCount,
    write_metrics,
)
from medimp.evaluate.probes import ProbeError, create_probe

__all__ = ["EvalConfig", "EvalResult", "evaluate", "load_method"]

REFERENCE_METHODS = ("clinical_only", "oracle")


class EvalConfig(BaseModel):
    """Evaluation protocol; every option has a default (DESIGN.md "What evaluation means")."""

    model_config = ConfigDict(extra="forbid")

    horizons: list[int] = Field([2, 3, 4], description="Years after transplant.")
    threshold: float | None = Field(None, description="eGFR cut-off; None: study.yaml's.")
    n_splits: int = Field(5, ge=2, description="Outer CV folds.")
    repeats: int = Field(5, ge=1, description="Outer CV repeats (new shuffles).")
    n_bootstrap: int = Field(1000, ge=20, description="Patient-level bootstrap resamples.")
    seed: int = 0
    levels: list[Literal["exam", "patient_mean", "patient_latest"]] = Field(
        ["exam", "patient_mean", "patient_latest"], description="Sample levels evaluated.")
    probes: list[Literal["logistic", "knn"]] = ["logistic", "knn"]
    Cs: list[float] = Field([0.01, 0.1, 1.0, 10.0], description="Logistic penalties tried.")
    knn_ks: list[int] = Field([5, 10, 20], description="k-NN neighbour counts tried.")
    inner_splits: int = Field(3, ge=2, description="Inner CV folds (penalty, threshold).")
    clinical_only: bool = Field(True, description="Add the clinical-table baseline.")
    oracle: bool = Field(True, description="Add the latent-truth ceiling if truth.csv exists.")
    reference_method: str = Field("medimp", description="Method compared with every other.")
    survival: bool = Field(True, description="Cox model of graft survival.")
    survival_event: Literal["graft_loss", "poor_status"] = Field(
        "graft_loss", description="Survival endpoint: graft loss, or the composite of graft "
        "loss and eGFR below the threshold at a yearly horizon.")
    survival_pca: int = Field(5, ge=1, description="PCA components for the Cox model.")
    cox_penalizer: float = Field(0.1, gt=0, description="Cox L2 penalty.")
    n_jobs: int = Field(1, description="Parallel cross-validations (joblib; -1: all cores).")
    retrieval: bool = Field(True, description="Image->text retrieval and zero-shot for runs "
                                              "with a text tower.")


@dataclass
class EvalResult:
    """What :func:`evaluate` wrote and computed."""

    out_dir: Path
    metrics_path: Path
    metrics: MetricsFile
    predictions: pd.DataFrame
    folds: pd.DataFrame
    cv: dict[tuple[str, str, str, str], CVResult] = field(default_factory=dict)

    def headline(self, level: str = "patient_mean", probe: str = "logistic") -> pd.DataFrame:
        """Methods × tasks table of "AUC [low, high]" strings."""
        rows = [r for r in self.metrics.records if r.level == level and r.probe == probe]
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame({"method": [r.method for r in rows], "task": [r.task for r in rows],
                           "cell": [f"{r.auc:.3f} [{r.auc_ci_low:.3f}, {r.auc_ci_high:.3f}]"
                                    for r in rows]})
        table = df.pivot(index="method", columns="task", values="cell")
        order = [m for m in self.metrics.header.methods if m in table.index]  # as given
        return table.loc[order + [m for m in table.index if m not in order]]

    def comparison_table(self, level: str = "patient_mean", probe: str = "logistic"
                         ) -> pd.DataFrame:
        """Paired tests of the reference method: task, other, ΔAUC [CI], p-value."""
        rows = [{"task": c.task, "vs": c.other,
                 "delta_auc": f"{c.auc_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                 "p": round(c.p_value, 4)}
                for c in self.metrics.comparisons if c.level == level and c.probe == probe]
        return pd.DataFrame(rows, columns=["task", "vs", "delta_auc", "p"])


def load_method(name: str, source: str | os.PathLike[str] | pd.DataFrame,
                cohort_path: Path) -> pd.DataFrame:
    """Features of one method: a DataFrame, a ``.parquet``/``.csv`` file, or a run dir."""
    if isinstance(source, pd.DataFrame):
        return read_embeddings(source)
    path = Path(source)
    if path.is_dir():
        from medimp.train import embed

        return read_embeddings(embed(path, cohort_path))
    return read_embeddings(path)


def _source(src: Any) -> str:
    return "DataFrame" if isinstance(src, pd.DataFrame) else str(src)


def _task_counts(tables: Cohort, horizons: list[int], threshold: float | None):
    counts, labels = [], {}
    for k in horizons:
        lab = make_labels(tables, k, threshold)
        labels[k] = lab
        known = lab[lab["known"]]
        counts.append(TaskCount(task=task_name(k), horizon_years=k, n_known=len(known),
                                n_pos=int(known["label"].sum()),
                                n_unknown=int((~lab["known"]).sum()),
                                n_graft_loss=int((lab["reason"] == "graft_loss").sum())))
    return counts, labels


def _probe_factory(cfg: EvalConfig, probe: str, impute: bool) -> Callable[[], Any]:
    return lambda: create_probe(probe, cfg, impute=impute)


# split by the evaluation rewrite (issue 9 item 5); the complexity rules are on elsewhere
def evaluate(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],
             out_dir: str | os.PathLike[str], config: EvalConfig | None = None,
             progress: bool = False, *, overwrite: bool = False) -> EvalResult:
    """Evaluate each method's frozen features on the cohort's downstream tasks.

    Args:
        cohort_path: the cohort directory.
        methods: name -> run dir, embeddings file (``.parquet``/``.csv``) or DataFrame
            (patient_id, exam, level, e0..). ``clinical_only`` and ``oracle`` are added.
        out_dir: the folder of results: absent or empty unless ``overwrite``; written as a
            temporary folder beside it that replaces it only once complete, and locked
            meanwhile (a second evaluation into it fails at once).
        config: the protocol (defaults: 3 horizons, 5×5 CV, 1000 bootstrap resamples).
        progress: show a rich progress bar.
        overwrite: replace a non-empty ``out_dir`` (only once the new results are complete).

    Returns:
        An :class:`EvalResult`; ``metrics.json`` is at ``result.metrics_path``.
    """
    from dataclasses import replace

    from medimp._io import output_dir

    final = Path(out_dir)
    inputs = [cohort_path, *(m for m in methods.values() if isinstance(m, str | os.PathLike))]
    with output_dir(final, overwrite=overwrite, what="evaluation folder",
                    error=EvaluationError, keep=inputs) as tmp:
        result = _evaluate(cohort_path, methods, tmp, config, progress)
    return replace(result, out_dir=final, metrics_path=final / result.metrics_path.name)


def _evaluate(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],  # noqa: C901, PLR0912, PLR0915
              out_dir: Path, config: EvalConfig | None, progress: bool) -> EvalResult:
    cfg = config or EvalConfig()
    cohort_path = Path(cohort_path)
    tables = load_cohort(cohort_path)
    threshold = tables.study.outcomes.threshold if cfg.threshold is None else cfg.threshold
    counts, labels = _task_counts(tables, cfg.horizons, threshold)
    skipped: list[Skipped] = []
    sources: dict[str, str] = {}
    features: dict[str, pd.DataFrame] = {}
    impute: dict[str, bool] = {}
    cohort_ids = set(tables.patients["patient_id"])
    needed = set().union(*(set(lab.loc[lab["known"], "patient_id"]) for lab in labels.values()))
    for name, src in methods.items():
        sources[name] = _source(src)
        try:
            df = load_method(name, src, cohort_path)
            check_embeddings(df, name, cohort_ids, needed)
        except (ValueError, FileNotFoundError) as exc:  # EvaluationError, TrainError, ...
            skipped.append(Skipped(task="*", method=name, reason=str(exc)))
            continue
        features[name], impute[name] = df, False
    if cfg.clinical_only and "clinical_only" not in features:
        try:
            features["clinical_only"] = clinical_features(tables)
            impute["clinical_only"] = True
            sources["clinical_only"] = "clinical table at the exam (baseline)"
        except EvaluationError as exc:
            skipped.append(Skipped(task="*", method="clinical_only", reason=str(exc)))
    if cfg.oracle and "oracle" not in features:
        oracle = oracle_features(tables)
        if oracle is not None:
            features["oracle"], impute["oracle"] = oracle, True
            sources["oracle"] = "truth.csv latent variables (ceiling reference)"

    emb_dir = out_dir / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    for name, df in features.items():
        with atomic_path(emb_dir / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)

    records: list[Record] = []
    cv_results: dict[tuple[str, str, str, str], CVResult] = {}
    fold_rows: list[pd.DataFrame] = []
    n_jobs = len(cfg.horizons) * len(features) * len(cfg.levels) * len(cfg.probes)
    bar = _Progress(progress, n_jobs, "evaluating")
    for k in cfg.horizons:
        task = task_name(k)
        lab = labels[k]
        known = lab[lab["known"]]
        patients = known["patient_id"].to_numpy(str)
        y = known["label"].to_numpy(int)
        try:
            splits = make_splits(patients, y, cfg.n_splits, cfg.repeats, cfg.seed)
        except EvaluationError as exc:
            skipped.append(Skipped(task=task, reason=f"task {task}: {exc}"))
            bar.advance(len(features) * len(cfg.levels) * len(cfg.probes))
            continue
        for s in splits:
            for side, idx in (("train", s.train), ("test", s.test)):
                fold_rows.append(pd.DataFrame({"task": task, "repeat": s.repeat, "fold": s.fold,
                                               "side": side, "patient_id": patients[idx]}))
        jobs = [(name, level, probe) for name in features for level in cfg.levels
                for probe in cfg.probes]
        outcomes = Parallel(n_jobs=cfg.n_jobs, return_as="generator")(
            delayed(_cv_job)(features[name], patients, y, level=level, tables=tables,
                             splits=splits, factory=_probe_factory(cfg, probe, impute[name]))
            for name, level, probe in jobs)
        for (name, level, probe), res in zip(jobs, outcomes, strict=True):
            bar.advance(1, f"{task} {name} {level} {probe}")
            if isinstance(res, str):
                skipped.append(Skipped(task=task, method=name, reason=(
                    f"{task} {name} level={level} probe={probe}: {res}")))
                continue
            bs = bootstrap_metrics(y, res.scores, res.decisions, cfg.n_bootstrap,
                                   cfg.seed)
            if not np.isfinite([bs.auc, *bs.auc_ci, bs.balanced_accuracy, bs.f1]).all():
                skipped.append(Skipped(task=task, method=name, reason=(
                    f"{task} {name} level={level} probe={probe}: metrics undefined on "
                    f"{len(y)} patients ({int(y.sum())} positive); add patients")))
                continue
            cv_results[(task, name, level, probe)] = res
            records.append(Record(
                task=task, method=name, n=len(y), n_pos=int(y.sum()), auc=bs.auc,
                auc_ci_low=bs.auc_ci[0], auc_ci_high=bs.auc_ci[1],
                balanced_accuracy=bs.balanced_accuracy, f1=bs.f1,
                balanced_accuracy_ci_low=bs.balanced_accuracy_ci[0],
                balanced_accuracy_ci_high=bs.balanced_accuracy_ci[1],
                f1_ci_low=bs.f1_ci[0], f1_ci_high=bs.f1_ci[1], level=level,
                probe=probe, n_samples=res.n_samples, horizon_years=k))
    bar.close()

    comparisons = _compare(cfg, cv_results)
    survival_records: list[SurvivalRecord] = []
    surv_rows: list[pd.DataFrame] = []
    if cfg.survival:
        _run_survival(cfg, tables, features, impute, records=survival_records, rows=surv_rows,
                      skipped=skipped)
    retrieval_records: list = []
    if cfg.retrieval:
        from medimp.evaluate.retrieval import retrieval_for_runs

        retrieval_records = retrieval_for_runs(tables, methods, cfg.seed, skipped)

    n_exams = len(tables.imaged_exams())
    header = Header(
        medimp_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        cohort=str(cohort_path.resolve()), n_patients=len(tables.patients), n_exams=n_exams,
        threshold=threshold, horizons=list(cfg.horizons), tasks=counts, methods=sources,
        protocol=protocol_description(cfg), reference_method=cfg.reference_method,
    )
    metrics = MetricsFile(header=header, records=records, skipped=skipped,
                          comparisons=comparisons, survival=survival_records,
                          retrieval=retrieval_records)
    metrics_path = write_metrics(metrics, out_dir / "metrics.json")
    predictions = _predictions_table(cv_results)
    folds = pd.concat(fold_rows, ignore_index=True) if fold_rows else pd.DataFrame(
        columns=["task", "repeat", "fold", "side", "patient_id"])
    for fname, table in (("predictions.parquet", predictions), ("folds.parquet", folds),
                         ("survival.parquet", pd.concat(surv_rows, ignore_index=True)
                          if surv_rows else None)):
        if table is not None:
            with atomic_path(out_dir / fname) as tmp:
                table.to_parquet(tmp, index=False)
    return EvalResult(out_dir=out_dir, metrics_path=metrics_path, metrics=metrics,
                      predictions=predictions, folds=folds, cv=cv_results)


def _cv_job(df, patients, y, *, level, tables, splits, factory) -> CVResult | str:
    """One cross-validation; bad input comes back as its message (the others still run)."""
    try:
        return cross_validate(df, patients, y, level=level, tables=tables, splits=splits,
                              make_probe=factory)
    except (EvaluationError, ProbeError, KeyError) as exc:
        return str(exc)


def _compare(cfg: EvalConfig, cv_results: dict) -> list[Comparison]:
    ref = cfg.reference_method
    out = []
    for (task, name, level, probe), res in cv_results.items():
        if name == ref or (task, ref, level, probe) not in cv_results:
            continue
        mine = cv_results[(task, ref, level, probe)]
        diff, lo, hi, p = paired_auc_difference(mine.y, mine.scores, res.scores,
                                                cfg.n_bootstrap, cfg.seed)
        if not np.isfinite([diff, lo, hi, p]).all():
            continue
        out.append(Comparison(task=task, method=ref, other=name, level=level, probe=probe,
                              n=len(mine.y), auc_diff=diff, ci_low=lo, ci_high=hi, p_value=p))
    return out


def _run_survival(cfg, tables, features, impute, *, records, rows, skipped) -> None:
    from medimp.evaluate.survival import cox_cross_validate

    task = "graft_survival" if cfg.survival_event == "graft_loss" else "poor_status_survival"
    try:
        surv = survival_table(tables, cfg.survival_event, cfg.threshold)
    except EvaluationError as exc:
        skipped.append(Skipped(task=task, reason=f"{task}: {exc}"))
        return
    n_events = int(surv["event"].sum())
    if min(n_events, len(surv) - n_events) < cfg.n_splits:
        what = "graft loss(es)" if cfg.survival_event == "graft_loss" else "event(s)"
        skipped.append(Skipped(task=task, reason=(
            f"{task}: {n_events} {what} among {len(surv)} patients; the Cox model needs at "
            f"least one event and one censored patient per fold ({cfg.n_splits} folds): lower "
            "--folds, add patients, use --survival-event poor_status, or --no-survival")))
        return
    for name, df in features.items():
        try:
            res = cox_cross_validate(df, surv, tables, n_splits=cfg.n_splits,
                                     repeats=cfg.repeats, seed=cfg.seed,
                                     n_components=cfg.survival_pca,
                                     penalizer=cfg.cox_penalizer, n_boot=cfg.n_bootstrap,
                                     impute=impute[name])
        except (EvaluationError, KeyError, ValueError) as exc:
            skipped.append(Skipped(task=task, method=name, reason=str(exc)))
            continue
        if not np.isfinite([res.c_index, *res.c_index_ci]).all():
            skipped.append(Skipped(task=task, method=name,
                                   reason="C-index undefined (no comparable pairs)"))
            continue
        records.append(SurvivalRecord(
            task=task, method=name, n=len(res.patients), n_events=int(res.event.sum()),
            c_index=res.c_index, c_index_ci_low=res.c_index_ci[0],
            c_index_ci_high=res.c_index_ci[1], logrank_p=res.logrank_p,
            pca_components=res.n_components, penalizer=cfg.cox_penalizer))
        rows.append(pd.DataFrame({"method": name, "patient_id": res.patients,
                                  "time_days": res.time, "event": res.event,
                                  "risk": res.risk.mean(axis=0), "high_risk": res.group}))


def _predictions_table(cv_results: dict) -> pd.DataFrame:
    parts = []
    for (task, name, level, probe), res in cv_results.items():
        n_rep, n = res.scores.shape
        parts.append(pd.DataFrame({
            "task": task, "method": name, "level": level, "probe": probe,
            "repeat": np.repeat(np.arange(n_rep), n), "patient_id": np.tile(res.patients, n_rep),
            "label": np.tile(res.y, n_rep), "score": res.scores.ravel(),
            "decision": res.decisions.ravel()}))
    if not parts:
        return pd.DataFrame(columns=["task", "method", "level", "probe", "repeat", "patient_id",
                                     "label", "score", "decision"])
    return pd.concat(parts, ignore_index=True)


def protocol_description(cfg: EvalConfig) -> dict[str, Any]:
    """The protocol as recorded in the header (also rendered in words by the report)."""
    return {
        **cfg.model_dump(),
        "label": "eGFR at K years < threshold, or graft loss before K years; unknown left out",
        "cv": (f"{cfg.repeats}x repeated, {cfg.n_splits}-fold, outcome-stratified, "
               "patient-grouped; the same splits for every method"),
        "exam_level": "each exam a training sample; test-exam probabilities averaged per patient",
        "threshold_rule": ("Youden's J on inner-CV out-of-fold probabilities of the training "
                           "folds (never the test fold)"),
        "metrics": ("patient-level ROC AUC, balanced accuracy, F1; mean over repeats; "
                    f"95% percentile CI from {cfg.n_bootstrap} patient bootstrap resamples "
                    "of the out-of-fold predictions; the CI is conditional on the fitted "
                    "probes (it leaves out the variability due to the training folds), so it "
                    "is too narrow: prefer the paired test to compare methods"),
        "paired_test": (f"bootstrap of AUC({cfg.reference_method}) - AUC(other) on the same "
                        "patients and splits; two-sided p-value"),
    }


class _Progress:
    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._bar = None
        if enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int, text: str | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, description=text or "evaluating")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
