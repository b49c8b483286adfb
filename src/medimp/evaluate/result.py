"""What an evaluation produces: per-fold metrics turned into records, the tables it prints,
and the files it writes (``metrics.json``, ``predictions.parquet``, ``folds.parquet``,
``survival.parquet``).

A method with several pretraining runs gets one record per run (``run`` set) and an aggregate
record (``run`` null: mean over runs, seed-aware CI, ``n_runs``, ``auc_sd``),
:func:`task_records`. :class:`EvalResult` is what :func:`medimp.evaluate.evaluate` returns.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medimp import __version__
from medimp._io import atomic_path
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.evaluate.added import added_value_table, regression_headline
from medimp.evaluate.compare import verdict_sentence
from medimp.evaluate.config import EvalConfig, protocol_description
from medimp.evaluate.cv import CVResult, TaskCV
from medimp.evaluate.inputs import Inputs, sources_header
from medimp.evaluate.intervals import corrected_interval, fold_metric
from medimp.evaluate.metrics import Header, MetricsFile, Record, Skipped, write_metrics
from medimp.evaluate.replicates import Member
from medimp.evaluate.scoring import auc, balanced_accuracy, f1

__all__ = ["EVAL_OUTPUTS", "EvalResult", "header", "predictions_table", "task_records",
           "write_tables"]

# what evaluate (and the report written after it) puts in --out: --overwrite replaces nothing else
EVAL_OUTPUTS = ("metrics.json", "predictions.parquet", "folds.parquet", "survival.parquet",
                "embeddings", "report.html", "egfr_predictions.parquet", "calibration.parquet",
                "decision_curves.parquet")


@dataclass
class EvalResult:
    """What :func:`medimp.evaluate.evaluate` wrote and computed."""

    out_dir: Path
    metrics_path: Path
    metrics: MetricsFile
    predictions: pd.DataFrame
    folds: pd.DataFrame
    cv: dict[tuple[str, str, str, str], CVResult] = field(default_factory=dict)

    def headline(self, level: str = "patient_mean", probe: str = "logistic") -> pd.DataFrame:
        """Methods × tasks table of "AUC [low, high]" strings (the per-method records).

        A method with several pretraining runs shows the mean over runs, its seed-aware CI
        and ``sd`` (the standard deviation between runs); a ``runs`` column counts them.
        """
        rows = [r for r in self.metrics.records
                if r.level == level and r.probe == probe and r.run is None]
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame({"method": [r.method for r in rows], "task": [r.task for r in rows],
                           "cell": [_cell(r) for r in rows]})
        table = df.pivot(index="method", columns="task", values="cell")
        order = [m for m in self.metrics.header.methods if m in table.index]  # as given
        table = table.loc[order + [m for m in table.index if m not in order]]
        runs = {r.method: r.n_runs for r in rows}
        if any(n > 1 for n in runs.values()):
            table.insert(0, "runs", [runs[m] for m in table.index])
        return table

    def comparison_table(self, level: str = "patient_mean", probe: str = "logistic"
                         ) -> pd.DataFrame:
        """Paired tests of the reference method: task, other, ΔAUC [CI], p, p after Holm,
        runs compared and the verdict in words."""
        rows = [{"task": c.task, "vs": c.other,
                 "delta_auc": f"{c.auc_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                 "p": round(c.p_value, 4),
                 "p_holm": "–" if c.p_holm is None else round(c.p_holm, 4),
                 "runs": f"{c.n_runs} vs {c.other_n_runs}", "verdict": c.verdict or ""}
                for c in self.metrics.comparisons
                if c.level == level and c.probe == probe and c.metric == "auc"]
        return pd.DataFrame(rows, columns=["task", "vs", "delta_auc", "p", "p_holm", "runs",
                                           "verdict"])

    def decided(self, level: str = "patient_mean", probe: str = "logistic") -> list[str]:
        """One sentence per task on what is and is not decided (the verdicts in words)."""
        by_task: dict[str, list[tuple[str, str]]] = {}
        ref = self.metrics.header.reference_method or ""
        for c in self.metrics.comparisons:
            if c.level == level and c.probe == probe and c.metric == "auc":
                by_task.setdefault(c.task, []).append((c.other, c.verdict or "not decided"))
        return [verdict_sentence(task, ref, v) for task, v in by_task.items()]

    def regression_table(self, level: str = "patient_mean") -> pd.DataFrame:
        """Methods × ``egfr_yK`` table of "R² [low, high]" (the per-method records)."""

        return regression_headline(self.metrics, level)

    def added_value_table(self) -> pd.DataFrame:
        """``clinical+NAME`` minus ``clinical_only`` per task and metric, with CIs."""

        return added_value_table(self.metrics)

    def added_value_answers(self) -> list[str]:
        """"Do the images add anything?", one line per image method."""
        return [f"{a.method}: {a.sentence}" for a in self.metrics.added_value_answers]


def _cell(r: Record) -> str:
    cell = f"{r.auc:.3f} [{r.auc_ci_low:.3f}, {r.auc_ci_high:.3f}]"
    return cell + (f" sd {r.auc_sd:.3f}" if r.n_runs > 1 and r.auc_sd is not None else "")


def _fold_values(tcv: TaskCV, res: CVResult) -> dict[str, np.ndarray]:
    return {"auc": fold_metric(tcv.y, res.scores, tcv.tests, auc),
            "balanced_accuracy": fold_metric(tcv.y, res.decisions, tcv.tests,
                                             balanced_accuracy),
            "f1": fold_metric(tcv.y, res.decisions, tcv.tests, f1)}


def _record(tcv: TaskCV, values: dict[str, np.ndarray], *, method: str, run: str | None,
            level: str, probe: str, n_samples: int) -> Record | str:
    """One record from fold values (``[runs, J]`` each); a message if undefined."""
    ratio = tcv.test_train_ratio
    iv = {name: corrected_interval(v, ratio, null=0.5 if name == "auc" else 0.0, clip=(0, 1))
          for name, v in values.items()}
    a, ba, f = iv["auc"], iv["balanced_accuracy"], iv["f1"]
    if not np.isfinite([a.estimate, a.low, a.high, ba.estimate, f.estimate]).all():
        return (f"metrics undefined on {len(tcv.y)} patients ({int(tcv.y.sum())} positive); "
                "add patients")
    return Record(task=tcv.task, method=method, run=run, n_runs=a.n_runs, n=len(tcv.y),
                  n_pos=int(tcv.y.sum()), auc=a.estimate, auc_ci_low=a.low, auc_ci_high=a.high,
                  auc_se=a.se, auc_sd=a.seed_sd, balanced_accuracy=ba.estimate, f1=f.estimate,
                  balanced_accuracy_ci_low=_fin(ba.low), balanced_accuracy_ci_high=_fin(ba.high),
                  f1_ci_low=_fin(f.low), f1_ci_high=_fin(f.high), level=level, probe=probe,
                  n_samples=n_samples, horizon_years=tcv.horizon)


def _fin(v: float) -> float | None:
    return v if np.isfinite(v) else None


def task_records(inp: Inputs, tcv: TaskCV) -> tuple[list[Record], dict]:
    """Per-run records, per-method aggregates, and each method's runs (for the paired tests).

    Returns:
        The records, and ``(method, level, probe) -> [scores of each run]``.
    """
    records: list[Record] = []
    grouped: dict[tuple[str, str, str], list[tuple[dict, CVResult, Record]]] = {}
    for (key, level, probe), res in tcv.results.items():
        m = inp.members[key]
        vals = _fold_values(tcv, res)
        rec = _record(tcv, vals, method=m.method, run=m.run, level=level, probe=probe,
                      n_samples=res.n_samples)
        if isinstance(rec, str):
            inp.skipped.append(Skipped(task=tcv.task, method=m.method, run=m.run, reason=(
                f"{tcv.task} {key} level={level} probe={probe}: {rec}")))
            continue
        records.append(rec)
        grouped.setdefault((m.method, level, probe), []).append((vals, res, rec))
    for (method, level, probe), runs in grouped.items():
        if len(runs) > 1:
            vals = {name: np.stack([v[name] for v, _, _ in runs]) for name in runs[0][0]}
            agg = _record(tcv, vals, method=method, run=None, level=level, probe=probe,
                          n_samples=runs[0][1].n_samples)
            if isinstance(agg, Record):
                records.append(agg)
        elif runs[0][2].run is not None:  # the only run left of several: it is the method's
            records.append(runs[0][2].model_copy(update={"run": None}))
    return records, {k: [res.scores for _, res, _ in runs] for k, runs in grouped.items()}


def header(cfg: EvalConfig, cohort_path: Path, inp: Inputs) -> Header:
    """The ``metrics.json`` header: protocol, cohort counts, methods and their sources."""
    sources, runs = sources_header(inp)
    return Header(
        medimp_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        cohort=str(cohort_path.resolve()), n_patients=len(inp.tables.patients),
        n_exams=len(inp.tables.imaged_exams()), threshold=inp.threshold,
        horizons=list(cfg.horizons), tasks=inp.counts, methods=sources, runs=runs,
        protocol=protocol_description(cfg), reference_method=cfg.reference_method,
        notes=inp.notes, cohort_fingerprint=cohort_fingerprint(cohort_path),
    )


def predictions_table(cv_results: dict, members: Mapping[str, Member]) -> pd.DataFrame:
    """Out-of-fold score and decision per task, method, run, level, probe, repeat, patient."""
    parts = []
    for (task, key, level, probe), res in cv_results.items():
        n_rep, n = res.scores.shape
        m = members[key]
        parts.append(pd.DataFrame({
            "task": task, "method": m.method, "run": m.run or "", "level": level,
            "probe": probe, "repeat": np.repeat(np.arange(n_rep), n),
            "patient_id": np.tile(res.patients, n_rep), "label": np.tile(res.y, n_rep),
            "score": res.scores.ravel(), "decision": res.decisions.ravel()}))
    if not parts:
        return pd.DataFrame(columns=["task", "method", "run", "level", "probe", "repeat",
                                     "patient_id", "label", "score", "decision"])
    return pd.concat(parts, ignore_index=True)


def write_tables(out_dir: Path, metrics: MetricsFile, task_cvs: list[TaskCV],
                 members: Mapping[str, Member], surv_rows: list[pd.DataFrame]) -> EvalResult:
    """Write ``metrics.json`` and the parquet tables into ``out_dir`` (each atomically)."""
    metrics_path = write_metrics(metrics, out_dir / "metrics.json")
    cv_results = {(t.task, key, level, probe): res for t in task_cvs
                  for (key, level, probe), res in t.results.items()}
    predictions = predictions_table(cv_results, members)
    fold_rows = [df for t in task_cvs for df in t.fold_rows()]
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
