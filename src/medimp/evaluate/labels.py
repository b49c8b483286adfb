"""Downstream labels: "poor graft status at K years".

docs/design.md: for each horizon K, a patient is positive if the eGFR at K years is below the
threshold (default 45 mL/min/1.73 m², ``study.outcomes.threshold``) or the graft was lost before
K years (``graft_loss == 1`` and ``graft_loss_days < 365.25 * K``). A patient whose status at K is
not known (no eGFR at K and no graft loss before K) is left out of that task and counted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data import Cohort, read_cohort
from medimp.evaluate.errors import EvaluationError

__all__ = ["DAYS_PER_YEAR", "load_cohort", "loss_and_followup", "make_labels", "survival_table",
           "task_name"]

DAYS_PER_YEAR = 365.25


def load_cohort(cohort: Cohort | str | os.PathLike[str]) -> Cohort:
    """The cohort at ``cohort`` (a path, read with :func:`medimp.data.read_cohort`), or
    ``cohort`` itself when it is already a :class:`medimp.data.Cohort`."""
    if isinstance(cohort, Cohort):
        return cohort
    if isinstance(cohort, str | os.PathLike):
        return read_cohort(Path(cohort))
    raise EvaluationError(f"expected a cohort path or medimp.data.Cohort, got {cohort!r}")


def task_name(horizon_years: int) -> str:
    """Name of the binary task for horizon K, e.g. ``status_y2``."""
    return f"status_y{horizon_years}"


def make_labels(cohort: Any, horizon_years: int, threshold: float | None = None) -> pd.DataFrame:
    """Label every patient for "poor graft status at ``horizon_years``".

    Args:
        cohort: a cohort path or a read cohort (``medimp.data.Cohort``).
        horizon_years: K; the study must name an eGFR column for it (``outcomes.egfr``).
        threshold: eGFR cut-off; ``None`` takes ``study.outcomes.threshold``.

    Returns:
        One row per patient: ``patient_id``, ``label`` (0/1, or -1 when unknown), ``known``
        (bool), ``reason`` ("graft_loss", "graft_loss_undated", "egfr" or "unknown") and
        ``unknown_reason`` ("" when known; "followup_short": follow-up ended before K without
        an eGFR at K, "egfr_missing": followed past K without an eGFR at K,
        "followup_unknown", or "graft_loss_undated": lost without a date, follow-up beyond K
        and no eGFR at K).

    A graft lost without a date (``graft_loss`` 1, no ``graft_loss_days``) was lost by the end
    of follow-up: it is positive at every horizon K that follow-up ended before; at a later
    horizon its eGFR at K decides, else it is unknown. The survival table places that loss
    at the end of follow-up (:func:`survival_table`): one rule for both.
    """
    tables = load_cohort(cohort)
    out = tables.study.outcomes
    if horizon_years not in out.egfr:
        raise EvaluationError(
            f"{tables.root / 'study.yaml'}: no eGFR column for horizon {horizon_years} years "
            f"(outcomes.egfr lists {sorted(out.egfr)}); pick one of those horizons"
        )
    thr = out.threshold if threshold is None else float(threshold)
    pats = tables.patients
    col = out.egfr[horizon_years]
    for needed in (col, out.graft_loss):
        if needed not in pats.columns:
            raise EvaluationError(
                f"{tables.root / 'patients.csv'}: outcome column {needed!r} missing; add it or "
                "fix outcomes in study.yaml"
            )
    egfr = pd.to_numeric(pats[col], errors="coerce").to_numpy(float)
    lost, loss_days, follow = loss_and_followup(tables)
    day_k = DAYS_PER_YEAR * horizon_years
    lost_before = lost & (loss_days < day_k)
    # a loss without a date happened by the end of follow-up: before K if follow-up ended first
    undated = lost & ~np.isfinite(loss_days)
    undated_before = undated & (follow < day_k)
    has_egfr = np.isfinite(egfr)
    label = np.full(len(pats), -1, dtype=int)
    reason = np.full(len(pats), "unknown", dtype=object)
    label[has_egfr] = (egfr[has_egfr] < thr).astype(int)
    reason[has_egfr] = "egfr"
    label[lost_before | undated_before] = 1
    reason[lost_before] = "graft_loss"
    reason[undated_before] = "graft_loss_undated"
    why = np.full(len(pats), "", dtype=object)
    unknown = label < 0
    why[unknown & (follow < day_k)] = "followup_short"
    why[unknown & (follow >= day_k)] = "egfr_missing"
    why[unknown & ~np.isfinite(follow)] = "followup_unknown"
    why[unknown & undated] = "graft_loss_undated"
    return pd.DataFrame({
        "patient_id": pats["patient_id"].astype(str).to_numpy(),
        "label": label,
        "known": label >= 0,
        "reason": reason,
        "unknown_reason": why,
    })


def loss_and_followup(tables: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per patient: graft lost (bool), the day of the loss (NaN: lost without a date, or not
    lost) and the end of follow-up (NaN when unknown)."""
    out = tables.study.outcomes
    pats = tables.patients
    lost = pd.to_numeric(pats[out.graft_loss], errors="coerce").fillna(0).to_numpy() == 1
    nan = np.full(len(pats), np.nan)
    loss = (pd.to_numeric(pats[out.graft_loss_days], errors="coerce").to_numpy(float)
            if out.graft_loss_days and out.graft_loss_days in pats.columns else nan)
    follow = (pd.to_numeric(pats[out.followup_days], errors="coerce").to_numpy(float)
              if out.followup_days and out.followup_days in pats.columns else nan)
    return lost, np.where(lost, loss, np.nan), follow


