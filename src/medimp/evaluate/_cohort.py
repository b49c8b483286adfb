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

from medimp.study import Study

__all__ = ["CohortTables", "EvaluationError", "check_no_leak", "load_tables", "patient_splits"]


class EvaluationError(ValueError):
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
        cohort = _read_cohort(Path(cohort))
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
    for train, test in _kfold(np.asarray(patient_ids), np.asarray(y), n_splits, seed, repeats):
        yield repeat, np.asarray(train), np.asarray(test)
        covered += len(test)
        if covered >= n:  # every patient tested once: the next fold starts a new repeat
            repeat, covered = repeat + 1, 0


def check_no_leak(train_groups: np.ndarray, test_groups: np.ndarray) -> None:
    """Raise if a patient is on both sides of a split (``medimp.data.assert_no_patient_leak``)."""
    try:
        from medimp.data import assert_no_patient_leak
    except ImportError:  # until medimp.data lands: the same check
        shared = set(map(str, train_groups)) & set(map(str, test_groups))
        if shared:
            raise EvaluationError(  # noqa: B904 - not a re-raise of the ImportError
                f"patients in train and test of one split: {sorted(shared)[:5]}")
        return
    assert_no_patient_leak(np.asarray(train_groups), np.asarray(test_groups))


def _read_cohort(path: Path) -> Any:
    try:
        from medimp.data import read_cohort
    except ImportError:
        return _read_tables_only(path)
    return read_cohort(path)


def _kfold(groups: np.ndarray, y: np.ndarray, n_splits: int, seed: int, repeats: int):
    try:
        from medimp.data import patient_kfold
    except ImportError:
        from sklearn.model_selection import StratifiedGroupKFold

        def patient_kfold(groups, y, n_splits, seed, repeats=1):  # type: ignore[no-redef]
            for r in range(repeats):
                cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
                yield from cv.split(np.zeros(len(y)), y, groups)
    return patient_kfold(groups, y, n_splits=n_splits, seed=seed, repeats=repeats)


def _read_tables_only(path: Path) -> CohortTables:
    """Tables of a cohort dir without image checks (used only while medimp.data is absent)."""
    from medimp.study import load_study

    def _csv(name: str, required: bool = True) -> pd.DataFrame | None:
        f = path / name
        if not f.is_file():
            if required:
                raise EvaluationError(f"{f}: not found; is {path} a cohort directory?")
            return None
        return pd.read_csv(f, dtype={"patient_id": str, "exam": str})

    manifest = _csv("manifest.csv", required=False)
    return CohortTables(
        root=path,
        study=load_study(path / "study.yaml"),
        patients=_csv("patients.csv"),
        exams=_csv("exams.csv"),
        manifest=manifest if manifest is not None else pd.DataFrame(
            columns=["patient_id", "exam", "phase", "path"]),
        truth=_csv("truth.csv", required=False),
    )
