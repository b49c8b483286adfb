"""What the evaluation needs from a cohort: the study, the tables, and patient-grouped splits.

The evaluation reads the cohort through :func:`medimp.data.read_cohort` (validation, patient_id
as str). The splits come from :func:`medimp.data.patient_kfold` and every split is checked with
:func:`medimp.data.assert_no_patient_leak`, so that the whole project has one splitter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data import assert_no_patient_leak, patient_kfold, read_cohort
from medimp.errors import MedimpError
from medimp.study import Study

__all__ = ["CohortTables", "EvaluationError", "check_no_leak", "load_tables", "patient_splits"]


class EvaluationError(MedimpError):
    """Input the evaluation cannot use; the message names the file/patient and the fix."""


@dataclass
class CohortTables:
    """The parts of a cohort the evaluation reads (never the images, except for the report)."""

    root: Path
    study: Study
    patients: pd.DataFrame
    exams: pd.DataFrame
    manifest: pd.DataFrame
    truth: pd.DataFrame | None
    cohort: Any = None  # the medimp.data.Cohort it came from (images, prompts)

    @property
    def exam_order(self) -> dict[str, int]:
        """Exam label -> position in the study's follow-up order (for 'latest exam')."""
        return {name: i for i, name in enumerate(self.study.exam_names)}

    def imaged_exams(self) -> pd.DataFrame:
        """Rows of ``exams.csv`` that have at least one image in the manifest."""
        if self.manifest.empty:
            return self.exams
        keys = self.manifest[["patient_id", "exam"]].drop_duplicates()
        return self.exams.merge(keys, on=["patient_id", "exam"], how="inner")


def load_tables(cohort: Any) -> CohortTables:
    """Read the cohort at ``cohort`` (a path or an already-read ``medimp.data.Cohort``)."""
    if isinstance(cohort, CohortTables):
        return cohort
    if isinstance(cohort, str | os.PathLike):
        cohort = read_cohort(Path(cohort))
    for attr in ("root", "study", "patients", "exams"):
        if not hasattr(cohort, attr):
            raise EvaluationError(f"expected a cohort path or medimp.data.Cohort, got {cohort!r}")
    manifest = getattr(cohort, "manifest", None)
    if manifest is None:
        manifest = pd.DataFrame(columns=["patient_id", "exam", "phase", "path"])
    truth = getattr(cohort, "truth", None)

    def _ids(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df["patient_id"] = df["patient_id"].astype(str)
        if "exam" in df.columns:
            df["exam"] = df["exam"].astype(str)
        return df

    return CohortTables(
        root=Path(cohort.root),
        study=cohort.study,
        patients=_ids(cohort.patients),
        exams=_ids(cohort.exams),
        manifest=_ids(manifest),
        truth=None if truth is None else _ids(truth),
        cohort=cohort,
    )


def patient_splits(
    patient_ids: np.ndarray, y: np.ndarray, n_splits: int, repeats: int, seed: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Repeated, outcome-stratified patient folds: yields (repeat, train_idx, test_idx).

    Indices are into ``patient_ids`` (one entry per patient). Every test index appears exactly
    once per repeat.
    """
    n = len(patient_ids)
    repeat, covered = 0, 0
    for train, test in patient_kfold(np.asarray(patient_ids), np.asarray(y), n_splits=n_splits,
                                     seed=seed, repeats=repeats):
        yield repeat, np.asarray(train), np.asarray(test)
        covered += len(test)
        if covered >= n:  # every patient tested once: the next fold starts a new repeat
            repeat, covered = repeat + 1, 0


def check_no_leak(train_groups: np.ndarray, test_groups: np.ndarray) -> None:
    """Raise if a patient is on both sides of a split (``medimp.data.assert_no_patient_leak``)."""
    assert_no_patient_leak(np.asarray(train_groups), np.asarray(test_groups))
