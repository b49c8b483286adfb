"""Embeddings tables: reading, checking against the cohort, and the three sample levels.

A table has columns ``patient_id``, ``exam``, ``level`` ("exam", "patient", "patient_latest";
as written by ``medimp.train.embed``) and features ``e0..e{D-1}``. Baseline tables (clinical,
oracle) use the same layout with named feature columns. The evaluation uses three levels:

* ``exam``: each exam is a sample (its patient's label); predictions are averaged per patient;
* ``patient_mean``: one sample per patient, the mean of its exams' features;
* ``patient_latest``: one sample per patient, its latest exam (the cohort's exam order: days
  after transplant, then study order; :meth:`medimp.data.Cohort.sort_exams`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medimp.data import Cohort
from medimp.evaluate.errors import EvaluationError

__all__ = ["LEVELS", "LevelData", "check_embeddings", "feature_columns", "level_data",
           "read_embeddings"]

LEVELS = ("exam", "patient_mean", "patient_latest")
_ID_COLS = ("patient_id", "exam", "level")


@dataclass
class LevelData:
    """Samples of one level: features ``X``, the patient of each row, and its exam."""

    X: np.ndarray
    patient_id: np.ndarray
    exam: np.ndarray


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The feature columns: ``e0..`` in numeric order if present, else every non-id column."""
    emb = [c for c in df.columns if re.fullmatch(r"e\d+", str(c))]
    if emb:
        return sorted(emb, key=lambda c: int(c[1:]))
    return [c for c in df.columns if c not in _ID_COLS]


def read_embeddings(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Read an embeddings table (DataFrame, ``.parquet`` or ``.csv``) with ids as strings."""
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        where = "embeddings table"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise EvaluationError(f"{path}: embeddings file not found")
        # ids are never NA-parsed: a patient named "NA" stays a patient
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
            path, dtype={"patient_id": str, "exam": str}, keep_default_na=False,
            na_values=[""])
    if "patient_id" not in df.columns:
        raise EvaluationError(f"{where}: no 'patient_id' column; expected the table written by "
                              "medimp.train.embed (patient_id, exam, level, e0..)")
    if "level" not in df.columns:
        df["level"] = "exam"
    if "exam" not in df.columns:
        df["exam"] = None
    df["patient_id"] = df["patient_id"].astype(str)
    df["exam"] = df["exam"].where(df["exam"].isna(), df["exam"].astype(str))
    if not feature_columns(df):
        raise EvaluationError(f"{where}: no feature columns (e0, e1, ...)")
    return df


def check_embeddings(df: pd.DataFrame, method: str, cohort_patients: set[str],
                     needed_patients: set[str]) -> None:
    """Raise ``EvaluationError`` if the table does not fit the cohort or holds NaN.

    Args:
        df: the table (see :func:`read_embeddings`).
        method: name used in the message.
        cohort_patients: every patient of the cohort.
        needed_patients: patients that must have features (those with a known label).
    """
    ids = set(df["patient_id"])
    extra = sorted(ids - cohort_patients)
    if extra:
        raise EvaluationError(
            f"method {method!r}: {len(extra)} patient(s) in the embeddings are not in the cohort "
            f"(e.g. {extra[:5]}); were the embeddings computed on another cohort?"
        )
    missing = sorted(needed_patients - ids)
    if missing:
        raise EvaluationError(
            f"method {method!r}: no embeddings for {len(missing)} patient(s) of the cohort "
            f"(e.g. {missing[:5]}); re-run `medimp embed` on this cohort"
        )
    cols = feature_columns(df)
    values = df[cols].to_numpy(dtype=float)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        rows = df.loc[bad, ["patient_id", "exam"]].astype(str).head(5)
        where = ", ".join(f"patient {p} exam {e}" for p, e in rows.itertuples(index=False))
        raise EvaluationError(
            f"method {method!r}: NaN or infinite values in {int(bad.sum())} embedding row(s) "
            f"({where}); the encoder diverged or the input volume was empty — re-embed"
        )


def _exam_rank(cohort: Cohort, rows: pd.DataFrame) -> np.ndarray:
    """Each row's rank in the cohort's exam order (days after transplant, then study order)."""
    keys = [cohort.exam_sort_key(str(p), str(e))
            for p, e in zip(rows["patient_id"], rows["exam"], strict=True)]
    rank = {k: i for i, k in enumerate(sorted(set(keys)))}
    return np.array([rank[k] for k in keys], dtype=np.int64)


def level_data(df: pd.DataFrame, level: str, tables: Cohort,
               patients: np.ndarray) -> LevelData:
    """Samples of ``level`` for ``patients`` (in that order for patient levels).

    Patient rows already present in the table (``level`` "patient"/"patient_latest") are used
    as they are; otherwise they are computed from the exam rows.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose from {LEVELS}")
    cols = feature_columns(df)
    keep = set(map(str, patients))
    exam_rows = df[(df["level"] == "exam") & df["patient_id"].isin(keep)]
    written = {"patient_mean": "patient", "patient_latest": "patient_latest"}.get(level)
    if level == "exam":
        rows = exam_rows.copy()
        rows["_rank"] = _exam_rank(tables, rows)
        rows = rows.sort_values(["patient_id", "_rank"], kind="stable")
    elif written and (df["level"] == written).any():
        rows = df[(df["level"] == written) & df["patient_id"].isin(keep)]
        rows = rows.drop_duplicates("patient_id").set_index("patient_id").loc[
            list(map(str, patients))].reset_index()
    elif level == "patient_mean":
        grouped = exam_rows.groupby("patient_id")[cols].mean()
        rows = grouped.loc[list(map(str, patients))].reset_index()
        rows["exam"] = None
    else:
        ranked = exam_rows.assign(_rank=_exam_rank(tables, exam_rows))
        ranked = ranked.sort_values(["patient_id", "_rank"], kind="stable")
        rows = ranked.groupby("patient_id").tail(1).set_index("patient_id").loc[
            list(map(str, patients))].reset_index()
    X = rows[cols].to_numpy(dtype=float)
    return LevelData(X=X, patient_id=rows["patient_id"].astype(str).to_numpy(),
                     exam=rows["exam"].astype(str).to_numpy())
