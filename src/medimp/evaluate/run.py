"""One call that evaluates every method on every task and writes ``metrics.json``.

``evaluate(cohort, {"medimp": run_dir, "image_ssl": "emb.parquet", ...}, out_dir)`` adds the
``clinical_only`` and (on simulated cohorts) ``oracle`` references, runs the probes in the shared
patient-grouped CV, computes each metric per test fold with a corrected resampled t interval
(:mod:`medimp.evaluate.intervals`), compares the reference method with each other method, fits
the survival model and the retrieval checks, and writes into ``out_dir``:

* ``metrics.json`` (schema in :mod:`medimp.evaluate.metrics`),
* ``predictions.parquet``: out-of-fold score and decision per task, method, level, probe,
  repeat and patient,
* ``folds.parquet``: train/test patients of every fold of every task,
* ``survival.parquet``: per method and patient, time, event, mean risk and risk group,
* ``embeddings/<method>.parquet``: the feature tables used (for the report's 2D map; further
  runs of a method as ``<method>#<run>.parquet``).

A method may have several pretraining runs (seeds, :mod:`medimp.evaluate.replicates`): each
run gets its own records (``run`` set) and the method an aggregate record (``run`` null, mean
over runs, seed-aware CI, ``n_runs``, ``auc_sd``).

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
from medimp.data.fingerprint import cohort_fingerprint
from medimp.evaluate._cohort import EvaluationError, load_cohort
from medimp.evaluate.baselines import clinical_features, oracle_features
from medimp.evaluate.bootstrap import auc, balanced_accuracy, f1
from medimp.evaluate.cv import CVResult, cross_validate, make_splits
from medimp.evaluate.embeddings import check_embeddings, read_embeddings
from medimp.evaluate.intervals import (
    corrected_interval,
    fold_metric,
    minimal_detectable_difference,
    paired_auc_interval,
)
from medimp.evaluate.labels import make_labels, survival_table, task_name
from medimp.evaluate.metrics import (
    Comparison,
    Header,
    MetricsFile,
    Record,
    RetrievalRecord,
    Skipped,
    SurvivalRecord,
    TaskCount,
    write_metrics,
)
from medimp.evaluate.probes import ProbeError, create_probe
from medimp.evaluate.replicates import (
    Member,
    check_replicates,
    cohort_warnings,
    expand_methods,
)

__all__ = ["EvalConfig", "EvalResult", "evaluate", "load_method"]

REFERENCE_METHODS = ("clinical_only", "oracle")


class EvalConfig(BaseModel):
    """Evaluation protocol; every option has a default (DESIGN.md "What evaluation means")."""

    model_config = ConfigDict(extra="forbid")

    horizons: list[int] = Field([2, 3, 4], description="Years after transplant.")
    threshold: float | None = Field(None, description="eGFR cut-off; None: study.yaml's.")
    n_splits: int = Field(5, ge=2, description="Outer CV folds.")
    repeats: int = Field(5, ge=1, description="Outer CV repeats (new shuffles).")
    n_bootstrap: int = Field(1000, ge=20, description="Bootstrap resamples (kept for the "
                             "command line; the CIs now use the corrected resampled t).")
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
        """Paired tests of the reference method: task, other, ΔAUC [CI], p, runs compared."""
        rows = [{"task": c.task, "vs": c.other,
                 "delta_auc": f"{c.auc_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
                 "p": round(c.p_value, 4), "runs": f"{c.n_runs} vs {c.other_n_runs}"}
                for c in self.metrics.comparisons if c.level == level and c.probe == probe]
        return pd.DataFrame(rows, columns=["task", "vs", "delta_auc", "p", "runs"])


def _cell(r: Record) -> str:
    cell = f"{r.auc:.3f} [{r.auc_ci_low:.3f}, {r.auc_ci_high:.3f}]"
    return cell + (f" sd {r.auc_sd:.3f}" if r.n_runs > 1 and r.auc_sd is not None else "")


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


@dataclass
class _Inputs:
    """The cohort, the task labels and every feature table that will be probed."""

    tables: Cohort
    threshold: float
    counts: list[TaskCount]
    labels: dict[int, pd.DataFrame]
    members: dict[str, Member] = field(default_factory=dict)  # key -> member
    features: dict[str, pd.DataFrame] = field(default_factory=dict)  # key -> table
    impute: dict[str, bool] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _load_inputs(cfg: EvalConfig, cohort_path: Path, methods: Mapping[str, Any]) -> _Inputs:
    tables = load_cohort(cohort_path)
    threshold = tables.study.outcomes.threshold if cfg.threshold is None else cfg.threshold
    counts, labels = _task_counts(tables, cfg.horizons, threshold)
    inp = _Inputs(tables=tables, threshold=threshold, counts=counts, labels=labels)
    members = expand_methods(methods)
    check_replicates(members)
    inp.notes += cohort_warnings(members, cohort_fingerprint(cohort_path))
    cohort_ids = set(tables.patients["patient_id"])
    needed = set().union(*(set(lab.loc[lab["known"], "patient_id"]) for lab in labels.values()))
    for m in members:
        try:
            df = load_method(m.key, m.source, cohort_path)
            check_embeddings(df, m.key, cohort_ids, needed)
        except (ValueError, FileNotFoundError) as exc:  # EvaluationError, TrainError, ...
            inp.skipped.append(Skipped(task="*", method=m.method, run=m.run, reason=str(exc)))
            continue
        inp.members[m.key], inp.features[m.key], inp.impute[m.key] = m, df, False
    _add_references(cfg, inp)
    inp.notes += _one_run_notes(inp)
    return inp


def _add_references(cfg: EvalConfig, inp: _Inputs) -> None:
    if cfg.clinical_only and "clinical_only" not in inp.features:
        try:
            inp.features["clinical_only"] = clinical_features(inp.tables)
            inp.impute["clinical_only"] = True
            inp.members["clinical_only"] = Member(
                "clinical_only", None, "clinical table at the exam (baseline)")
        except EvaluationError as exc:
            inp.skipped.append(Skipped(task="*", method="clinical_only", reason=str(exc)))
    if cfg.oracle and "oracle" not in inp.features:
        oracle = oracle_features(inp.tables)
        if oracle is not None:
            inp.features["oracle"], inp.impute["oracle"] = oracle, True
            inp.members["oracle"] = Member(
                "oracle", None, "truth.csv latent variables (ceiling reference)")


def _one_run_notes(inp: _Inputs) -> list[str]:
    runs: dict[str, int] = {}
    for m in inp.members.values():
        runs[m.method] = runs.get(m.method, 0) + 1
    single = [name for name, n in runs.items() if n == 1 and name not in REFERENCE_METHODS]
    return [f"{name}: one pretraining run; its CI and its paired comparisons leave out the "
            "variance between pretraining seeds (pass several runs to include it)"
            for name in single]


def _sources_header(inp: _Inputs) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    methods: dict[str, str] = {}
    runs: dict[str, dict[str, str]] = {}
    for m in inp.members.values():  # methods in the order given
        methods[m.method] = _source(m.source)
        if m.run is not None:
            runs.setdefault(m.method, {})[m.run] = _source(m.source)
    for name, by_run in runs.items():
        methods[name] = " | ".join(by_run.values())
    return methods, runs


def _save_embeddings(out_dir: Path, inp: _Inputs) -> None:
    emb_dir = out_dir / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    first: set[str] = set()
    for key, df in inp.features.items():
        method = inp.members[key].method
        name = method if method not in first else key  # the first run of a method: <method>
        first.add(method)
        with atomic_path(emb_dir / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)


@dataclass
class _TaskCV:
    """Cross-validation output of one task: its splits and each (key, level, probe) result."""

    task: str
    horizon: int
    patients: np.ndarray
    y: np.ndarray
    splits: list
    results: dict[tuple[str, str, str], CVResult] = field(default_factory=dict)

    @property
    def tests(self) -> list[tuple[int, np.ndarray]]:
        return [(s.repeat, s.test) for s in self.splits]

    @property
    def test_train_ratio(self) -> float:
        return float(np.mean([len(s.test) / len(s.train) for s in self.splits]))


def _fold_rows(tcv: _TaskCV) -> list[pd.DataFrame]:
    return [pd.DataFrame({"task": tcv.task, "repeat": s.repeat, "fold": s.fold, "side": side,
                          "patient_id": tcv.patients[idx]})
            for s in tcv.splits for side, idx in (("train", s.train), ("test", s.test))]


def _run_task(cfg: EvalConfig, inp: _Inputs, k: int, bar: _Progress) -> _TaskCV | None:
    task = task_name(k)
    known = inp.labels[k][inp.labels[k]["known"]]
    patients = known["patient_id"].to_numpy(str)
    y = known["label"].to_numpy(int)
    jobs = [(key, level, probe) for key in inp.features for level in cfg.levels
            for probe in cfg.probes]
    try:
        splits = make_splits(patients, y, cfg.n_splits, cfg.repeats, cfg.seed)
    except EvaluationError as exc:
        inp.skipped.append(Skipped(task=task, reason=f"task {task}: {exc}"))
        bar.advance(len(jobs))
        return None
    tcv = _TaskCV(task=task, horizon=k, patients=patients, y=y, splits=splits)
    outcomes = Parallel(n_jobs=cfg.n_jobs, return_as="generator")(
        delayed(_cv_job)(inp.features[key], patients, y, level=level, tables=inp.tables,
                         splits=splits, factory=_probe_factory(cfg, probe, inp.impute[key]))
        for key, level, probe in jobs)
    for (key, level, probe), res in zip(jobs, outcomes, strict=True):
        bar.advance(1, f"{task} {key} {level} {probe}")
        if isinstance(res, str):
            m = inp.members[key]
            inp.skipped.append(Skipped(task=task, method=m.method, run=m.run, reason=(
                f"{task} {key} level={level} probe={probe}: {res}")))
            continue
        tcv.results[(key, level, probe)] = res
    return tcv


def _fold_values(tcv: _TaskCV, res: CVResult) -> dict[str, np.ndarray]:
    return {"auc": fold_metric(tcv.y, res.scores, tcv.tests, auc),
            "balanced_accuracy": fold_metric(tcv.y, res.decisions, tcv.tests,
                                             balanced_accuracy),
            "f1": fold_metric(tcv.y, res.decisions, tcv.tests, f1)}


def _record(tcv: _TaskCV, values: dict[str, np.ndarray], *, method: str, run: str | None,
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


def _task_records(inp: _Inputs, tcv: _TaskCV) -> tuple[list[Record], dict]:
    """Per-run records, per-method aggregates, and each method's runs (for the paired tests)."""
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


