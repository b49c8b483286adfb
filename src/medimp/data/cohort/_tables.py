"""Reading one cohort table (``manifest.csv``, ``exams.csv``, ``patients.csv``) into a typed
DataFrame, and the per-row checks: ragged lines, required columns, ids, numbers, duplicates.

Every problem goes to a :class:`Collector` (nothing raises), so that ``read_cohort`` and
``validate_cohort`` can list *every* problem at once.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import AfterValidator, BeforeValidator, ValidationError, create_model

from medimp.data._errors import Problem
from medimp.data.cohort._findings import RowFindings
from medimp.data.cohort._mapping import (
    apply_values,
    delimiter_of,
    read_decimal_commas,
    rename_columns,
)
from medimp.data.cohort._values import ID_COLUMNS, apply_missing_values, read_raw_csv
from medimp.study import Study

MANIFEST_REQUIRED = ("patient_id", "exam", "phase", "path")
EXAMS_REQUIRED = ("patient_id", "exam")
PATIENTS_REQUIRED = ("patient_id",)
#: The id columns of each table (always read as non-empty strings).
REQUIRED = {"manifest": MANIFEST_REQUIRED, "exams": EXAMS_REQUIRED,
            "patients": PATIENTS_REQUIRED}


def _blank_to_none(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str) and not v.strip():
        return None
    return v


def _finite(v: float | None) -> float | None:
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


_Num = Annotated[float | None, BeforeValidator(_blank_to_none)]
_Id = Annotated[str, BeforeValidator(lambda v: "" if _blank_to_none(v) is None else str(v))]


def _row_model(name: str, str_cols: list[str], num_cols: list[str]) -> Any:
    fields: dict[str, Any] = dict.fromkeys(str_cols, (_Id, ...))
    for c in num_cols:
        fields[c] = (Annotated[_Num, AfterValidator(_finite)], None)
    return create_model(name, **fields)


class Collector:
    """Every problem found while reading a cohort (errors and warnings), in order."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, problem: str, fix: str = "", **where: Any) -> None:
        self.problems.append(Problem("error", problem=problem, fix=fix, **where))

    def warning(self, problem: str, fix: str = "", **where: Any) -> None:
        self.problems.append(Problem("warning", problem=problem, fix=fix, **where))

    def report(self, severity: str, problem: str, fix: str = "", **where: Any) -> None:
        """An error or a warning, as ``severity`` says (a setting of study.yaml)."""
        self.problems.append(Problem(severity, problem=problem, fix=fix, **where))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def read_table(path: Path, required: tuple[str, ...], col: Collector,
               study: Study | None = None) -> pd.DataFrame | None:
    """Read one table, every cell as text; only study.yaml's ``missing_values`` (default: the
    empty cell) become NaN, and never in the id columns."""
    name = path.name
    if not path.is_file():
        col.error(f"{name} not found", f"every cohort needs {name} (see docs/data.md)",
                  file=name)
        return None
    try:
        sep = delimiter_of(path)
        ragged = ragged_lines(path, sep)
        if ragged:
            col.error(f"line(s) {ragged[:10]} have a different number of fields than the "
                      "header", "remove the extra/missing separators (a "
                      f"{_SEP_NAMES[sep]} inside a value needs quotes)", file=name)
            return None
        df = read_raw_csv(path, sep)  # no NA parsing: study.yaml's missing_values, below
    except pd.errors.EmptyDataError:
        col.error("file is empty (no header row)", f"write the header: {', '.join(required)}",
                  file=name)
        return None
    except UnicodeDecodeError:
        line, problem, patient = not_utf8(path)
        col.error(problem, f"save {name} as UTF-8 (e.g. `iconv -f latin1 -t utf-8`, or "
                  "'CSV UTF-8' in a spreadsheet)", file=f"{name}:{line}", patient=patient)
        return None
    except (pd.errors.ParserError, csv.Error) as exc:
        col.error(f"not a readable CSV ({exc})", "save it as UTF-8, comma-separated",
                  file=name)
        return None
    df.columns = [str(c).strip() for c in df.columns]
    clash = rename_columns(df, study)
    if clash:
        col.error(f"study.yaml's columns: renames a column to {clash}, which {name} already "
                  "has", "remove one of the two columns or the renaming", file=name)
        return None
    missing = [c for c in required if c not in df.columns]
    if missing:
        fix = f"add the column(s) {missing} to {name}"
        if study is not None and not study.columns:
            fix += " (or name the file's own column under columns: in study.yaml, e.g. " \
                   f"columns: {{'Patient ID': {missing[0]}}}; `medimp init` proposes it)"
        col.error(f"required column(s) {missing} absent (found {list(df.columns)})", fix,
                  file=name)
        return None
    for c in df.columns:
        df[c] = df[c].str.strip()
    if sep != ",":
        read_decimal_commas(df, ID_COLUMNS)
    apply_missing_values(df, study)
    apply_values(df, study)
    return df


