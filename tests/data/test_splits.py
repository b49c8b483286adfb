"""Patient-grouped, outcome-stratified splits never put a patient on both sides."""

from __future__ import annotations

import numpy as np
import pytest

from medimp.data.pipeline.splits import (
    SplitLeakError,
    assert_no_patient_leak,
    holdout_split,
    patient_folds,
    patient_kfold,
)


def _rows(n_patients: int = 40, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """1-4 exams per patient; outcome (30 % positive) is a property of the patient."""
    rng = np.random.default_rng(seed)
    groups, y = [], []
    for i in range(n_patients):
        label = int(i % 10 < 3)
        for _ in range(rng.integers(1, 5)):
            groups.append(f"P{i:03d}")
            y.append(label)
    return np.asarray(groups), np.asarray(y)


def test_leak_check_fails_loudly_and_names_the_patient() -> None:
    with pytest.raises(SplitLeakError, match="P007"):
        assert_no_patient_leak(["P001", "P007"], ["P007", "P009"])
    assert issubclass(SplitLeakError, ValueError)
    assert_no_patient_leak(["P001", "P002"], ["P003"])  # no leak: no error


def test_leak_check_compares_ids_as_strings() -> None:
    with pytest.raises(SplitLeakError):
        assert_no_patient_leak([1, 2], ["2"])


def test_kfold_is_grouped_complete_and_stratified() -> None:
    groups, y = _rows()
    folds = list(patient_kfold(groups, y, n_splits=5, seed=0))
    assert len(folds) == 5
    seen_test = np.concatenate([test for _, test in folds])
    assert sorted(seen_test.tolist()) == list(range(len(groups)))  # every row tested once
    overall = y.mean()
    for train, test in folds:
        assert set(groups[train]).isdisjoint(groups[test])
        assert len(np.intersect1d(train, test)) == 0
        assert len(train) + len(test) == len(groups)
        assert set(y[test]) == {0, 1}
        assert abs(y[test].mean() - overall) < 0.2


def test_kfold_repeats_differ_and_seed_reproduces() -> None:
    groups, y = _rows()
    a = list(patient_kfold(groups, y, n_splits=4, seed=1, repeats=2))
    b = list(patient_kfold(groups, y, n_splits=4, seed=1, repeats=2))
    assert len(a) == 8
    for (tr1, te1), (tr2, te2) in zip(a, b, strict=True):
        assert np.array_equal(tr1, tr2) and np.array_equal(te1, te2)
    first = {frozenset(groups[te]) for _, te in a[:4]}
    second = {frozenset(groups[te]) for _, te in a[4:]}
    assert first != second


def test_folds_carry_their_repeat_and_fold_numbers() -> None:
    """Rows of several exams per patient: each repeat tests every row once, whatever the
    fold sizes (the numbers come from the splitter, not from counting test rows)."""
    groups, y = _rows()
    folds = list(patient_folds(groups, y, n_splits=4, seed=1, repeats=3))
    assert [(r, f) for r, f, _, _ in folds] == [(r, f) for r in range(3) for f in range(4)]
    for r in range(3):
        tested = np.concatenate([te for rr, _, _, te in folds if rr == r])
        assert sorted(tested.tolist()) == list(range(len(groups)))
    plain = list(patient_kfold(groups, y, n_splits=4, seed=1, repeats=3))
    for (_, _, tr, te), (tr2, te2) in zip(folds, plain, strict=True):
        assert np.array_equal(tr, tr2) and np.array_equal(te, te2)


def test_kfold_rejects_too_few_patients_and_missing_labels() -> None:
    with pytest.raises(ValueError, match="3 patients"):
        list(patient_kfold(["a", "b", "c"], [0, 1, 0], n_splits=5))
    with pytest.raises(ValueError, match="missing labels"):
        list(patient_kfold(["a", "b", "c"], [0.0, np.nan, 1.0], n_splits=2))
    with pytest.raises(ValueError, match="empty"):
        list(patient_kfold([], [], n_splits=2))


def test_holdout_is_grouped_stratified_and_reproducible() -> None:
    groups, y = _rows()
    train, test = holdout_split(groups, y, test_size=0.25, seed=5)
    assert set(groups[train]).isdisjoint(groups[test])
    assert len(train) + len(test) == len(groups)
    n_test_patients = len(set(groups[test]))
    assert 8 <= n_test_patients <= 12  # 25 % of 40 patients
    assert set(y[test]) == {0, 1} and set(y[train]) == {0, 1}
    again = holdout_split(groups, y, test_size=0.25, seed=5)
    assert np.array_equal(again[1], test)
    other = holdout_split(groups, y, test_size=0.25, seed=6)
    assert not np.array_equal(other[1], test)


def test_holdout_without_labels_and_bad_size() -> None:
    groups, _ = _rows(10)
    train, test = holdout_split(groups, None, test_size=0.3, seed=0)
    assert set(groups[train]).isdisjoint(groups[test]) and len(test) > 0
    with pytest.raises(ValueError, match="test_size"):
        holdout_split(groups, None, test_size=1.5)
