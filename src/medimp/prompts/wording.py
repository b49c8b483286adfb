"""Prompts a clinician would write: grammatical templates, bins stated with ranges and units.

MEDIMP's original words read badly ("The kidney donor was low years of age.", "Creatinine levels
displayed fluctuating fluctuations.", "at the two weeks check-up"; the default study's words now
read as English) and hide the bin edges.
:func:`clinician_study` rewrites a study's MEDIMP variables (matched by name: ``donor_age``,
``gfr``, ``creatinine_variability``) into sentences such as

    "The kidney came from a donor aged 65 years or older. eGFR was 45-59 mL/min/1.73 m² at the
    one-month check-up. Serum creatinine varied by less than 15% (coefficient of variation)
    in the preceding weeks."

with the same cut points as the study's bins (so the facts are the same), or with finer bins
(``fine_bins=True``). Other variables are kept as they are. Exam phrases become "two-week",
"one-month", "three-month", "one-year" (from each exam's nominal day).

The original wording (the study's templates and, for reproduction, a cohort's own
``gpt_augs.txt``) stays the default everywhere: ``wording="original"``.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np

from medimp.study import Bin, Study, TextVariable

__all__ = ["WORDINGS", "Wording", "clinician_study", "exam_phrase", "nearest_description_accuracy",
           "range_bins", "study_for"]

Wording = Literal["original", "clinician", "clinician_fine"]
WORDINGS: tuple[str, ...] = ("original", "clinician", "clinician_fine")

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve"]

GFR_UNIT = "mL/min/1.73 m²"
FINE_GFR_CUTS = [15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 75, 90]
FINE_AGE_CUTS = [40, 50, 60, 65, 70]
FINE_CV_CUTS = [5, 10, 15, 20, 30]

_TEMPLATES = {
    "donor_age": ("age", "The kidney came from a donor aged {age}."),
    "gfr": ("gfr", "eGFR was {gfr} at the {date} check-up."),
    "creatinine_variability": ("adj", "Serum creatinine varied by {adj} (coefficient of "
                               "variation) in the preceding weeks."),
}
_UNITS = {"donor_age": " years", "gfr": f" {GFR_UNIT}", "creatinine_variability": "%"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def range_bins(cuts: list[float], unit: str, *, integer: bool = True) -> list[Bin]:
    """Bins at ``cuts`` labelled with their ranges: "below 15 …", "15-29 …", "90 … or above".

    ``integer``: values are reported as whole numbers, so [15, 30) reads "15-29"; otherwise
    "15 to under 30".
    """
    cuts = sorted(float(c) for c in cuts)
    if not cuts:
        raise ValueError("range_bins needs at least one cut point")
    pct = unit == "%"
    bins = [Bin(label=f"less than {_num(cuts[0])}{unit}" if pct
                else f"below {_num(cuts[0])}{unit}", upper=cuts[0])]
    for lo, hi in itertools.pairwise(cuts):
        if integer and float(lo).is_integer() and float(hi).is_integer():
            label = f"{_num(lo)}-{_num(hi - 1)}{unit}"
        else:
            label = f"{_num(lo)} to under {_num(hi)}{unit}"
        bins.append(Bin(label=label, upper=hi))
    bins.append(Bin(label=f"{_num(cuts[-1])}{unit} or more" if pct
                    else f"{_num(cuts[-1])}{unit} or above"))
    return bins


def exam_phrase(days: int) -> str:
    """A check-up's name from its nominal day: 15 -> "two-week", 30 -> "one-month", …"""
    if days < 28:
        n, unit = max(round(days / 7), 1), "week"
    elif days < 330:
        n, unit = max(round(days / 30.44), 1), "month"
    else:
        n, unit = max(round(days / 365.25), 1), "year"
    word = _WORDS[n] if n < len(_WORDS) else str(n)
    return f"{word}-{unit}"


def _rewrite(var: TextVariable, fine: bool) -> TextVariable:
    if var.name not in _TEMPLATES or var.kind != "numeric" or not var.bins:
        return var
    slot, template = _TEMPLATES[var.name]
    unit = _UNITS[var.name]
    if fine:
        cuts = {"donor_age": FINE_AGE_CUTS, "gfr": FINE_GFR_CUTS,
                "creatinine_variability": FINE_CV_CUTS}[var.name]
    else:
        cuts = [b.upper for b in var.bins if b.upper is not None]
    integer = var.name != "creatinine_variability"
    bins = range_bins(list(cuts), unit, integer=integer)
    if var.name == "donor_age":
        bins = [b.model_copy(update={"label": b.label.replace("below ", "under ")
                                     .replace(" years or above", " years or older")})
                for b in bins]
    return var.model_copy(update={"slot": slot, "template": template, "bins": bins,
                                  "synonyms": {}})


def clinician_study(study: Study, fine_bins: bool = False) -> Study:
    """``study`` with clinician wording (see the module docstring); other variables kept.

    Args:
        study: a cohort's study (its MEDIMP variables are rewritten).
        fine_bins: finer bins (eGFR in 5-unit steps up to 60; donor age by decade; creatinine
            variation in 5-point steps) instead of the study's cut points.
    """
    exams = [e.model_copy(update={"phrase": exam_phrase(e.days)}) for e in study.exams]
    variables = [_rewrite(v, fine_bins) for v in study.variables]
    return Study.model_validate({**study.model_dump(), "exams": [e.model_dump() for e in exams],
                                 "variables": [v.model_dump() for v in variables]})


def study_for(study: Study, wording: str) -> Study:
    """The study whose templates and bins ``wording`` asks for (``original``: unchanged)."""
    if wording == "original":
        return study
    if wording == "clinician":
        return clinician_study(study)
    if wording == "clinician_fine":
        return clinician_study(study, fine_bins=True)
    raise ValueError(f"unknown prompt wording {wording!r}; choose one of {list(WORDINGS)}")


def nearest_description_accuracy(embeddings: np.ndarray) -> float:
    """How well text embeddings tell distinct descriptions apart (leave one variant out).

    Args:
        embeddings: ``[K, N, E]``: K distinct descriptions (sets of facts), each written in N
            paraphrase variants (variant i of every description uses the same sentence frames).

    Returns:
        The share of (description, variant) pairs whose embedding is closest (cosine) to its own
        description's centroid, the centroids being computed without that variant (for every
        description, so the variant's own wording helps no centroid). Chance is 1 / K.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"expected [K >= 2 descriptions, N >= 2 variants, E], got {x.shape}")
    x = x / np.linalg.norm(x, axis=-1, keepdims=True).clip(min=1e-12)
    k, n, _ = x.shape
    hits = 0
    for i in range(n):
        others = np.delete(x, i, axis=1).mean(axis=1)  # [K, E]
        others /= np.linalg.norm(others, axis=-1, keepdims=True).clip(min=1e-12)
        pred = np.argmax(x[:, i] @ others.T, axis=1)
        hits += int((pred == np.arange(k)).sum())
    return hits / (k * n)
