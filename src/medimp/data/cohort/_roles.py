"""Checks that follow what a column *is*, not what it is called.

A column's role is the quantity it measures (eGFR, creatinine, an age, days ...,
:mod:`medimp._units`): the unit ``study.yaml``'s ``units:`` declares, the outcome or text
variable it is mapped to, the built-in column names, or the words of its header
(``Âge du donneur (années)`` is an age). Its plausible range is that quantity's (or
``ranges:``'s), so an eGFR of 250 is caught whatever the column is called. Values are checked
in the unit they are written in, then converted to the quantity's unit.

A column whose values fit another unit better (creatinine of 60-250 in a mg/dL column, a
donor age of 660 in years, a CV of 0.11 in %) is named once with the likely unit instead of
one error per row. A numeric text variable without any range is a warning.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from medimp._units import QUANTITIES, Quantity, quantity_of_unit
from medimp.data.cohort._findings import RowFindings
from medimp.study import Range, Study

__all__ = ["check_ranges", "column_roles", "convert_units", "role_of_words"]

#: built-in columns (the simulator's names) and the quantity each measures
_NAMED = {"donor_age": "age", "recipient_age": "age", "egfr": "egfr",
          "creatinine_mg_dl": "creatinine", "creatinine_cv": "creatinine_cv",
          "days_post_transplant": "days", "followup_days": "days", "graft_loss_days": "days",
          "acquisition_s": "seconds"}


def _plain(text: str) -> str:
    """Lower case without accents: ``Âge`` -> ``age``."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def role_of_words(text: str) -> str | None:
    """The quantity a header or variable name speaks of, by its words (None: no idea)."""
    t = _plain(text)
    words = set(re.split(r"[^a-z0-9%]+", t))
    if "gfr" in t or "dfg" in words or "mdrd" in words or "ckd" in t:
        return "egfr"
    if "clear" in t or "clair" in t or words & {"crcl", "clcr", "cockcroft"}:
        return None  # a creatinine clearance (mL/min) is a rate, not a concentration
    if "creat" in t:
        if words & {"cv", "sd", "std", "%"} or "variab" in t or "fluct" in t:
            return "creatinine_cv"
        return "creatinine"
    if words & {"age", "ages"}:
        return "age"
    return None


def _mapped_roles(study: Study) -> dict[str, str]:
    """Column -> quantity name from what study.yaml maps it to (an eGFR outcome, a day
    count) and the built-in names: no unit can make such a column another quantity."""
    roles: dict[str, str] = {}
    out = study.outcomes
    for col in out.egfr.values():
        roles[col] = "egfr"
    for col in (out.graft_loss_days, out.followup_days, "days_post_transplant"):
        if col:
            roles[col] = "days"
    for col, q in _NAMED.items():
        roles.setdefault(col, q)
    return roles


def column_roles(study: Study) -> dict[str, Quantity]:
    """Column -> the quantity it measures, for every column study.yaml says something of."""
    roles = _mapped_roles(study)
    for v in study.variables:
        if v.kind == "numeric" and v.column not in roles:
            role = role_of_words(v.column) or role_of_words(v.name)
            if role:
                roles[v.column] = role
    for col in [*study.baseline_columns, *study.exam_columns]:
        if col not in roles and (role := role_of_words(col)):
            roles[col] = role
    result = {c: QUANTITIES[q] for c, q in roles.items()}
    for col, unit in study.units.items():  # a declared unit decides (months: age or days?)
        q = quantity_of_unit(unit, hint=roles.get(col) or role_of_words(col))
        if q is not None:
            result[col] = q
    return result


def _unit(study: Study, col: str, q: Quantity) -> str:
    unit = study.units.get(col)
    return unit if unit in q.factors else q.unit


def _range_in(q: Quantity | None, unit: str | None, rng: Range) -> str:
    if q is None or unit is None or unit == q.unit:
        return f"{rng}" + (f" {q.unit}" if q else "")
    lo = "-inf" if rng.min is None else f"{q.in_unit(unit, rng.min):.3g}"
    hi = "+inf" if rng.max is None else f"{q.in_unit(unit, rng.max):.3g}"
    return f"[{lo}, {hi}] {unit} ({rng} {q.unit})"


def _fit(values: np.ndarray, q: Quantity, unit: str) -> float:
    assert q.typical is not None
    lo, hi = q.typical
    v = values * q.factors[unit]
    return float(np.mean((v >= lo) & (v <= hi)))


def better_unit(values: np.ndarray, q: Quantity, unit: str) -> str | None:
    """Another unit of ``q`` that nine values in ten fit when fewer than half fit ``unit``
    (by the quantity's typical range); None when ``unit`` is fine or nothing fits better."""
    if q.typical is None or len(values) < 3:
        return None
    if _fit(values, q, unit) >= 0.5:
        return None
    scores = {u: _fit(values, q, u) for u in q.factors if u != unit}
    best = max(scores, key=lambda u: scores[u], default=None)
    return best if best is not None and scores[best] >= 0.9 else None