_SEP_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def not_utf8(path: Path) -> tuple[int, str, str | None]:
    """Where a file stops being UTF-8: (line number, a one-line problem, the line's patient id
    when the first column is ``patient_id``). Call after a ``UnicodeDecodeError``."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        pos = exc.start
    else:  # pragma: no cover - the caller saw a decode error
        return 1, "not UTF-8", None
    line = data.count(b"\n", 0, pos) + 1
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    text = data[start:end if end >= 0 else len(data)].decode("latin-1").rstrip("\r")
    column = pos - start + 1
    header = next(csv.reader([data[:data.find(b"\n")].decode("latin-1")]), [])
    fields = next(csv.reader([text]), [])
    patient = fields[0] if header and header[0].strip() == "patient_id" and fields else None
    return line, (f"line {line} is not UTF-8 (byte 0x{data[pos]:02x} at character {column}: "
                  f"{text[:60]!r}; the file looks Latin-1 / Windows-1252 encoded)"), patient


def ragged_lines(path: Path, sep: str = ",") -> list[int]:
    """Line numbers of CSV records whose field count differs from the header's (pandas would
    otherwise silently turn extra leading fields into an index, or fill missing ones)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, None)
        if header is None:
            return []
        return [reader.line_num for rec in reader if rec and len(rec) != len(header)]


def where_of(df: pd.DataFrame, i: int, file: str) -> dict[str, Any]:
    row = df.iloc[i]
    w: dict[str, Any] = {"file": f"{file}:{i + 2}"}
    pid = row.get("patient_id")
    if isinstance(pid, str) and pid:
        w["patient"] = pid
    exam = row.get("exam")
    if isinstance(exam, str) and exam:
        w["exam"] = exam
    phase = row.get("phase")
    if isinstance(phase, str) and phase:
        w["phase"] = phase
    return w


def check_rows(df: pd.DataFrame, file: str, str_cols: list[str], num_cols: list[str],
                col: Collector, *, mapped: set[str] | None = None) -> None:
    """pydantic row validation: ids present, numeric columns numeric and finite (cells that
    are not numbers: one finding per column and kind, with a hint)."""
    model = _row_model(f"{file}_row", str_cols, num_cols)
    cols = [c for c in str_cols + num_cols if c in df.columns]
    findings = RowFindings()
    for i, rec in enumerate(df[cols].to_dict("records")):
        try:
            model.model_validate(rec)
        except ValidationError as exc:
            for err in exc.errors():
                c = str(err["loc"][0]) if err["loc"] else "?"
                not_a_number(findings, file, c, rec.get(c), where=where_of(df, i, file),
                             detail=f" ({err['msg']})", mapped=c in (mapped or ()))
        for c in str_cols:
            if not isinstance(rec.get(c), str) or not rec[c]:
                col.error(f"column {c!r} is empty", f"fill in {c!r}", **where_of(df, i, file))
    findings.emit(col.report)


_DATE = re.compile(r"^\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2})?)?$")
_WORDS = {"yes", "no", "y", "n", "oui", "non", "true", "false", "vrai", "faux", "ja", "nein",
          "si", "positive", "negative", "pos", "neg"}
_NA = {"na", "n/a", "nan", "none", "null", "-", "--", ".", "?", "nd", "n.d.", "unknown",
       "missing", "#n/a", "not available", "inconnu", "nr", "nk"}
_WITH_UNIT = re.compile(r"^[+-]?\d+([.,]\d+)?\s*[^\d\s].*$")


