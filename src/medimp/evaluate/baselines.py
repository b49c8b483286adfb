"""Reference feature tables: ``clinical_only`` and ``oracle``.

Both return the embeddings-table layout (``patient_id``, ``exam``, ``level`` = "exam", features)
so that they go through exactly the same probes and splits as learned embeddings.

* ``clinical_only``: the clinical table at the exam — baseline variables known at transplant
  (``study.baseline_columns`` and text variables with ``known_at: transplant``) and the exam's
  own measurements (``study.exam_columns`` and text variables with ``known_at: exam``). Nothing
  measured after the exam, and no outcome column, ever enters.
* ``oracle``: the simulator's latent truth (``truth.csv``) at the exam. This module is the only
  place in medimp that reads it, and only to draw the ceiling row of the comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimp.evaluate._cohort import CohortTables, EvaluationError

__all__ = ["clinical_features", "oracle_features"]


def _columns(tables: CohortTables) -> tuple[list[str], list[str]]:
    study = tables.study
    outcome = set(study.outcomes.columns())
    base = list(study.baseline_columns)
    exam = list(study.exam_columns)
    for var in study.variables:
        if var.known_at == "followup":  # known only after the exam: never a feature at the exam
            continue
        target = base if var.known_at == "transplant" and var.table == "patients" else exam
        if var.table == "exams" and var.column not in exam:
            exam.append(var.column)
        elif var.table == "patients" and var.column not in target:
            target.append(var.column)
    base = [c for c in dict.fromkeys(base) if c not in outcome and c in tables.patients.columns]
    exam = [c for c in dict.fromkeys(exam) if c not in outcome and c in tables.exams.columns]
    return base, exam


def _encode(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Numeric columns as float; other columns one-hot (missing stays all-NaN)."""
    parts = []
    for c in cols:
        num = pd.to_numeric(df[c], errors="coerce")
        if num.notna().sum() >= df[c].notna().sum() and df[c].notna().any():
            parts.append(num.astype(float).rename(c))
        else:
            dummies = pd.get_dummies(df[c].astype("string"), prefix=c, dtype=float)
            dummies[df[c].isna().to_numpy()] = np.nan
            parts.append(dummies)
    if not parts:
        return pd.DataFrame(index=df.index)
    return pd.concat(parts, axis=1)


def clinical_features(tables: CohortTables) -> pd.DataFrame:
    """The clinical table at each imaged exam, in the embeddings-table layout.

    Missing values are left as NaN: the probe imputes them from its training folds.
    """
    base, exam = _columns(tables)
    if not base and not exam:
        raise EvaluationError(
            f"{tables.root / 'study.yaml'}: no clinical columns to use (baseline_columns, "
            "exam_columns and variables are empty or absent from the tables)"
        )
    exams = tables.imaged_exams()[["patient_id", "exam", *exam]]
    pats = tables.patients[["patient_id", *base]]
    rows = exams.merge(pats, on="patient_id", how="left")
    feats = _encode(rows, [*base, *exam])
    out = pd.concat([rows[["patient_id", "exam"]].reset_index(drop=True),
                     feats.reset_index(drop=True)], axis=1)
    out.insert(2, "level", "exam")
    return out


def oracle_features(tables: CohortTables) -> pd.DataFrame | None:
    """The latent truth at each exam (``truth.csv``), or ``None`` for a real cohort."""
    truth = tables.truth
    if truth is None or truth.empty:
        return None
    cols = [c for c in truth.columns if c not in ("patient_id", "exam", "level")]
    num = truth[cols].apply(pd.to_numeric, errors="coerce")
    num = num.loc[:, num.notna().any() & (num.std(skipna=True) > 0)]
    if num.empty:
        return None
    keys = truth[["patient_id", "exam"]] if "exam" in truth.columns else truth[["patient_id"]]
    out = pd.concat([keys.reset_index(drop=True), num.reset_index(drop=True)], axis=1)
    if "exam" not in out.columns:  # per-patient truth: the same values at every imaged exam
        out = tables.imaged_exams()[["patient_id", "exam"]].merge(out, on="patient_id")
    out = out.merge(tables.imaged_exams()[["patient_id", "exam"]], on=["patient_id", "exam"])
    out.insert(2, "level", "exam")
    return out