def evaluate(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],
             out_dir: str | os.PathLike[str], config: EvalConfig | None = None,
             progress: bool = False, *, overwrite: bool = False) -> EvalResult:
    """Evaluate each method's frozen features on the cohort's downstream tasks.

    Args:
        cohort_path: the cohort directory.
        methods: name -> run dir, embeddings file (``.parquet``/``.csv``) or DataFrame
            (patient_id, exam, level, e0..), or a list of those (pretraining replicates of
            the method), a glob pattern, or a folder of run folders (``RUN/seed0``, ...).
            ``clinical_only`` and ``oracle`` are added.
        out_dir: the folder of results: absent or empty unless ``overwrite``; written as a
            temporary folder beside it that replaces it only once complete, and locked
            meanwhile (a second evaluation into it fails at once).
        config: the protocol (defaults: 3 horizons, 5×5 CV).
        progress: show a rich progress bar.
        overwrite: replace a non-empty ``out_dir`` (only once the new results are complete).

    Returns:
        An :class:`EvalResult`; ``metrics.json`` is at ``result.metrics_path``.

    Raises:
        EvaluationError: runs of one method that are not replicates (different encoder,
            preprocessing, training cohort or budget).
    """
    from dataclasses import replace

    from medimp._io import output_dir

    final = Path(out_dir)
    sources = [s for m in methods.values() for s in (m if isinstance(m, list | tuple) else [m])]
    inputs = [cohort_path, *(s for s in sources if isinstance(s, str | os.PathLike))]
    with output_dir(final, overwrite=overwrite, what="evaluation folder",
                    error=EvaluationError, keep=inputs, ours=EVAL_OUTPUTS) as tmp:
        result = _evaluate(cohort_path, methods, tmp, config, progress)
    return replace(result, out_dir=final, metrics_path=final / result.metrics_path.name)


