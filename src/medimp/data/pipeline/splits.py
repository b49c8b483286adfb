"""Patient-grouped, outcome-stratified splits, and a check that no patient leaks.

All exams of one patient are always on the same side of every split (docs/design.md: the original
code split volumes at random, so a patient's own exams were used to test a model trained on
them). Splits are over *rows* (usually exams); ``groups`` gives each row's patient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from medimp.data._errors import MedimpDataError

__all__ = ["SplitLeakError", "assert_no_patient_leak", "holdout_split", "patient_folds",
           "patient_kfold"]


class SplitLeakError(MedimpDataError):
    """A patient appears on both sides of a split."""


def _as_arrays(groups: Sequence[object], y: Sequence[object] | None) -> tuple[np.ndarray, ...]:
    g = np.asarray([str(v) for v in groups], dtype=object)
    if g.size == 0:
        raise ValueError("cannot split an empty set of rows; the cohort has no exams")
    if y is None:
        return g, np.zeros(len(g), dtype=int)
    yy = np.asarray(y)
    if yy.shape != (len(g),):
        raise ValueError(
            f"y has shape {yy.shape} but there are {len(g)} groups; pass one label per row"
        )
    if yy.dtype.kind == "f" and np.isnan(yy).any():
        raise ValueError(
            f"y has {int(np.isnan(yy).sum())} missing labels; drop the rows with unknown outcome "
            "before splitting"
        )
    return g, yy


def _patient_labels(g: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """One label per patient; a patient whose rows disagree is labelled by the first row."""
    out: dict[str, object] = {}
    for gi, yi in zip(g, y, strict=True):
        out.setdefault(gi, yi)
    return out


def patient_kfold(
    groups: Sequence[object],
    y: Sequence[object] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    repeats: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(train_idx, test_idx)`` for ``repeats`` × ``n_splits`` patient-grouped folds.

    The folds of :func:`patient_folds` without their repeat and fold numbers.
    """
    for _, _, train, test in patient_folds(groups, y, n_splits, seed, repeats):
        yield train, test


def patient_folds(
    groups: Sequence[object],
    y: Sequence[object] | None = None,
    n_splits: int = 5,
    seed: int = 0,
    repeats: int = 1,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield ``(repeat, fold, train_idx, test_idx)`` for ``repeats`` × ``n_splits``
    patient-grouped folds.

    Uses scikit-learn's ``StratifiedGroupKFold`` (shuffled, a different seed for each repeat),
    so every patient is in exactly one test fold per repeat and the outcome ratio of each fold is
    as close to the whole as grouping allows. Every fold is checked with
    :func:`assert_no_patient_leak` before it is yielded.

    Args:
        groups: the patient id of each row (exam).
        y: the outcome of each row, used for stratification (``None``: not stratified).
        n_splits: number of folds; at most the number of patients.
        seed: base seed; repeat ``r`` uses a seed drawn from ``default_rng(seed)``.
        repeats: how many times to repeat the K-fold with a new shuffle.

    Raises:
        ValueError: fewer patients than folds, missing labels, or mismatched lengths.
    """
    g, yy = _as_arrays(groups, y)
    n_patients = len(set(g))
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    if n_patients < n_splits:
        raise ValueError(
            f"cannot make {n_splits} patient-grouped folds from {n_patients} patients; "
            "use fewer folds or more patients"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=repeats)
    x = np.zeros((len(g), 1))
    for r in range(repeats):
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=int(seeds[r]))
        for fold, (train, test) in enumerate(cv.split(x, yy, g)):
            assert_no_patient_leak(g[train], g[test])
            yield r, fold, train, test


def holdout_split(
    groups: Sequence[object],
    y: Sequence[object] | None = None,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows once into ``(train_idx, test_idx)`` with whole patients on each side.

    With ``y``, patients are drawn per outcome class (stratified on the patient's label) so that
    both sides keep the outcome ratio; without it, a plain grouped shuffle split.

    Args:
        groups: the patient id of each row.
        y: the outcome of each row (``None``: not stratified).
        test_size: fraction of *patients* in the test side (0 < test_size < 1).
        seed: random seed.
    """
    g, yy = _as_arrays(groups, y)
    if not 0.0 < test_size < 1.0:
        raise ValueError(
            f"test_size must be between 0 and 1 (a fraction of patients), got {test_size}"
        )
    patients = sorted(set(g))
    if len(patients) < 2:
        raise ValueError(f"a hold-out split needs at least 2 patients, got {len(patients)}")
    if y is None:
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train, test = next(gss.split(np.zeros((len(g), 1)), groups=g))
    else:
        rng = np.random.default_rng(seed)
        labels = _patient_labels(g, yy)
        test_patients: set[str] = set()
        by_class: dict[object, list[str]] = {}
        for p in patients:
            by_class.setdefault(labels[p], []).append(p)
        for cls in sorted(by_class, key=str):
            members = by_class[cls]
            k = round(test_size * len(members))
            if len(members) >= 2:  # keep each class on both sides when it can be
                k = min(max(k, 1), len(members) - 1)
            test_patients.update(rng.permutation(np.asarray(members, dtype=object))[:k].tolist())
        if not test_patients:  # every class had a single patient
            test_patients = {str(rng.choice(np.asarray(patients, dtype=object)))}
        mask = np.isin(g, list(test_patients))
        train, test = np.flatnonzero(~mask), np.flatnonzero(mask)
    assert_no_patient_leak(g[train], g[test])
    return train, test


def assert_no_patient_leak(train_groups: Sequence[object], test_groups: Sequence[object]) -> None:
    """Raise :class:`SplitLeakError` if any patient is on both sides of a split.

    Call it on every split you build by hand: a patient's own exams on the training side make
    every test metric optimistic.
    """
    shared = sorted({str(v) for v in train_groups} & {str(v) for v in test_groups})
    if shared:
        shown = ", ".join(shared[:10]) + (
            f" (+{len(shared) - 10} more)" if len(shared) > 10 else ""
        )
        raise SplitLeakError(
            f"{len(shared)} patient(s) appear in both the training and the test side: {shown}; "
            "split by patient (medimp.data.patient_kfold / holdout_split) so that all exams of a "
            "patient stay on one side"
        )
