"""Clinical features: the clinical values known at each exam, as numbers.

One builder for every method that reads the clinical table as numbers (``tabular_clip``'s
tabular tower, the ``clinical_only`` baseline), with one rule for each question:

* which value an exam sees: :meth:`medimp.data.Cohort.value_at` (a value not known at the exam,
  e.g. ``known_at: followup`` or measured at a later exam, is missing there; an outcome never
  enters);
* what missing is: NaN (a consumer fills it: the probe imputes from its training folds,
  ``tabular_clip`` writes 0 plus a missing indicator);
* how a value becomes numbers: a numeric variable as a float, a categorical one as one 0/1
  column per category (study.yaml's categories, else those seen by ``fit``), all NaN when the
  value is missing. A column that study.yaml lists without a kind (``baseline_columns``,
  ``exam_columns``) is numeric when every filled value is a number.

Which columns enter is the consumer's choice: ``"variables"`` (the prompts' text variables,
what ``tabular_clip`` pairs with images) or ``"all"`` (also ``baseline_columns`` and
``exam_columns``, without the variables that are never known at an exam: ``clinical_only``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimp.data.cohort import Cohort, leakage_reason
from medimp.study import Study, TextVariable

__all__ = ["ClinicalFeature", "ClinicalFeatures", "clinical_columns", "clinical_values"]

Include = Literal["variables", "all"]


@dataclass(frozen=True)
class ClinicalFeature:
    """One clinical input: its name, what :meth:`Cohort.value_at` reads, and its kind.

    Attributes:
        name: the feature's name (a variable name, or a column name for ``"all"``).
        source: the study.yaml text variable, or a column of ``baseline_columns`` /
            ``exam_columns``.
        kind: "numeric", "categorical", or None (decided by ``fit`` from the values).
        categories: the categories study.yaml declares (categorical variables).
    """

    name: str
    source: TextVariable | str
    kind: Literal["numeric", "categorical"] | None = None
    categories: tuple[str, ...] | None = None


def _of_variable(var: TextVariable, name: str) -> ClinicalFeature:
    cats = tuple(sorted(str(c) for c in var.categories)) if var.categories else None
    return ClinicalFeature(name, var, var.kind, cats if var.kind == "categorical" else None)


def _never_known(study: Study, var: TextVariable) -> bool:
    return all(leakage_reason(study, var, e) is not None for e in study.exam_names)


def clinical_columns(cohort: Cohort, include: Include = "all") -> list[ClinicalFeature]:
    """The clinical inputs of ``cohort``, in a fixed order.

    Args:
        cohort: the cohort (its study.yaml and the columns its tables have).
        include: ``"variables"``: every text variable (by variable name, never-known ones
            included: they are always missing); ``"all"``: the columns known at transplant
            (``baseline_columns`` and patients.csv variables known at transplant), then those
            of the exam (``exam_columns`` and the other variables), by column name, without
            outcome columns, absent columns and variables never known at an exam.
    """
    study = cohort.study
    if include == "variables":
        return [_of_variable(v, v.name) for v in study.variables]
    outcome = set(study.outcomes.columns())
    base: dict[str, TextVariable | str] = dict.fromkeys(study.baseline_columns, "")
    exam: dict[str, TextVariable | str] = dict.fromkeys(study.exam_columns, "")
    for var in study.variables:
        if _never_known(study, var):
            continue
        target = base if var.table == "patients" and var.known_at == "transplant" else exam
        if var.column not in base and var.column not in exam:
            target[var.column] = var
    tables = {"patients": cohort.patients.columns, "exams": cohort.exams.columns}
    out: list[ClinicalFeature] = []
    for table, cols in (("patients", base), ("exams", exam)):
        for column, var in cols.items():
            if column in outcome:
                continue
            if isinstance(var, TextVariable):
                out.append(_of_variable(var, column))
            elif column in tables[table]:
                out.append(ClinicalFeature(column, column))
    return out


def clinical_values(cohort: Cohort, keys: Sequence[tuple[str, str]],
                    features: Sequence[ClinicalFeature]) -> pd.DataFrame:
    """The value of each feature as known at each exam (NaN: missing or not yet known).

    Returns:
        One row per (patient_id, exam) of ``keys`` (a MultiIndex, in that order), one column
        per feature (object dtype: numbers and category labels as in the tables).
    """
    idx = pd.MultiIndex.from_tuples([(str(p), str(e)) for p, e in keys],
                                    names=["patient_id", "exam"])
    data = {f.name: [_nan_if_none(cohort.value_at(f.source, p, e)) for p, e in idx]
            for f in features}
    return pd.DataFrame(data, index=idx, columns=[f.name for f in features], dtype=object)


def _nan_if_none(value: Any) -> Any:
    return np.nan if value is None else value


def _is_numeric(values: pd.Series) -> bool:
    num = pd.to_numeric(values, errors="coerce")
    return bool(values.notna().any()) and num.notna().sum() >= values.notna().sum()


class ClinicalFeatures:
    """Clinical values known at each exam as a float table (NaN = missing).

    Follows scikit-learn's contract: ``__init__`` stores options, ``fit`` learns each
    feature's kind and categories (from study.yaml, else from the values it sees) and
    returns self, learned state ends in ``_``.

    Args:
        include: ``"all"`` or ``"variables"`` (see :func:`clinical_columns`).
        sep: joins a categorical feature's name and category in one-hot column names.
    """

    def __init__(self, include: Include = "all", sep: str = "_") -> None:
        self.include = include
        self.sep = sep

    def fit(self, cohort: Cohort, keys: Sequence[tuple[str, str]]) -> ClinicalFeatures:
        features = clinical_columns(cohort, self.include)
        raw = clinical_values(cohort, keys, features)
        self.features_: list[ClinicalFeature] = []
        for f in features:
            kind = f.kind or ("numeric" if _is_numeric(raw[f.name]) else "categorical")
            cats = f.categories
            if kind == "categorical" and cats is None:
                seen = raw[f.name].dropna().astype(str)
                cats = tuple(sorted(set(seen)))
            self.features_.append(ClinicalFeature(f.name, f.source, kind, cats))
        self.groups_: list[tuple[str, list[str]]] = [
            (f.name, [f.name] if f.kind == "numeric"
             else [f"{f.name}{self.sep}{c}" for c in f.categories or ()])
            for f in self.features_]
        self.columns_: list[str] = [c for _, cols in self.groups_ for c in cols]
        return self

    def transform(self, cohort: Cohort, keys: Sequence[tuple[str, str]]) -> pd.DataFrame:
        """One row per key (columns patient_id, exam, then ``columns_``), NaN where missing."""
        raw = clinical_values(cohort, keys, self.features_)
        parts: list[Any] = []
        for f, (_, cols) in zip(self.features_, self.groups_, strict=True):
            values = raw[f.name]
            if f.kind == "numeric":
                parts.append(pd.to_numeric(values, errors="coerce").astype(float).rename(f.name))
                continue
            text = values.astype("string")
            missing = text.isna().to_numpy()
            for c, col in zip(f.categories or (), cols, strict=True):
                onehot = (text == c).fillna(False).to_numpy().astype(float)
                onehot[missing] = np.nan
                parts.append(pd.Series(onehot, index=raw.index, name=col))
        feats = (pd.concat(parts, axis=1) if parts
                 else pd.DataFrame(index=raw.index, columns=[], dtype=float))
        return feats.reset_index()