# what evaluate (and the report written after it) puts in --out: --overwrite replaces nothing else
EVAL_OUTPUTS = ("metrics.json", "predictions.parquet", "folds.parquet", "survival.parquet",
                "embeddings", "report.html")


def _evaluate(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],
              out_dir: Path, config: EvalConfig | None, progress: bool) -> EvalResult:
    cfg = config or EvalConfig()
    cohort_path = Path(cohort_path)
    inp = _load_inputs(cfg, cohort_path, methods)
    _save_embeddings(out_dir, inp)
    bar = _Progress(progress, len(cfg.horizons) * len(inp.features) * len(cfg.levels)
                    * len(cfg.probes), "evaluating")
    task_cvs = [t for k in cfg.horizons if (t := _run_task(cfg, inp, k, bar)) is not None]
    bar.close()
    records: list[Record] = []
    comparisons: list[Comparison] = []
    for tcv in task_cvs:
        recs, stacked = _task_records(inp, tcv)
        records += recs
        comparisons += _compare(cfg, tcv, stacked)
    survival_records, surv_rows = (_run_survival(cfg, inp) if cfg.survival else ([], []))
    retrieval_records = _retrieval(cfg, inp) if cfg.retrieval else []
    metrics = MetricsFile(header=_header(cfg, cohort_path, inp), records=records,
                          skipped=inp.skipped, comparisons=comparisons,
                          survival=survival_records, retrieval=retrieval_records)
    metrics_path = write_metrics(metrics, out_dir / "metrics.json")
    cv_results = {(t.task, key, level, probe): res for t in task_cvs
                  for (key, level, probe), res in t.results.items()}
    predictions = _predictions_table(cv_results, inp.members)
    fold_rows = [df for t in task_cvs for df in _fold_rows(t)]
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


