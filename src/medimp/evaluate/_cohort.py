"""What the evaluation needs from a cohort: the cohort itself, and patient-grouped splits.

The evaluation reads the cohort through :func:`medimp.data.read_cohort` (validation, patient_id
as str) and uses :class:`medimp.data.Cohort` as it is (exam order, imaged exams, truth). The
splits come from :func:`medimp.data.patient_kfold` and every split is checked with
:func:`medimp.data.assert_no_patient_leak`, so that the whole project has one splitter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medimp.data import Cohort, assert_no_patient_leak, patient_kfold, read_cohort
from medimp.errors import MedimpError

__all__ = ["EvaluationError", "check_no_leak", "load_cohort", "patient_splits"]


class EvaluationError(MedimpError):
    """Input the evaluation cannot use; the message names the file/patient and the fix."""


def load_cohort(cohort: Cohort | str | os.PathLike[str]) -> Cohort:
    """The cohort at ``cohort`` (a path, read with :func:`medimp.data.read_cohort`), or
    ``cohort`` itself when it is already a :class:`medimp.data.Cohort`."""
    if isinstance(cohort, Cohort):
        return cohort
    if isinstance(cohort, str | os.PathLike):
        return read_cohort(Path(cohort))
    raise EvaluationError(f"expected a cohort path or medimp.data.Cohort, got {cohort!r}")


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
