"""The clinical facts an exam's prompts state, as numbers (for soft contrastive targets).

Each text variable of the study gives one column: for a numeric variable the position of the
exam's bin among the variable's bins, in [0, 1] (``index / (bins - 1)``), so neighbouring bins
are close; for a categorical variable the index of its words (compared for equality only);
NaN when the value is missing or not allowed in the exam's prompt. Two exams with the same row
state the same facts. ``medimp.models.fact_similarity`` turns rows into pairwise agreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medimp.prompts.build import _cohort_of, exam_words
from medimp.study import Study

__all__ = ["fact_matrix"]


def _labels(var) -> list[str]:
    if var.kind == "numeric":
        return [b.label for b in var.bins]
    return list(dict.fromkeys(var.categories.values()))


def fact_matrix(study: Study, exams_df, patients_df, keys: Sequence[tuple[str, str]]
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(facts [K, V] float32, ordinal [V] bool)`` for the exams ``keys``.

    Args:
        study: the study whose bins define the facts (e.g. the prompts' wording's study).
        exams_df, patients_df: the cohort tables.
        keys: (patient_id, exam) pairs.
    """
    labels = [_labels(v) for v in study.variables]
    ordinal = np.array([v.kind == "numeric" for v in study.variables], dtype=bool)
    out = np.full((len(keys), len(study.variables)), np.nan, dtype=np.float32)
    cohort = _cohort_of(study, exams_df, patients_df)  # built once, not per exam
    for i, (pid, exam) in enumerate(keys):
        words = exam_words(cohort, str(pid), str(exam))
        for j, var in enumerate(study.variables):
            word = words.get(var.name)
            if word is None:
                continue
            k = labels[j].index(word)
            out[i, j] = k / max(len(labels[j]) - 1, 1) if ordinal[j] else k
    return out, ordinal