def _header(cfg: EvalConfig, cohort_path: Path, inp: _Inputs) -> Header:
    sources, runs = _sources_header(inp)
    return Header(
        medimp_version=__version__,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        cohort=str(cohort_path.resolve()), n_patients=len(inp.tables.patients),
        n_exams=len(inp.tables.imaged_exams()), threshold=inp.threshold,
        horizons=list(cfg.horizons), tasks=inp.counts, methods=sources, runs=runs,
        protocol=protocol_description(cfg), reference_method=cfg.reference_method,
        notes=inp.notes, cohort_fingerprint=cohort_fingerprint(cohort_path),
    )


def _retrieval(cfg: EvalConfig, inp: _Inputs) -> list[RetrievalRecord]:
    from medimp.evaluate.retrieval import retrieval_for_runs

    sources = {key: m.source for key, m in inp.members.items()}
    out = []
    for rec in retrieval_for_runs(inp.tables, sources, cfg.seed, inp.skipped):
        m = inp.members[rec.method]
        out.append(rec.model_copy(update={"method": m.method, "run": m.run}))
    return out


def _cv_job(df, patients, y, *, level, tables, splits, factory) -> CVResult | str:
    """One cross-validation; bad input comes back as its message (the others still run).

    BLAS runs single-threaded here: the probes fit tiny problems, where a multi-threaded BLAS
    only adds overhead (measured: 3x slower on 2 cores, with identical results).
    """
    from threadpoolctl import threadpool_limits

    try:
        with threadpool_limits(1, user_api="blas"):
            return cross_validate(df, patients, y, level=level, tables=tables, splits=splits,
                                  make_probe=factory)
    except (EvaluationError, ProbeError, KeyError) as exc:
        return str(exc)


def _compare(cfg: EvalConfig, tcv: _TaskCV, scores: dict) -> list[Comparison]:
    """The reference method minus each other method on the same folds (seed-aware when a
    method has several runs): :func:`medimp.evaluate.intervals.paired_auc_interval`."""
    ref = cfg.reference_method
    out = []
    for (name, level, probe), runs in scores.items():
        mine = scores.get((ref, level, probe))
        if name == ref or mine is None:
            continue
        iv = paired_auc_interval(tcv.y, mine, runs, tcv.tests, tcv.test_train_ratio)
        if not np.isfinite([iv.estimate, iv.low, iv.high, iv.p_value]).all():
            continue
        out.append(Comparison(
            task=tcv.task, method=ref, other=name, level=level, probe=probe, n=len(tcv.y),
            auc_diff=iv.estimate, ci_low=iv.low, ci_high=iv.high, p_value=iv.p_value,
            se=iv.se, n_runs=len(mine), other_n_runs=len(runs),
            seed_variance=len(mine) > 1 or len(runs) > 1,
            min_detectable_diff=minimal_detectable_difference(iv.se)))
    return out


def _survival_task(cfg: EvalConfig) -> str:
    return "graft_survival" if cfg.survival_event == "graft_loss" else "poor_status_survival"


