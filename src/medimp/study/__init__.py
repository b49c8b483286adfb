"""The ``study.yaml`` schema: what the columns of a cohort directory mean.

This package is the base layer of the pipeline: every stage (simulate, data, prompts, train,
evaluate) may import it, and it imports no stage. It describes

* the exams (label, nominal day after transplant, the phrase used in prompts),
* the contrast phases (label, nominal seconds after the bolus),
* the text variables (which table and column, when the value is known, how it becomes words),
* the outcome columns and the default "poor graft status" threshold.

By role: :mod:`~medimp.study.schema` (the pydantic models), :mod:`~medimp.study.defaults`
(MEDIMP's defaults), :mod:`~medimp.study.files` (``load_study``, ``save_study``),
:mod:`~medimp.study.errors` (``StudyError``). Import the names from ``medimp.study``.

The defaults reproduce MEDIMP (Milecki et al., MIDL 2023): donor age under 65 / 65 or more;
GFR extremely low <15, very low <30, low <45, medium <60, high >=60 mL/min/1.73 m²;
creatinine variability minor / marked.
"""

from __future__ import annotations

from medimp.study.defaults import GFR_BINNINGS, GFR_BINS, KDIGO_GFR_BINS, default_study
from medimp.study.errors import StudyError
from medimp.study.files import load_study, save_study
from medimp.study.schema import (
    DEFAULT_RANGES,
    DYNAMIC_PHASE,
    Bin,
    DateColumns,
    DynamicSpec,
    ExamSpec,
    Outcomes,
    PhaseSpec,
    Range,
    Study,
    TextVariable,
)

__all__ = [
    "DEFAULT_RANGES",
    "DYNAMIC_PHASE",
    "GFR_BINNINGS",
    "GFR_BINS",
    "KDIGO_GFR_BINS",
    "Bin",
    "DateColumns",
    "DynamicSpec",
    "ExamSpec",
    "Outcomes",
    "PhaseSpec",
    "Range",
    "Study",
    "StudyError",
    "TextVariable",
    "default_study",
    "load_study",
    "save_study",
]
