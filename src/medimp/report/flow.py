"""Cohort flow: which patients and exams entered, and per task who was left out and why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medimp.data import Cohort
from medimp.evaluate.labels import DAYS_PER_YEAR, make_labels
from medimp.evaluate.metrics import MetricsFile

__all__ = ["cohort_flow"]


def _unknown_reasons(cohort: Cohort, horizon: int, threshold: float) -> dict[str, int]:
    lab = make_labels(cohort, horizon, threshold)
    unknown = set(lab.loc[~lab["known"], "patient_id"])
    pats = cohort.patients.assign(patient_id=cohort.patients["patient_id"].astype(str))
    pats = pats[pats["patient_id"].isin(unknown)]
    col = cohort.study.outcomes.followup_days
    if col in pats.columns:
        follow = pd.to_numeric(pats[col], errors="coerce").to_numpy(float)
    else:
        follow = np.full(len(pats), np.nan)
    short = int(np.sum(follow < DAYS_PER_YEAR * horizon))
    unrecorded = int(np.sum(follow >= DAYS_PER_YEAR * horizon))
    return {"followup_short": short, "egfr_missing": unrecorded,
            "followup_unknown": len(pats) - short - unrecorded}


def cohort_flow(metrics: MetricsFile, cohort: Cohort | None) -> dict[str, Any]:
    """Patients and exams in, per task the patients evaluated and those left out (reasons),
    and what the evaluation skipped."""
    h = metrics.header
    rows = []
    for t in h.tasks:
        row: dict[str, Any] = {
            "task": t.task, "horizon": t.horizon_years, "evaluated": t.n_known,
            "poor": t.n_pos, "lost_before": t.n_graft_loss, "good": t.n_known - t.n_pos,
            "unknown": t.n_unknown, "reasons": None}
        if cohort is not None and t.n_unknown:
            try:
                row["reasons"] = _unknown_reasons(cohort, t.horizon_years, h.threshold)
            except (ValueError, KeyError):  # the cohort changed since the evaluation
                row["reasons"] = None
        rows.append(row)
    imaged_patients = None
    if cohort is not None:
        imaged_patients = int(cohort.imaged_exams()["patient_id"].nunique())
    return {"n_patients": h.n_patients, "n_exams": h.n_exams,
            "imaged_patients": imaged_patients, "tasks": rows,
            "skipped": [{"task": s.task, "method": s.method or "–", "run": s.run or "–",
                         "reason": s.reason} for s in metrics.skipped]}