def _survival_table(cfg: EvalConfig, inp: _Inputs) -> pd.DataFrame | None:
    task = _survival_task(cfg)
    try:
        surv = survival_table(inp.tables, cfg.survival_event, cfg.threshold)
    except EvaluationError as exc:
        inp.skipped.append(Skipped(task=task, reason=f"{task}: {exc}"))
        return None
    n_events = int(surv["event"].sum())
    if min(n_events, len(surv) - n_events) < cfg.n_splits:
        what = "graft loss(es)" if cfg.survival_event == "graft_loss" else "event(s)"
        inp.skipped.append(Skipped(task=task, reason=(
            f"{task}: {n_events} {what} among {len(surv)} patients; the Cox model needs at "
            f"least one event and one censored patient per fold ({cfg.n_splits} folds): lower "
            "--folds, add patients, use --survival-event poor_status, or --no-survival")))
        return None
    return surv


def _survival_record(cfg: EvalConfig, res, values: np.ndarray, method: str,
                     run: str | None) -> SurvivalRecord | None:
    iv = corrected_interval(values, res.test_train_ratio, null=0.5, clip=(0, 1))
    if not np.isfinite([iv.estimate, iv.low, iv.high]).all():
        return None
    return SurvivalRecord(
        task=_survival_task(cfg), method=method, run=run, n_runs=iv.n_runs,
        n=len(res.patients), n_events=int(res.event.sum()), c_index=iv.estimate,
        c_index_ci_low=iv.low, c_index_ci_high=iv.high, c_index_sd=iv.seed_sd,
        logrank_p=res.logrank_p if run is not None or iv.n_runs == 1 else None,
        pca_components=res.n_components, penalizer=cfg.cox_penalizer)


def _run_survival(cfg: EvalConfig, inp: _Inputs):
    from medimp.evaluate.survival import cox_cross_validate

    surv = _survival_table(cfg, inp)
    if surv is None:
        return [], []
    records: list[SurvivalRecord] = []
    rows: list[pd.DataFrame] = []
    by_method: dict[str, list] = {}
    for key, df in inp.features.items():
        m = inp.members[key]
        try:
            res = cox_cross_validate(df, surv, inp.tables, n_splits=cfg.n_splits,
                                     repeats=cfg.repeats, seed=cfg.seed,
                                     n_components=cfg.survival_pca,
                                     penalizer=cfg.cox_penalizer, impute=inp.impute[key])
        except (EvaluationError, KeyError, ValueError) as exc:
            inp.skipped.append(Skipped(task=_survival_task(cfg), method=m.method, run=m.run,
                                       reason=str(exc)))
            continue
        rec = _survival_record(cfg, res, res.fold_c, m.method, m.run)
        if rec is None:
            inp.skipped.append(Skipped(task=_survival_task(cfg), method=m.method, run=m.run,
                                       reason="C-index undefined (no comparable pairs)"))
            continue
        records.append(rec)
        by_method.setdefault(m.method, []).append(res)
        rows.append(pd.DataFrame({"method": m.method, "run": m.run or "",
                                  "patient_id": res.patients, "time_days": res.time,
                                  "event": res.event, "risk": res.risk.mean(axis=0),
                                  "high_risk": res.group}))
    for method, results in by_method.items():
        if len(results) > 1:
            agg = _survival_record(cfg, results[0], np.stack([r.fold_c for r in results]),
                                   method, None)
            if agg is not None:
                records.append(agg)
    return records, rows


def _predictions_table(cv_results: dict, members: Mapping[str, Member]) -> pd.DataFrame:
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
        "metrics": ("patient-level ROC AUC, balanced accuracy, F1 computed on each test fold "
                    f"({cfg.repeats}x{cfg.n_splits} values) and averaged; 95% CI from the "
                    "corrected resampled t (Nadeau & Bengio 2003: variance of the fold mean "
                    "(1/J + n_test/n_train)·s², J-1 df), which carries the variability of the "
                    "training folds; for a method with several pretraining runs the fold "
                    "values are averaged over runs and the variance of the run means / runs "
                    "is added (Welch–Satterthwaite df)"),
        "paired_test": (f"corrected resampled t of AUC({cfg.reference_method}) - AUC(other) on "
                        "the same folds, plus the DeLong variance of the pooled out-of-fold "
                        "difference and the seed variance of each method with several runs; "
                        "two-sided p-value; minimal detectable difference = 2.8 x SE (80% "
                        "power, alpha 0.05)"),
        "survival_metric": ("Harrell's C on each test fold (risks of one fitted model, never "
                            "pooled across folds), averaged; CI as for the AUC"),
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
