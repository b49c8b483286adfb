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

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from medimp._io import output_dir
from medimp.evaluate.compare import holm_verdicts, paired_comparison
from medimp.evaluate.config import REFERENCE_METHODS, EvalConfig
from medimp.evaluate.cv import CVResult, TaskCV, cross_validate, make_splits
from medimp.evaluate.endpoints import (
    add_calibration,
    combined_members,
    run_added_binary,
    run_endpoints,
    without_combined,
)
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.inputs import (
    Inputs,
    load_inputs,
    load_method,
    save_embeddings,
    task_features,
)
from medimp.evaluate.intervals import corrected_interval, fold_metric
from medimp.evaluate.labels import survival_table, task_name
from medimp.evaluate.metrics import (
    Comparison,
    MetricsFile,
    Record,
    RetrievalRecord,
    Skipped,
    SurvivalRecord,
)
from medimp.evaluate.probes import ProbeError, create_probe
from medimp.evaluate.result import EVAL_OUTPUTS, EvalResult, header, task_records, write_tables
from medimp.evaluate.retrieval import retrieval_for_runs
from medimp.evaluate.scoring import auc
from medimp.evaluate.survival import cox_cross_validate

__all__ = ["EVAL_OUTPUTS", "EvalConfig", "EvalResult", "evaluate", "load_method"]


def _probe_factory(cfg: EvalConfig, probe: str, impute: bool) -> Callable[[], Any]:
    return lambda: create_probe(probe, cfg, impute=impute)


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
    final = Path(out_dir)
    sources = [s for m in methods.values() for s in (m if isinstance(m, list | tuple) else [m])]
    inputs = [cohort_path, *(s for s in sources if isinstance(s, str | os.PathLike))]
    with output_dir(final, overwrite=overwrite, what="evaluation folder",
                    error=EvaluationError, keep=inputs, ours=EVAL_OUTPUTS) as tmp:
        result = _evaluate(cohort_path, methods, tmp, config, progress)
    return replace(result, out_dir=final, metrics_path=final / result.metrics_path.name)


def _evaluate(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],
              out_dir: Path, config: EvalConfig | None, progress: bool) -> EvalResult:
    cfg = config or EvalConfig()
    cohort_path = Path(cohort_path)
    inp = load_inputs(cfg, cohort_path, methods)
    save_embeddings(out_dir, inp)
    bar = _Progress(progress, len(cfg.horizons) * len(inp.features) * len(cfg.levels)
                    * len(cfg.probes), "evaluating")
    task_cvs = [t for k in cfg.horizons if (t := _run_task(cfg, inp, k, bar)) is not None]
    bar.close()
    combined = combined_members(inp) if cfg.added_value else {}
    for tcv in task_cvs:  # clinical+NAME on the binary tasks, before their records
        run_added_binary(cfg, inp, tcv, combined)
    records: list[Record] = []
    pairs: list[tuple[tuple, Any]] = []
    scores_by_task = {}
    for tcv in task_cvs:
        recs, stacked = task_records(inp, tcv)
        records += add_calibration(inp, tcv, recs, stacked) if cfg.calibration else recs
        scores_by_task[tcv.task] = stacked
        pairs += _compare(cfg, tcv, without_combined(stacked))
    comparisons = _settle(pairs)
    ends = run_endpoints(cfg, inp, task_cvs, scores_by_task, combined)
    survival_records, surv_rows = (_run_survival(cfg, inp) if cfg.survival else ([], []))
    retrieval_records = _retrieval(cfg, inp) if cfg.retrieval else []
    metrics = MetricsFile(header=header(cfg, cohort_path, inp), records=records,
                          skipped=inp.skipped, comparisons=comparisons,
                          regression=ends.records, regression_comparisons=ends.comparisons,
                          added_value=ends.added,
                          added_value_answers=ends.answers,
                          survival=survival_records, retrieval=retrieval_records)
    result = write_tables(out_dir, metrics, task_cvs, inp.members, surv_rows)
    ends.write(out_dir)
    return result


