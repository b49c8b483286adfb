"""Early prediction: embeddings restricted to the exams acquired up to day D after transplant.

Clinicians need a prognosis early, not after the last exam. :func:`exams_up_to_day` keeps, in
an embeddings table (``medimp.train.embed`` layout), only the exam rows whose
``days_post_transplant`` (else the study's nominal day) is at most ``day``, and recomputes the
patient rows from them: ``patient`` = mean of those exams, ``patient_latest`` = the latest of
them. The result is an ordinary embeddings table, so ``evaluate(cohort, {"medimp@D30": table})``
evaluates the "exams up to day D" level with the unchanged protocol.

A patient with no exam by day D has no image information at that time. Such patients keep one
placeholder row, the mean over the other patients' kept rows (label-free, so nothing leaks),
so that every patient is still scored (the protocol's patient set does not change);
:func:`exams_up_to_day` reports how many there were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimp.evaluate.embeddings import feature_columns, read_embeddings
from medimp.evaluate.errors import EvaluationError

__all__ = ["exam_days", "exams_up_to_day"]


def exam_days(exams: pd.DataFrame, nominal: dict[str, int] | None = None
              ) -> dict[tuple[str, str], float]:
    """(patient_id, exam) -> days after transplant (the exam's nominal day if not recorded)."""
    nominal = nominal or {}
    out: dict[tuple[str, str], float] = {}
    days = (pd.to_numeric(exams["days_post_transplant"], errors="coerce").to_numpy(dtype=float)
            if "days_post_transplant" in exams.columns else np.full(len(exams), np.nan))
    for pid, exam, d in zip(exams["patient_id"].astype(str), exams["exam"].astype(str), days,
                            strict=True):
        out[(pid, exam)] = float(d) if np.isfinite(d) else float(nominal.get(exam, np.nan))
    return out


def exams_up_to_day(embeddings: pd.DataFrame, exams: pd.DataFrame, day: float, *,
                    nominal: dict[str, int] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The embeddings of the exams acquired by ``day``, and the patients that had none.

    Args:
        embeddings: a table with ``patient_id``, ``exam``, ``level`` and ``e0..`` columns.
        exams: the cohort's exams.csv (``patient_id``, ``exam``, ``days_post_transplant``).
        day: last day after transplant whose exams are used (inclusive).
        nominal: exam name -> nominal day, used where ``days_post_transplant`` is missing
            (e.g. ``{e.name: e.days for e in study.exams}``).

    Returns:
        (table with exam, patient and patient_latest rows, sorted patient ids that had no exam
        by ``day`` and got the placeholder row).

    Raises:
        EvaluationError: no exam of any patient is acquired by ``day``, or an exam row has no
            known day.
    """
    df = read_embeddings(embeddings)
    cols = feature_columns(df)
    days = exam_days(exams, nominal)
    rows = df[df["level"] == "exam"].copy()
    t = np.array([days.get((p, str(e)), np.nan) for p, e in zip(rows["patient_id"],
                                                                   rows["exam"], strict=True)])
    if np.isnan(t).any():
        bad = rows.loc[np.isnan(t), ["patient_id", "exam"]].head(3).values.tolist()
        raise EvaluationError(f"no day after transplant for exam rows {bad}: add "
                              "days_post_transplant to exams.csv or pass nominal days")
    rows["_t"] = t
    kept = rows[rows["_t"] <= day]
    if kept.empty:
        raise EvaluationError(f"no exam is acquired by day {day:g}; choose a later day")
    patients = sorted(set(df["patient_id"]))
    missing = sorted(set(patients) - set(kept["patient_id"]))
    if missing:
        fill = kept[cols].mean().to_numpy()
        extra = pd.DataFrame(np.tile(fill, (len(missing), 1)), columns=cols)
        extra.insert(0, "_t", np.inf)
        extra.insert(0, "level", "exam")
        extra.insert(0, "exam", "none")
        extra.insert(0, "patient_id", missing)
        kept = pd.concat([kept, extra], ignore_index=True)
    kept = kept.sort_values(["patient_id", "_t"], kind="stable")
    pat = kept.groupby("patient_id", sort=True)[cols].mean().reset_index()
    pat.insert(1, "exam", "mean")
    pat.insert(2, "level", "patient")
    latest = kept.groupby("patient_id", sort=True).tail(1).assign(level="patient_latest")
    out = pd.concat([kept.drop(columns="_t"), pat, latest.drop(columns="_t")],
                    ignore_index=True)[["patient_id", "exam", "level", *cols]]
    return out, missing
