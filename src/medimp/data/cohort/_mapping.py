"""A clinic's export read as it is: study.yaml's ``columns:``, ``values:`` and ``dates:``.

* ``columns:`` renames a file's columns to medimp's (``Patient ID`` -> ``patient_id``);
* ``values:`` turns words into numbers (``Yes``/``No`` -> 1/0, case-insensitive);
* ``dates:`` turns date columns into days from the transplant date (``days_post_transplant``,
  the outcomes' ``graft_loss_days`` and ``followup_days``);
* the field separator (comma, semicolon, tab) is detected, and a decimal comma in a
  semicolon- or tab-separated file (``49,3``) is read as a decimal point.

``units:`` are converted after the range checks (:mod:`medimp.data.cohort._roles`). Nothing here
writes a file: the export stays as the clinic made it. See docs/data.md.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pandas as pd

from medimp.data.cohort._findings import RowFindings
from medimp.study import Study

__all__ = ["apply_dates", "apply_values", "delimiter_of", "human_date_format",
           "read_decimal_commas", "rename_columns"]

_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def delimiter_of(path: Path) -> str:
    """The field separator of a CSV file: the most frequent of ``,``, ``;`` and tab in its
    header line outside quotes (a comma when none)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        header = fh.readline()
    counts = {}
    for sep in (",", ";", "\t"):
        fields = next(csv.reader([header], delimiter=sep), [])
        counts[sep] = len(fields) - 1
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


def read_decimal_commas(df: pd.DataFrame, skip: tuple[str, ...]) -> None:
    """``49,3`` -> ``49.3`` in place, in the value columns of a file whose fields are not
    comma-separated (there a comma can only be a decimal comma)."""
    for c in df.columns:
        if c in skip:
            continue
        s = df[c]
        hit = s.str.match(_DECIMAL_COMMA, na=False)
        if hit.any():
            df.loc[hit, c] = s[hit].str.replace(",", ".", regex=False)


def rename_columns(df: pd.DataFrame, study: Study | None) -> list[str]:
    """Rename the columns of ``df`` as study.yaml's ``columns:`` says, in place; return the
    targets that a column of that name already holds (a conflict the caller reports)."""
    if study is None or not study.columns:
        return []
    mapping = {src: dst for src, dst in study.columns.items() if src in df.columns}
    targets = list(mapping.values())
    clash = [dst for src, dst in mapping.items()
             if (dst in df.columns and dst != src) or targets.count(dst) > 1]
    if not clash:
        df.rename(columns=mapping, inplace=True)
    return clash


def apply_values(df: pd.DataFrame, study: Study | None) -> None:
    """Words -> numbers as study.yaml's ``values:`` says (case-insensitive), in place."""
    if study is None:
        return
    for c, mapping in study.values.items():
        if c not in df.columns:
            continue
        lower = {str(k).strip().lower(): v for k, v in mapping.items()}
        key = df[c].str.lower()
        hit = key.isin(list(lower))
        if hit.any():
            df[c] = df[c].astype(object)
            df.loc[hit, c] = [str(lower[k]) for k in key[hit]]


def human_date_format(fmt: str) -> str:
    """``%d/%m/%Y`` -> ``dd/mm/yyyy``."""
    return (fmt.replace("%d", "dd").replace("%m", "mm").replace("%Y", "yyyy")
            .replace("%y", "yy"))


def _dates(df: pd.DataFrame, column: str, fmt: str, file: str, *, findings: RowFindings,
           where: Any) -> pd.Series:
    raw = df[column]
    parsed = pd.to_datetime(raw, format=fmt, errors="coerce")
    bad = raw.notna() & parsed.isna()
    human = human_date_format(fmt)
    for i in [int(k) for k in bad.to_numpy().nonzero()[0]]:
        value = raw.iloc[i]
        findings.add((file, column, "date"), where(df, i, file), value, severity="error",
                     one=f"column {column!r}: {value!r} is not a date written {human}",
                     many=lambda n, rows, c=column, h=human: (
                         f"column {c!r}: {n} values are not dates written {h}: {rows}"),
                     fix=f"write the date as {human} (study.yaml dates.format: {fmt!r}) or "
                         "leave it empty when unknown")
    return parsed


def apply_dates(study: Study | None, tables: dict[str, pd.DataFrame | None], col: Any,
                where: Any) -> None:
    """Add the day counts that study.yaml's ``dates:`` describes to the tables, in place:
    exams' ``days_post_transplant``, patients' ``outcomes.graft_loss_days`` and
    ``outcomes.followup_days`` (days from the patient's transplant date)."""
    d = study.dates if study is not None else None
    patients = tables.get("patients")
    if d is None or patients is None or study is None:
        return
    targets = [("patients", d.transplant, None), ("exams", d.exam, "days_post_transplant"),
               ("patients", d.graft_loss, study.outcomes.graft_loss_days),
               ("patients", d.followup, study.outcomes.followup_days)]
    findings = RowFindings()
    parsed: dict[tuple[str, str], pd.Series] = {}
    for table, column, target in targets:
        df = tables.get(table)
        if column is None or df is None:
            continue
        if column not in df.columns:
            col.error(f"date column {column!r} (study.yaml dates) absent from {table}.csv",
                      f"correct the column name under dates: in study.yaml (found "
                      f"{list(df.columns)})", file=f"{table}.csv")
            continue
        if target is not None and target in df.columns:
            col.error(f"{table}.csv has both a {target!r} column and the date column {column!r} "
                      f"that study.yaml's dates: turns into {target!r}",
                      "remove one of the two (or the date from dates:)", file=f"{table}.csv")
            continue
        parsed[(table, column)] = _dates(df, column, d.format, f"{table}.csv",
                                         findings=findings, where=where)
    findings.emit(col.report)
    tx = parsed.get(("patients", d.transplant))
    if tx is None:
        return
    by_pid = dict(zip(patients["patient_id"], tx, strict=True))
    for table, column, target in targets[1:]:
        df = tables.get(table)
        if target is None or column is None or (table, column) not in parsed or df is None:
            continue
        start = df["patient_id"].map(by_pid)
        days = (parsed[(table, column)] - pd.to_datetime(start)).dt.days.astype(float)
        _before_transplant(df, column, days < 0, f"{table}.csv", d.transplant,
                           findings=findings, where=where)
        df[target] = days.where(days >= 0)  # reported above, not again as a range
        lost = parsed[(table, column)].notna() & start.isna()
        findings.emit(col.report)
        if lost.any():
            pids = sorted(set(df.loc[lost, "patient_id"]))
            col.warning(f"{int(lost.sum())} date(s) of column {column!r} without a transplant "
                        f"date ({d.transplant!r}) for patient(s) {pids[:5]}"
                        f"{' ...' if len(pids) > 5 else ''}: their {target} is unknown",
                        "fill in the transplant date in patients.csv", file=f"{table}.csv")


def _before_transplant(df: pd.DataFrame, column: str, before: pd.Series, file: str,
                       transplant: str, *, findings: RowFindings, where: Any) -> None:
    for i in [int(k) for k in before.to_numpy().nonzero()[0]]:
        value = df[column].iloc[i]
        findings.add((file, column, "before"), where(df, i, file), value, severity="error",
                     one=f"column {column!r}: {value!r} is before the patient's transplant date "
                         f"({transplant!r})",
                     many=lambda n, rows, c=column: (
                         f"column {c!r}: {n} dates are before the patient's transplant date "
                         f"({transplant!r}): {rows}"),
                     fix="correct the date or the transplant date (or dates.format in "
                         "study.yaml, if day and month are swapped)")
