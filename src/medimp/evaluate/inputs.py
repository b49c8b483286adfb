"""What an evaluation reads: the cohort, the task labels and every method's feature table.

:func:`load_inputs` reads the cohort (:class:`medimp.data.Cohort`), labels each task
(:func:`medimp.evaluate.labels.make_labels`), expands each method into its pretraining runs
(:mod:`medimp.evaluate.replicates`), loads and checks their feature tables (a run folder is
embedded with its frozen encoder) and adds the ``clinical_only`` and ``oracle`` references.
A method whose table does not fit the cohort is recorded in ``skipped`` with the reason; the
others still run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp._io import atomic_path
from medimp.data import Cohort
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.evaluate.baselines import clinical_features, oracle_features
from medimp.evaluate.config import REFERENCE_METHODS, EvalConfig
from medimp.evaluate.embeddings import check_embeddings, read_embeddings
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.labels import (
    DAYS_PER_YEAR,
    load_cohort,
    loss_and_followup,
    make_labels,
    task_name,
)
from medimp.evaluate.metrics import Skipped, TaskCount
from medimp.evaluate.replicates import (
    Member,
    check_replicates,
    cohort_warnings,
    expand_methods,
)

__all__ = ["HORIZON_WINDOW_DAYS", "Inputs", "before_horizon", "exam_cutoffs", "load_inputs",
           "load_method", "save_embeddings", "sources_header", "task_features"]


def load_method(name: str, source: str | os.PathLike[str] | pd.DataFrame,
                cohort_path: Path) -> pd.DataFrame:
    """Features of one method: a DataFrame, a ``.parquet``/``.csv`` file, or a run dir."""
    if isinstance(source, pd.DataFrame):
        return read_embeddings(source)
    path = Path(source)
    if path.is_dir():
        from medimp.train import embed  # torch and the models: only when a run is embedded

        return read_embeddings(embed(path, cohort_path))
    return read_embeddings(path)


def _source(src: Any) -> str:
    return "DataFrame" if isinstance(src, pd.DataFrame) else str(src)


#: An exam this close to the horizon is the horizon's visit (a K-year eGFR is measured at a
#: visit within about three months of K years): it may carry the outcome, so it is left out.
HORIZON_WINDOW_DAYS = 91


def exam_cutoffs(tables: Cohort, horizon_years: int) -> dict[str, float]:
    """Per patient, the day from which an exam can no longer feed a task at
    ``horizon_years``: the horizon's visit window (K·365.25 - ``HORIZON_WINDOW_DAYS`` days),
    or the graft loss when it came first. A loss without a date is placed at the end of
    follow-up, as in :func:`medimp.evaluate.labels.make_labels` and the survival table."""
    lost, loss_days, follow = loss_and_followup(tables)
    day_k = DAYS_PER_YEAR * horizon_years - HORIZON_WINDOW_DAYS
    loss_at = np.where(np.isfinite(loss_days), loss_days, follow)
    cut = np.where(lost & np.isfinite(loss_at), np.minimum(loss_at, day_k), day_k)
    return dict(zip(tables.patients["patient_id"].astype(str), cut.astype(float), strict=True))


def _usable(tables: Cohort, cutoffs: Mapping[str, float], pids, exams) -> np.ndarray:
    """Whether each (patient, exam) was taken before its patient's cut-off (an exam of unknown
    day, neither in exams.csv nor in study.yaml, is not)."""
    days = {}
    out = np.zeros(len(pids), dtype=bool)
    for i, (p, e) in enumerate(zip(pids, exams, strict=True)):
        key = (str(p), str(e))
        if key not in days:
            days[key] = tables.exam_day(*key)
        out[i] = days[key] < cutoffs.get(key[0], -np.inf)
    return out


def _task_counts(tables: Cohort, horizons: list[int], threshold: float | None):
    counts, labels = [], {}
    imaged = tables.exam_keys()
    for k in horizons:
        lab = make_labels(tables, k, threshold)
        cut = exam_cutoffs(tables, k)
        known_ids = set(lab.loc[lab["known"], "patient_id"])
        keys = [key for key in imaged if key[0] in known_ids]
        ok = _usable(tables, cut, [p for p, _ in keys], [e for _, e in keys])
        with_exam = {p for (p, _), good in zip(keys, ok, strict=True) if good}
        no_exam = lab["known"] & ~lab["patient_id"].isin(with_exam)
        lab = lab.assign(known=lab["known"] & ~no_exam)  # no exam before the cut-off: out
        labels[k] = lab
        known = lab[lab["known"]]
        why = lab.loc[~lab["known"] & ~no_exam, "unknown_reason"].value_counts()
        counts.append(TaskCount(
            task=task_name(k), horizon_years=k, n_known=len(known),
            n_pos=int(known["label"].sum()), n_unknown=int((~lab["known"] & ~no_exam).sum()),
            n_graft_loss=int(known["reason"].str.startswith("graft_loss").sum()),
            n_graft_loss_undated=int((known["reason"] == "graft_loss_undated").sum()),
            n_unknown_by_reason={str(r): int(n) for r, n in why.items()},
            n_exams_dropped=int((~ok).sum()), n_no_exam=int(no_exam.sum())))
    return counts, labels


def before_horizon(tables: Cohort, df: pd.DataFrame, horizon_years: int,
                   cutoffs: Mapping[str, float] | None = None) -> pd.DataFrame:
    """``df`` (embeddings-table layout) without the exams taken at or after the horizon or
    after the patient's graft loss (:func:`exam_cutoffs`), so that no exam shows the outcome.

    A table that loses exams also loses its precomputed patient rows (``patient``,
    ``patient_latest``): they are recomputed from the exams kept. Unchanged otherwise.
    """
    cut = exam_cutoffs(tables, horizon_years) if cutoffs is None else cutoffs
    exam_rows = (df["level"] == "exam").to_numpy()
    ok = np.ones(len(df), dtype=bool)
    ok[exam_rows] = _usable(tables, cut, df.loc[exam_rows, "patient_id"],
                            df.loc[exam_rows, "exam"])
    if ok.all():
        return df
    return df[ok & exam_rows].reset_index(drop=True)


def task_features(inp: Inputs, horizon_years: int) -> dict[str, pd.DataFrame]:
    """Every method's table for the task at ``horizon_years`` (:func:`before_horizon`),
    cached per horizon."""
    if horizon_years not in inp.cut:
        cut = exam_cutoffs(inp.tables, horizon_years)
        inp.cut[horizon_years] = {key: before_horizon(inp.tables, df, horizon_years, cut)
                                  for key, df in inp.features.items()}
    return inp.cut[horizon_years]


@dataclass
class Inputs:
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
    cut: dict[int, dict[str, pd.DataFrame]] = field(default_factory=dict)  # task_features


def load_inputs(cfg: EvalConfig, cohort_path: Path, methods: Mapping[str, Any]) -> Inputs:
    """Read the cohort, label the tasks, load every method's table and add the references.

    Raises:
        EvaluationError: runs of one method that are not replicates.
    """
    tables = load_cohort(cohort_path)
    threshold = tables.study.outcomes.threshold if cfg.threshold is None else cfg.threshold
    counts, labels = _task_counts(tables, cfg.horizons, threshold)
    inp = Inputs(tables=tables, threshold=threshold, counts=counts, labels=labels)
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
    inp.notes += _one_run_notes(cfg, inp)
    return inp


def _add_references(cfg: EvalConfig, inp: Inputs) -> None:
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


def _one_run_notes(cfg: EvalConfig, inp: Inputs) -> list[str]:
    runs: dict[str, int] = {}
    for m in inp.members.values():
        runs[m.method] = runs.get(m.method, 0) + 1
    single = [name for name, n in runs.items()
              if n == 1 and name not in REFERENCE_METHODS and name not in cfg.fixed_methods]
    return [f"{name}: one pretraining run; its CI leaves out the variance between "
            "pretraining seeds and its comparisons are not decided (pass several runs, e.g. "
            "medimp pretrain --seeds 0 1 2, or list it in fixed_methods if its features "
            "involve no training seed)" for name in single]


def sources_header(inp: Inputs) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``header.methods`` (method -> source) and ``header.runs`` (method -> run -> source)."""
    methods: dict[str, str] = {}
    runs: dict[str, dict[str, str]] = {}
    for m in inp.members.values():  # methods in the order given
        methods[m.method] = _source(m.source)
        if m.run is not None:
            runs.setdefault(m.method, {})[m.run] = _source(m.source)
    for name, by_run in runs.items():
        methods[name] = " | ".join(by_run.values())
    return methods, runs


def save_embeddings(out_dir: Path, inp: Inputs) -> None:
    """``embeddings/<method>.parquet`` (further runs: ``<method>#<run>.parquet``)."""
    emb_dir = out_dir / "embeddings"
    emb_dir.mkdir(exist_ok=True)
    first: set[str] = set()
    for key, df in inp.features.items():
        method = inp.members[key].method
        name = method if method not in first else key  # the first run of a method: <method>
        first.add(method)
        with atomic_path(emb_dir / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
