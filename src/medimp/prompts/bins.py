"""Clinical values -> words: numeric bins, categorical maps, synonyms.

Bins follow ``medimp.study.Bin``: a value gets the label of the first bin whose ``upper`` it is
below (the last bin is open). A missing value (NaN, None, empty text) has no words: its sentence
is left out of the prompt, it never becomes the text "nan".
"""

from __future__ import annotations

import math
from numbers import Number

import numpy as np

from medimp.prompts.errors import PromptError
from medimp.study import TextVariable

__all__ = ["bin_label", "is_missing", "value_to_word", "variable_words"]


def is_missing(value: object) -> bool:
    """True for None, NaN, pandas NA/NaT and blank strings."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):  # arrays and other non-scalars are not "missing"
        return False


def bin_label(var: TextVariable, value: float) -> str:
    """Label of the numeric bin holding ``value``."""
    assert var.bins is not None
    for b in var.bins:
        if b.upper is None or value < b.upper:
            return b.label
    raise AssertionError("unreachable: the last bin is open")  # pragma: no cover


def value_to_word(
    var: TextVariable,
    value: object,
    rng: np.random.Generator | None = None,
    where: str = "",
) -> str | None:
    """Words for ``value`` of ``var`` (None if missing).

    Args:
        var: the study variable.
        value: the raw table cell.
        rng: when given, a synonym of the label is drawn (``var.synonyms``); else the label.
        where: "patient P exam E" for error messages.

    Raises:
        PromptError: a numeric variable holding text, or a category with no words.
    """
    prefix = f"{where}: " if where else ""
    if is_missing(value):
        return None
    if var.kind == "numeric":
        if isinstance(value, bool | np.bool_) or not isinstance(value, Number | str):
            raise PromptError(f"{prefix}variable {var.name!r} (column {var.column!r}) is numeric "
                              f"but holds {value!r}; fix the table or declare it categorical")
        try:
            num = float(value)  # type: ignore[arg-type]
        except ValueError as exc:
            raise PromptError(f"{prefix}variable {var.name!r} (column {var.column!r}) is numeric "
                              f"but holds {value!r}; fix the table") from exc
        if not math.isfinite(num):
            return None
        label = bin_label(var, num)
    else:
        assert var.categories is not None
        key = _category_key(value)
        if key not in var.categories:
            raise PromptError(
                f"{prefix}variable {var.name!r} (column {var.column!r}) holds {value!r}, which "
                f"has no words in study.yaml categories {sorted(var.categories)}; add it there"
            )
        label = var.categories[key]
    if rng is not None and var.synonyms.get(label):
        choices = var.synonyms[label]
        return choices[int(rng.integers(len(choices)))]
    return label


def _category_key(value: object) -> str:
    """Table cell -> the key used in ``categories`` (1.0 and 1 both read as "1")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def variable_words(var: TextVariable) -> list[str]:
    """Every word ``var`` can produce (labels and synonyms), e.g. to fill slots in checks."""
    labels = [b.label for b in var.bins] if var.kind == "numeric" and var.bins else []
    if var.kind == "categorical" and var.categories:
        labels = list(dict.fromkeys(var.categories.values()))
    words = list(labels)
    for lab in labels:
        words += [w for w in var.synonyms.get(lab, []) if w not in words]
    return words