def number_hint(c: str, value: object, mapped: bool = False) -> tuple[str, str, str]:
    """(kind, what it looks like, fix) of a cell that should be a number and is not
    (``mapped``: study.yaml's values: has a map for the column, without this word)."""
    v = str(value).strip()
    low = v.lower()
    if mapped and low not in _NA and not re.match(r"^[+-]?\d+,\d+$", v):
        return ("unmapped", " (a word that values: does not map)",
                f"add {v!r} to the words of {c!r} under values: in study.yaml, declare it "
                "missing (missing_values), or correct the cell")
    if _DATE.match(v):
        return ("date", " (it looks like a date)",
                f"declare the column under dates: in study.yaml (dates are turned into days "
                f"from the transplant date; `medimp init` proposes it), or write a number in "
                f"{c!r}")
    if low in _WORDS:
        return ("words", " (a word)", f"map the words to numbers: values: {{{c!r}: {{Yes: 1, "
                "No: 0}} in study.yaml, or write numbers")
    if re.match(r"^[+-]?\d+,\d+$", v):
        return ("decimal", " (a decimal comma)",
                f"write a decimal point ({v.replace(',', '.')}), or save the file "
                "semicolon-separated: a comma is then read as the decimal mark")
    if low in _NA:
        return ("missing", " (a spelling of 'unknown'?)",
                f"declare it missing: missing_values: ['', {v!r}] in study.yaml")
    if _WITH_UNIT.match(v):
        return ("unit", " (a number with a unit)", "write the number alone; declare the "
                f"column's unit under units: in study.yaml ({c!r}: mg/dL ...)")
    return ("number", "", f"write a number (or leave the cell empty when unknown) in {c!r}")


def not_a_number(findings: RowFindings, file: str, c: str, value: object, *,
                 where: dict[str, Any], detail: str = "", note: str = "",
                 mapped: bool = False) -> None:
    """Add a cell that should hold a number to ``findings`` (grouped by column and hint)."""
    kind, looks, fix = number_hint(c, value, mapped)
    findings.add((file, c, kind), where, value, severity="error",
                 one=f"column {c!r}: {value!r} is not a number{note}{looks or detail}",
                 many=lambda n, rows, c=c, looks=looks, note=note: (
                     f"column {c!r}: {n} values are not numbers{note}{looks}: {rows}"),
                 fix=fix)


def check_duplicates(df: pd.DataFrame, keys: list[str], file: str, col: Collector) -> None:
    dup = df[df.duplicated(keys, keep=False)]
    for _, group in dup.groupby(keys, sort=True):
        lines = [int(i) + 2 for i in group.index]
        first = df.index.get_loc(group.index[0])
        where = where_of(df, first, file)
        where["file"] = file
        col.error(f"duplicate rows for {dict(zip(keys, group.iloc[0][keys], strict=True))} "
                  f"on lines {lines}", "keep one row per " + "/".join(keys), **where)


def numeric_columns(study: Study, table: str, df: pd.DataFrame) -> list[str]:
    cols = [v.column for v in study.variables if v.table == table and v.kind == "numeric"]
    if table == "exams":
        cols.append("days_post_transplant")
    if table == "manifest":
        cols.append("acquisition_s")
    if table == "patients":
        cols += study.outcomes.columns()
    return [c for c in dict.fromkeys(cols) if c in df.columns]


def coerce_other_columns(df: pd.DataFrame, skip: set[str], file: str,
                          col: Collector, *, mapped: set[str] | None = None) -> None:
    """Columns not described by study.yaml: numeric when every filled cell is numeric; an error
    when a mostly numeric column holds a few words (a typo that would silently become text)."""
    for c in df.columns:
        if c in skip:
            continue
        filled = df[c].dropna()
        if filled.empty:
            df[c] = pd.to_numeric(df[c], errors="coerce")
            continue
        num = pd.to_numeric(filled, errors="coerce")
        bad = num.isna()
        if not bad.any():
            df[c] = pd.to_numeric(df[c], errors="coerce")
        elif bad.sum() < len(filled) / 2:
            findings = RowFindings()
            for i in filled.index[bad.to_numpy()]:
                not_a_number(findings, file, c, df.at[i, c],
                             where=where_of(df, df.index.get_loc(i), file),
                             note=" (the column is otherwise numeric)",
                             mapped=c in (mapped or ()))
            findings.emit(col.report)


def type_table(df: pd.DataFrame, name: str, study: Study | None, col: Collector) -> None:
    """Check the rows of one table (``name``: manifest, exams, patients) and type it in place:
    ids stay strings; numbers become floats.

    The numeric columns are those study.yaml describes as numeric (and days, acquisition
    times, outcomes); in exams/patients, other columns become numeric when every filled cell
    is a number.
    """
    ids = list(REQUIRED[name])
    num = numeric_columns(study, name, df) if study else []
    mapped = set(study.values) if study is not None else set()
    check_rows(df, f"{name}.csv", ids, num, col, mapped=mapped)
    for c in num:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    if study is not None and name != "manifest":
        cat = {v.column for v in study.variables if v.table == name}
        coerce_other_columns(df, set(ids) | set(num) | cat, f"{name}.csv", col, mapped=mapped)