def survival_table(cohort: Any, event: str = "graft_loss",
                   threshold: float | None = None) -> pd.DataFrame:
    """Time to event per patient: ``patient_id``, ``time_days``, ``event`` (0/1).

    Args:
        cohort: a cohort path or a read cohort.
        event: "graft_loss": time is ``graft_loss_days`` for lost grafts (the end of
            follow-up for a loss without a date, as in :func:`make_labels`),
            ``followup_days`` (censored) otherwise. "poor_status": the composite of graft
            loss and the first yearly horizon with eGFR below ``threshold`` (event at
            K·365.25 days); otherwise censored at the last horizon with a known eGFR (the last
            time the status was seen).
            Use it when graft losses are too few for a Cox model.
        threshold: eGFR cut-off for "poor_status"; default ``study.outcomes.threshold``.

    Patients with no usable time are dropped.
    """
    if event not in ("graft_loss", "poor_status"):
        raise ValueError(f"unknown survival event {event!r}; use 'graft_loss' or 'poor_status'")
    tables = load_cohort(cohort)
    out = tables.study.outcomes
    pats = tables.patients
    if out.followup_days not in pats.columns or out.graft_loss not in pats.columns:
        raise EvaluationError(
            f"{tables.root / 'patients.csv'}: survival needs columns {out.graft_loss!r} and "
            f"{out.followup_days!r}"
        )
    lost, loss_days, follow = loss_and_followup(tables)
    # one rule with the binary tasks: a loss without a date is placed at the end of follow-up
    loss_time = np.where(lost, np.where(np.isfinite(loss_days), loss_days, follow), np.inf)
    time = np.where(lost, loss_time, follow)
    hit = lost.copy()
    if event == "poor_status":
        thr = out.threshold if threshold is None else float(threshold)
        first_poor = np.full(len(pats), np.inf)
        last_seen = np.full(len(pats), np.nan)
        for k in sorted(out.egfr):
            if out.egfr[k] not in pats.columns:
                continue
            egfr = pd.to_numeric(pats[out.egfr[k]], errors="coerce").to_numpy(float)
            day = DAYS_PER_YEAR * k
            poor = np.isfinite(egfr) & (egfr < thr) & ~np.isfinite(first_poor)
            first_poor[poor] = day
            last_seen[np.isfinite(egfr)] = day
        t_event = np.minimum(first_poor, loss_time)
        hit = np.isfinite(t_event)
        time = np.where(hit, t_event, last_seen)
    df = pd.DataFrame({
        "patient_id": pats["patient_id"].astype(str).to_numpy(),
        "time_days": time,
        "event": hit.astype(int),
    })
    return df[np.isfinite(df["time_days"]) & (df["time_days"] > 0)].reset_index(drop=True)
