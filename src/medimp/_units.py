"""Units of the clinical quantities medimp knows, and their plausible ranges.

A *quantity* (eGFR, serum creatinine, its variability, an age, a duration in days, seconds of
an acquisition) has one unit medimp computes in (the first of its units), the factors that
convert the other units to it, a plausible range (a value outside is a typo or another unit)
and, for some, the range where most real values lie (used to say that a column's values fit
another unit better). ``study.yaml``'s ``units:`` names the unit of a column as written in the
file; values are converted to the quantity's unit when the cohort is read (docs/data.md).

This module is part of the base layer: it imports no stage.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["QUANTITIES", "Quantity", "normalise_unit", "quantity_of_unit", "unit_in_header"]


@dataclass(frozen=True)
class Quantity:
    """A clinical quantity: its units (the first is the one medimp computes in)."""

    name: str
    factors: dict[str, float]  # unit -> factor that converts it to the first unit
    plausible: tuple[float, float]  # in the first unit
    typical: tuple[float, float] | None = None  # most real values (first unit); None: no hint

    @property
    def unit(self) -> str:
        return next(iter(self.factors))

    def in_unit(self, unit: str, value: float) -> float:
        """``value`` of the quantity's own unit expressed in ``unit``."""
        return value / self.factors[unit]


_CREAT = 88.42  # µmol/L per mg/dL of creatinine (molar mass 113.12 g/mol)

QUANTITIES: dict[str, Quantity] = {
    "egfr": Quantity("egfr", {"mL/min/1.73m2": 1.0, "mL/s/1.73m2": 60.0}, (0, 200), (3, 150)),
    "creatinine": Quantity("creatinine", {"mg/dL": 1.0, "µmol/L": 1 / _CREAT,
                                          "mmol/L": 1000 / _CREAT}, (0.1, 30), (0.3, 15)),
    "creatinine_cv": Quantity("creatinine_cv", {"%": 1.0, "fraction": 100.0}, (0, 300),
                              (1, 100)),
    "age": Quantity("age", {"years": 1.0, "months": 1 / 12}, (0, 100), (1, 95)),
    "days": Quantity("days", {"days": 1.0, "weeks": 7.0, "months": 30.4375, "years": 365.25},
                     (0, 36500)),
    "seconds": Quantity("seconds", {"s": 1.0, "min": 60.0, "ms": 0.001}, (0, 7200)),
}

# spellings of each unit (lower case, no spaces, micro sign and Greek mu both as "u")
_SPELLINGS = {
    "mL/min/1.73m2": ["ml/min/1.73m2", "ml/min/1.73m²", "ml/min/1,73m2", "ml/min/1,73m²",
                      "ml/min", "ml/min/1.73"],
    "mL/s/1.73m2": ["ml/s/1.73m2", "ml/s/1.73m²", "ml/s"],
    "mg/dL": ["mg/dl", "mg/100ml"],
    "µmol/L": ["umol/l", "µmol/l", "μmol/l"],
    "mmol/L": ["mmol/l"],
    "%": ["%", "percent", "pct"],
    "fraction": ["fraction", "ratio"],
    "years": ["years", "year", "yrs", "yr", "y", "ans", "an", "années", "annees", "jahre"],
    "months": ["months", "month", "mo", "mois", "monate"],
    "days": ["days", "day", "d", "jours", "j"],
    "weeks": ["weeks", "week", "wk", "semaines"],
    "s": ["s", "sec", "seconds", "second"],
    "min": ["min", "minutes"],
    "ms": ["ms", "milliseconds"],
}
_LOOKUP = {re.sub(r"\s+", "", s.replace("µ", "u").replace("μ", "u")): unit
           for unit, spellings in _SPELLINGS.items() for s in [unit.lower(), *spellings]}


def normalise_unit(text: str) -> str | None:
    """The unit medimp calls ``text`` (``"umol/l"`` -> ``"µmol/L"``), None if unknown."""
    key = unicodedata.normalize("NFC", str(text)).strip().lower()
    key = re.sub(r"\s+", "", key.replace("µ", "u").replace("μ", "u"))
    return _LOOKUP.get(key)


def quantity_of_unit(unit: str, hint: str | None = None) -> Quantity | None:
    """The quantity measured in ``unit`` (a normalised unit); ``hint`` (a quantity name)
    decides when several share the unit (months: an age or a duration)."""
    found = [q for q in QUANTITIES.values() if unit in q.factors]
    named = [q for q in found if q.name == hint]
    if named:
        return named[0]
    return found[0] if len(found) == 1 else None


def unit_in_header(header: str) -> str | None:
    """The unit written in a column header, in parentheses or brackets or as its last word:
    ``Creatinine (µmol/L)`` -> ``µmol/L``; ``Donor age [years]`` -> ``years``."""
    for inner in re.findall(r"[(\[]([^)\]]+)[)\]]", header):
        unit = normalise_unit(inner)
        if unit is not None:
            return unit
    words = header.replace("_", " ").split()
    if len(words) > 1 and len(words[-1]) > 2:  # "Follow-up days", not "egfr y"
        return normalise_unit(words[-1])
    return None