def _run_task(cfg: EvalConfig, inp: Inputs, k: int, bar: _Progress) -> TaskCV | None:
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
    tcv = TaskCV(task=task, horizon=k, patients=patients, y=y, splits=splits)
    features = task_features(inp, k)  # only exams before the horizon and the graft loss
    outcomes = Parallel(n_jobs=cfg.n_jobs, return_as="generator")(
        delayed(_cv_job)(features[key], patients, y, level=level, tables=inp.tables,
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


def _retrieval(cfg: EvalConfig, inp: Inputs) -> list[RetrievalRecord]:
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
    try:
        with threadpool_limits(1, user_api="blas"):
            return cross_validate(df, patients, y, level=level, tables=tables, splits=splits,
                                  make_probe=factory)
    except (EvaluationError, ProbeError, KeyError) as exc:
        return str(exc)


def _compare(cfg: EvalConfig, tcv: TaskCV, scores: dict) -> list[tuple[tuple, Any]]:
    """The reference method minus each other method on the same folds (seed-aware when a
    method has several runs): :func:`medimp.evaluate.compare.paired_comparison` of the
    per-fold AUCs. Verdicts are settled by :func:`_settle` once every task is compared."""
    ref = cfg.reference_method
    out = []
    for (name, level, probe), runs in scores.items():
        mine = scores.get((ref, level, probe))
        if name == ref or mine is None:
            continue
        va = np.stack([fold_metric(tcv.y, s, tcv.tests, auc) for s in mine])
        vb = np.stack([fold_metric(tcv.y, s, tcv.tests, auc) for s in runs])
        pc = paired_comparison(va, vb, tcv.test_train_ratio,
                               learned=(_learned(cfg, ref), _learned(cfg, name)))
        if not np.isfinite([pc.estimate, pc.low, pc.high, pc.p_value]).all():
            continue
        out.append(((tcv.task, ref, name, level, probe, len(tcv.y)), pc))
    return out


def _learned(cfg: EvalConfig, method: str) -> bool:
    """Whether a method's features come from a pretraining with a seed."""
    return method not in REFERENCE_METHODS and method not in cfg.fixed_methods


def _settle(pairs: list[tuple[tuple, Any]]) -> list[Comparison]:
    """Holm within each family (one level and probe: every task × other method), then the
    ``Comparison`` records with their verdicts."""
    families: dict[tuple[str, str], list[int]] = {}
    for i, (key, _) in enumerate(pairs):
        families.setdefault((key[3], key[4]), []).append(i)
    settled = [pc for _, pc in pairs]
    for idx in families.values():
        for i, pc in zip(idx, holm_verdicts([settled[i] for i in idx]), strict=True):
            settled[i] = pc
    return [Comparison(
        task=task, method=ref, other=name, level=level, probe=probe, n=n,
        auc_diff=pc.estimate, ci_low=pc.low, ci_high=pc.high, p_value=pc.p_value, se=pc.se,
        n_runs=pc.n_runs, other_n_runs=pc.other_n_runs, seed_variance=pc.seed_variance > 0,
        seed_var=pc.seed_variance, min_detectable_diff=_fin(pc.min_detectable_diff),
        df=_fin(pc.df), p_holm=pc.p_holm, verdict=pc.verdict)
        for ((task, ref, name, level, probe, n), _), pc in zip(pairs, settled, strict=True)]


def _fin(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _survival_task(cfg: EvalConfig) -> str:
    return "graft_survival" if cfg.survival_event == "graft_loss" else "poor_status_survival"


def _survival_table(cfg: EvalConfig, inp: Inputs) -> pd.DataFrame | None:
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
    pairs = res.fold_pairs
    iv = corrected_interval(values, res.test_train_ratio, null=0.5, clip=(0, 1),
                            weights=pairs)
    if not np.isfinite([iv.estimate, iv.low, iv.high]).all():
        return None
    dropped = int((~np.isfinite(np.atleast_2d(values)).all(axis=0)).sum())
    return SurvivalRecord(
        task=_survival_task(cfg), method=method, run=run, n_runs=iv.n_runs,
        n=len(res.patients), n_events=int(res.event.sum()), c_index=iv.estimate,
        c_index_ci_low=iv.low, c_index_ci_high=iv.high, c_index_sd=iv.seed_sd,
        logrank_p=res.logrank_p if run is not None or iv.n_runs == 1 else None,
        pca_components=res.n_components, penalizer=cfg.cox_penalizer,
        n_folds=int(np.atleast_2d(values).shape[1]), n_folds_dropped=dropped)


def _run_survival(cfg: EvalConfig, inp: Inputs):
    surv = _survival_table(cfg, inp)
    if surv is None:
        return [], []
    records: list[SurvivalRecord] = []
    rows: list[pd.DataFrame] = []
    by_method: dict[str, list] = {}
    # features: exams before the first horizon and before the graft loss (a landmark)
    features = task_features(inp, min(cfg.horizons)) if cfg.horizons else inp.features
    for key, df in features.items():
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