def check_ranges(study: Study, tables: dict[str, pd.DataFrame | None],
                 report: Callable[..., None],
                 where: Callable[[pd.DataFrame, int, str], dict[str, Any]]) -> None:
    """Report values outside the plausible range of their column's role (grouped per column),
    columns whose values fit another unit better (once), and numeric text variables without
    any range (``report(severity, problem, fix, **where)``)."""
    roles = column_roles(study)
    mapped = _mapped_roles(study)
    for c, unit in study.units.items():
        declared = quantity_of_unit(unit, hint=mapped.get(c))
        if c in mapped and declared is not None and declared.name != mapped[c]:
            units = ", ".join(QUANTITIES[mapped[c]].factors)
            report("error", f"units: declares {unit} (a unit of {declared.name}) for column "
                   f"{c!r}, which study.yaml reads as {mapped[c]}",
                   f"declare one of its units ({units}) or remove it from units:",
                   file="study.yaml")
            roles[c] = QUANTITIES[mapped[c]]
    findings = RowFindings()
    for name in ("exams", "patients"):
        df = tables.get(name)
        if df is None:
            continue
        for c in df.columns:
            _check_column(study, df, c, f"{name}.csv", q=roles.get(c), findings=findings,
                          report=report, where=where)
    findings.emit(report)
    for v in study.variables:
        df = tables.get(v.table)
        if (v.kind != "numeric" or df is None or v.column not in df.columns
                or v.column in study.ranges):  # a range turned off on purpose
            continue
        if _range_of(study, v.column, roles.get(v.column)) is None:
            report("warning", f"column {v.column!r} of text variable {v.name!r} has no plausible "
                   "range (medimp does not know what it measures)",
                   f"add ranges: {{{v.column!r}: {{min: .., max: ..}}}} to study.yaml, or its "
                   "unit under units:", file=f"{v.table}.csv")


def _range_of(study: Study, col: str, q: Quantity | None) -> Range | None:
    if col in study.ranges:
        return study.ranges[col]
    if col in study.outcomes.egfr.values() and "egfr" in study.ranges:
        return study.ranges["egfr"]
    return Range(min=q.plausible[0], max=q.plausible[1]) if q is not None else None


def _check_column(study: Study, df: pd.DataFrame, c: str, file: str, *, q: Quantity | None,
                  findings: RowFindings, report: Callable[..., None],
                  where: Callable[[pd.DataFrame, int, str], dict[str, Any]]) -> None:
    rng = _range_of(study, c, q)
    if rng is None:
        return
    unit = _unit(study, c, q) if q is not None else None
    raw = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
    factor = q.factors[unit] if q is not None and unit is not None else 1.0
    finite = np.isfinite(raw)
    outside = [i for i in np.flatnonzero(finite) if float(raw[i] * factor) not in rng]
    shown = _range_in(q, unit, rng)
    likely = better_unit(raw[finite], q, unit) if q is not None and unit is not None else None
    if likely is not None:
        assert q is not None
        n, lines = len(outside), ", ".join(str(where(df, int(i), file)["file"].rpartition(":")[2])
                                           for i in outside[:3])
        what = (f"{n} of {int(finite.sum())} values are outside the plausible range {shown} "
                f"(lines {lines}{' ...' if n > 3 else ''}); " if n else "")
        median = float(np.median(raw[finite]))
        report(study.out_of_range if n else "warning",
               f"column {c!r}: {what}its values (median {median:g}) fit {likely} better than "
               f"{unit}", f"if they are {likely}, declare units: {{{c!r}: {likely}}} in "
               f"study.yaml (converted to {q.unit} on read); otherwise correct them",
               file=file)
        return
    for i in outside:
        v = float(raw[i])
        findings.add(
            (file, c, "range"), where(df, int(i), file), f"{v:g}", severity=study.out_of_range,
            one=f"column {c!r}: {v:g} is outside the plausible range {shown}",
            many=lambda n, rows, c=c, shown=shown: (
                f"column {c!r}: {n} values are outside the plausible range {shown}: {rows}"),
            fix=f"correct the value (a typo, or another unit?), leave it empty when unknown, or "
                f"set ranges: {{{c}: {{min: .., max: ..}}}} in study.yaml")


def convert_units(study: Study, tables: dict[str, pd.DataFrame | None]) -> None:
    """Values of the columns with a declared unit, in place, in their quantity's unit (after
    :func:`check_ranges`, so that messages show the values as written)."""
    roles = column_roles(study)
    for df in tables.values():
        if df is None:
            continue
        for c in study.units:
            q = roles.get(c)
            if c in df.columns and q is not None:
                factor = q.factors[_unit(study, c, q)]
                if not math.isclose(factor, 1.0):
                    df[c] = pd.to_numeric(df[c], errors="coerce") * factor
