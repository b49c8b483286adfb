"""Findings a person reads: the same problem in many rows becomes one line.

A clinic's export repeats its mistakes: 28 creatinine values in µmol/L in a mg/dL column, 12
``Yes``/``No`` cells in a numeric column, 79 images behind one symlink. :class:`RowFindings`
collects such rows per file x column x problem and reports each group once, with its count and
its first rows; a single row keeps its own line (``exams.csv:5``, patient, exam).
:func:`collapse` does the same after the fact for identical findings about many files of one
folder (the image checks).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medimp.data._errors import Problem

__all__ = ["FIRST_ROWS", "RowFindings", "collapse"]

#: rows named in a grouped finding
FIRST_ROWS = 3


@dataclass
class _Group:
    severity: str
    one: str  # the text when one row has the problem
    problem: Callable[[int, str], str]  # (count, first rows) -> the problem's text
    fix: str
    rows: list[tuple[dict[str, Any], Any]] = field(default_factory=list)


class RowFindings:
    """Problems of single cells, grouped per (file, column, kind of problem)."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str], _Group] = {}

    def add(self, key: tuple[str, str, str], where: dict[str, Any], value: Any, *,
            severity: str, one: str, many: Callable[[int, str], str], fix: str) -> None:
        """One cell: ``key`` is (file, column, kind); ``one`` the text for a single row;
        ``many(count, rows)`` the text when several rows share the problem."""
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(severity, one, many, fix)
        group.rows.append((where, value))

    def emit(self, report: Callable[..., None]) -> None:
        """Report every group (``report(severity, problem, fix, **where)``) and forget them."""
        for (file, _, _), g in self._groups.items():
            if len(g.rows) == 1:
                where, _ = g.rows[0]
                report(g.severity, g.one, g.fix, **where)
                continue
            report(g.severity, g.problem(len(g.rows), first_rows(g.rows)), g.fix,
                   **common_where(file, [w for w, _ in g.rows]))
        self._groups.clear()


def first_rows(rows: list[tuple[dict[str, Any], Any]]) -> str:
    """``line 2 (P001 D15: 'No'), line 3 (P002: 'Yes') and 10 more``."""
    parts = []
    for where, value in rows[:FIRST_ROWS]:
        line = str(where.get("file", "")).rpartition(":")[2]
        who = " ".join(str(where[k]) for k in ("patient", "exam") if where.get(k))
        shown = f": {value!r}" if value is not None else ""
        parts.append(f"line {line}" + (f" ({who}{shown})" if who or shown else ""))
    more = len(rows) - FIRST_ROWS
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def common_where(file: str, wheres: list[dict[str, Any]]) -> dict[str, Any]:
    """The file, and the patient/exam/phase when every row shares it."""
    out: dict[str, Any] = {"file": file}
    for k in ("patient", "exam", "phase"):
        values = {w.get(k) for w in wheres}
        if len(values) == 1 and None not in values:
            out[k] = values.pop()
    return out


def collapse(problems: list[Problem], at_least: int = 3) -> list[Problem]:
    """Identical findings (same severity, problem and fix) about ``at_least`` files or more
    become one, naming their common folder, the count and the first files; order is kept."""
    groups: dict[tuple[str, str, str], list[Problem]] = defaultdict(list)
    for p in problems:
        if p.file and not re.search(r":\d+$", p.file):  # files, not lines of a table
            groups[(p.severity, p.problem, p.fix)].append(p)
    out, done = [], set()
    for p in problems:
        key = (p.severity, p.problem, p.fix)
        same = groups.get(key, [])
        if len(same) < at_least:
            out.append(p)
            continue
        if key in done:
            continue
        done.add(key)
        files = [q.file or "" for q in same]
        folder = os.path.commonpath(files) if all(files) else ""
        if folder in files:
            folder = Path(folder).parent.as_posix()
        shown = ", ".join(f for f in files[:FIRST_ROWS])
        more = f" and {len(files) - FIRST_ROWS} more" if len(files) > FIRST_ROWS else ""
        out.append(replace(
            p, file=(folder or None), patient=_shared(same, "patient"),
            exam=_shared(same, "exam"), phase=_shared(same, "phase"),
            problem=f"{len(same)} files: {p.problem} ({shown}{more})"))
    return out


def _shared(problems: list[Problem], attr: str) -> str | None:
    values = {getattr(p, attr) for p in problems}
    return values.pop() if len(values) == 1 else None
