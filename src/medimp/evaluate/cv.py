"""Repeated, stratified, patient-grouped cross-validation of a probe.

The splits are drawn once per task over the patients with a known label
(:func:`medimp.data.patient_folds`, the project's one splitter), and shared by every
method and level, so that paired comparisons see the same train/test patients. At the exam
level every exam is a sample labelled with its patient's status; the exams of a test patient
are scored and their probabilities averaged, so that all metrics are per patient (n = patients)
at every level. Every fold is checked for patient leaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medimp.data import Cohort, assert_no_patient_leak, patient_folds
from medimp.evaluate.embeddings import level_data
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.probes import group_mean

__all__ = ["CVResult", "Fold", "Split", "TaskCV", "cross_validate", "make_splits"]


@dataclass(frozen=True)
class Split:
    """One outer fold: indices into the task's patient array."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray


@dataclass
class Fold:
    """What one outer fold did: its patients, the chosen hyper-parameter and threshold."""

    repeat: int
    fold: int
    train_patients: list[str]
    test_patients: list[str]
    param: float
    threshold: float


@dataclass
class CVResult:
    """Out-of-fold predictions of one task × method × level × probe."""

    patients: np.ndarray
    y: np.ndarray
    scores: np.ndarray  # [repeats, n] probability
    decisions: np.ndarray  # [repeats, n] 0/1 with the training-fold threshold
    folds: list[Fold] = field(default_factory=list)
    n_samples: int = 0


def make_splits(patients: np.ndarray, y: np.ndarray, n_splits: int, repeats: int,
                seed: int) -> list[Split]:
    """Draw the outer folds of a task; raise ``EvaluationError`` if the classes are too small."""
    y = np.asarray(y).astype(int)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        raise EvaluationError(
            f"only one class among the {len(y)} patients with a known outcome "
            f"({n_pos} positive, {n_neg} negative); the task cannot be evaluated"
        )
    if min(n_pos, n_neg) < n_splits:
        raise EvaluationError(
            f"{min(n_pos, n_neg)} patient(s) in the smaller class ({n_pos} positive, {n_neg} "
            f"negative) are fewer than the {n_splits} folds; lower --folds or add patients"
        )
    return [Split(repeat=repeat, fold=fold, train=np.sort(train), test=np.sort(test))
            for repeat, fold, train, test in patient_folds(
                np.asarray(patients), y, n_splits=n_splits, seed=seed, repeats=repeats)]


def cross_validate(features: pd.DataFrame, patients: np.ndarray, y: np.ndarray, *,
                   level: str, tables: Cohort, splits: list[Split],
                   make_probe: Callable[[], object]) -> CVResult:
    """Fit ``make_probe()`` on each training fold, score the test fold (per patient).

    Args:
        features: embeddings-table layout (see :mod:`medimp.evaluate.embeddings`).
        patients: the task's patients (known label), as in ``splits``.
        y: their 0/1 labels.
        level: "exam", "patient_mean" or "patient_latest".
        tables: the cohort.
        splits: from :func:`make_splits`.
        make_probe: returns a fresh unfitted probe (``fit(X, y, groups)``, ``predict_proba``,
            ``threshold_``).
    """
    patients = np.asarray(patients).astype(str)
    y = np.asarray(y).astype(int)
    data = level_data(features, level, tables, patients)
    label_of = dict(zip(patients, y, strict=True))
    ys = np.array([label_of[p] for p in data.patient_id])
    n_rep = max(s.repeat for s in splits) + 1
    scores = np.full((n_rep, len(patients)), np.nan)
    decisions = np.zeros((n_rep, len(patients)), dtype=int)
    pos = {p: i for i, p in enumerate(patients)}
    folds = []
    for split in splits:
        tr_p, te_p = set(patients[split.train]), set(patients[split.test])
        tr = np.isin(data.patient_id, list(tr_p))
        te = np.isin(data.patient_id, list(te_p))
        assert_no_patient_leak(data.patient_id[tr], data.patient_id[te])
        probe = make_probe()
        probe.fit(data.X[tr], ys[tr], groups=data.patient_id[tr])
        prob = probe.predict_proba(data.X[te])[:, 1]
        ug, pm = group_mean(prob, data.patient_id[te])
        idx = np.array([pos[g] for g in ug])
        scores[split.repeat, idx] = pm
        decisions[split.repeat, idx] = (pm >= probe.threshold_).astype(int)
        folds.append(Fold(repeat=split.repeat, fold=split.fold,
                          train_patients=sorted(tr_p), test_patients=sorted(te_p),
                          param=float(probe.best_param_), threshold=float(probe.threshold_)))
    if np.isnan(scores).any():
        missing = patients[np.isnan(scores).any(axis=0)]
        raise EvaluationError(f"no out-of-fold prediction for patients {list(missing[:5])}")
    return CVResult(patients=patients, y=y, scores=scores, decisions=decisions, folds=folds,
                    n_samples=len(data.patient_id))


class OuterFolds:
    """What a task's outer splits (``self.splits``) give every comparison of that task: the
    test folds and the corrected-t ratio. Shared by the binary and the eGFR tasks."""

    splits: list[Split]

    @property
    def tests(self) -> list[tuple[int, np.ndarray]]:
        """``(repeat, test indices)`` of each outer fold."""
        return [(s.repeat, s.test) for s in self.splits]

    @property
    def test_train_ratio(self) -> float:
        """Mean ``n_test / n_train`` of the outer folds."""
        return float(np.mean([len(s.test) / len(s.train) for s in self.splits]))


@dataclass
class TaskCV(OuterFolds):
    """Cross-validation output of one task: its splits and each (key, level, probe) result."""

    task: str
    horizon: int
    patients: np.ndarray
    y: np.ndarray
    splits: list[Split]
    results: dict[tuple[str, str, str], CVResult] = field(default_factory=dict)

    def fold_rows(self) -> list[pd.DataFrame]:
        """The train/test patients of every fold (rows of ``folds.parquet``)."""
        return [pd.DataFrame({"task": self.task, "repeat": s.repeat, "fold": s.fold,
                              "side": side, "patient_id": self.patients[idx]})
                for s in self.splits for side, idx in (("train", s.train), ("test", s.test))]
