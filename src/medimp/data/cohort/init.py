"""``medimp init FOLDER``: a commented study.yaml and a manifest for a clinic's own export.

The folder holds the clinic's tables as exported (``patients.csv``: one row per patient,
``exams.csv``: one row per exam; any column names, units, dates, ``Yes``/``No``, ``NA``) and
its image tree as the lab stores it. ``init_cohort`` reads them and writes

* ``study.yaml``: the clinic's columns mapped to medimp's roles by their header words, units
  and values (patient id, exam, eGFR, creatinine, donor age, graft loss, dates ...), with a
  ``values:`` map for words (Yes/No -> 1/0), ``units:`` per column (converted on read),
  ``dates:`` (transplant, exam, graft-loss and last-follow-up dates and their format -> days),
  the exams found in the tables with their nominal days, and each guess marked ``# review``;
* ``manifest.csv``: one row per image found in the tree (:mod:`medimp.data.cohort._layout`),
  with the path patterns shown for confirmation.

Nothing of the export is changed; ``medimp validate`` then says what is left (docs/data.md).
"""

from __future__ import annotations

import datetime
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from medimp._io import atomic_path
from medimp._units import QUANTITIES, unit_in_header
from medimp.data._errors import MedimpDataError
from medimp.data.cohort._layout import Layout, exam_key, propose_manifest
from medimp.data.cohort._mapping import delimiter_of, read_decimal_commas
from medimp.data.cohort._roles import _plain, role_of_words
from medimp.data.cohort._tables import _NA, _WORDS, not_utf8
from medimp.data.cohort._values import read_raw_csv
from medimp.study import Study, default_study

__all__ = ["InitResult", "init_cohort"]

REVIEW = "# review"
_DATE_FORMATS = ("%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d", "%d.%m.%Y", "%d-%m-%Y", "%Y/%m/%d",
                 "%d/%m/%y")
_YES = {"yes", "y", "oui", "true", "vrai", "ja", "si", "positive", "pos", "1"}
_PHRASES = {15: "two-week", 30: "first month", 91: "third month", 182: "sixth month",
            365: "first year", 730: "second year"}


@dataclass
class InitResult:
    """What ``init_cohort`` wrote and guessed."""

    folder: Path
    study: Study
    study_path: Path
    manifest_path: Path
    layout: Layout
    guesses: list[str] = field(default_factory=list)  # "column -> role (why)"

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "study": str(self.study_path),
                "manifest": str(self.manifest_path), "images": len(self.layout.rows),
                "patterns": dict(self.layout.patterns),
                "unmatched": [{"path": p, "why": w} for p, w in self.layout.unmatched],
                "guesses": self.guesses}


class _Table:
    """One table of the export: raw cells (stripped; missing spellings as None)."""

    def __init__(self, path: Path) -> None:
        sep = delimiter_of(path)
        df = read_raw_csv(path, sep)
        df.columns = [str(c).strip() for c in df.columns]
        for c in df.columns:
            df[c] = df[c].str.strip()
        if sep != ",":
            read_decimal_commas(df, ())
        self.name, self.df = path.name, df
        self.missing = _all_na(df)

    def values(self, c: str) -> list[str]:
        return [v for v in self.df[c] if v not in self.missing]


def _all_na(df: pd.DataFrame) -> set[str]:
    return {v for c in df.columns for v in df[c].unique() if v == "" or v.lower() in _NA}


def _words(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", _plain(text)))


def _date_format(values: list[str]) -> str | None:
    """The first format every value parses with (day-first before month-first)."""
    return next(iter(_date_formats(values)), None)


def _date_formats(values: list[str]) -> list[str]:
    """Every format of ``_DATE_FORMATS`` that all ``values`` parse with, in that order."""
    if not values or not all(re.search(r"\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}", v) for v in values):
        return []
    return [fmt for fmt in _DATE_FORMATS
            if pd.to_datetime(pd.Series(values), format=fmt, errors="coerce").notna().all()]


def _binary(values: list[str]) -> dict[str, float] | None:
    """Yes/No-like words -> 1/0 (None unless every value is one of them, words included)."""
    distinct = set(values)
    if not distinct or not all(v.lower() in _WORDS | {"0", "1"} for v in distinct):
        return None
    if distinct <= {"0", "1"}:
        return {}
    return {v: 1.0 if v.lower() in _YES else 0.0 for v in sorted(distinct)}


def _id_column(t: _Table, unique: bool) -> str | None:
    other = {"visit", "exam", "date", "donor", "donneur"}
    ok = [c for c in t.df.columns if not _words(c) & other and (not unique or t.df[c].is_unique)]
    for words in ({"patient", "subject", "ipp", "nip", "patientid"}, {"id", "code"}):
        if found := [c for c in ok if _words(c) & words]:
            return found[0]  # a patient's id before any other id (a donor's)
    return t.df.columns[0] if len(t.df.columns) else None


def _exam_column(t: _Table, pid: str) -> str | None:
    for c in t.df.columns:
        if c != pid and _words(c) & {"visit", "visite", "exam", "examen", "timepoint",
                                      "session", "ses", "time", "label"} \
                and _date_format(t.values(c)) is None:
            return c
    for c in t.df.columns:
        vals = t.values(c)
        if c != pid and vals and sum(exam_key(v) is not None for v in vals) > 0.8 * len(vals):
            return c
    return None


def _horizon(header: str) -> int | None:
    t = _plain(header)
    m = re.search(r"(\d+)\s*(?:y|yr|yrs|year|years|an|ans|a)(?![a-z])", t) or \
        re.search(r"(?<![a-z])(?:y|year|an)\s*(\d+)", t)
    if m:
        return int(m.group(1))
    m = re.search(r"(?<![a-z])m\s*(\d+)", t)
    return int(m.group(1)) // 12 if m and int(m.group(1)) % 12 == 0 else None


def _nominal(label: str) -> tuple[int, str]:
    key = exam_key(label)
    if key is None:
        return 0, label
    unit, n = key
    days = {"D": n, "W": 7 * n, "M": round(30.4375 * n), "Y": round(365.25 * n)}[unit]
    word = {"D": "day", "W": "week", "M": "month", "Y": "year"}[unit]
    return days, _PHRASES.get(days, f"{word} {n}")


class _Guesser:
    """The study.yaml sections, each entry with the reason it was guessed."""

    def __init__(self, pats: _Table, exams: _Table) -> None:
        self.p, self.e = pats, exams
        self.notes: dict[tuple[str, ...], str] = {}
        self.columns: dict[str, str] = {}
        self.values: dict[str, dict[str, float]] = {}
        self.units: dict[str, str] = {}
        self.dates: dict[str, str] = {}
        self.outcomes: dict[str, Any] = {}
        self.variables: dict[str, str] = {}  # variable name -> column
        self.date_values: list[str] = []  # the values of the date columns used
        self.used: set[tuple[str, str]] = set()

    def note(self, key: tuple[str, ...], why: str) -> None:
        self.notes[key] = why

    def ids(self) -> tuple[str, str]:
        pid_p = _id_column(self.p, unique=True)
        pid_e = _id_column(self.e, unique=False)
        if pid_p is None or pid_e is None:
            raise MedimpDataError("no patient id column found", file=self.p.name,
                                  fix="name it 'Patient ID' (or patient_id) in both tables")
        for t, c in ((self.p, pid_p), (self.e, pid_e)):
            self.used.add((t.name, c))
            if c != "patient_id":
                self.columns[c] = "patient_id"
                self.note(("columns", c), f"the patient id of {t.name} (header words)")
        exam = _exam_column(self.e, pid_e)
        if exam is None:
            raise MedimpDataError("no exam (visit) column found", file=self.e.name,
                                  fix="name the column of the exam labels 'Visit' or 'exam'")
        self.used.add((self.e.name, exam))
        if exam != "exam":
            self.columns[exam] = "exam"
            self.note(("columns", exam), "the exam label (header words / values like J15, M3)")
        return pid_e, exam

    def dates_and_binaries(self) -> None:
        for t in (self.p, self.e):
            for c in t.df.columns:
                if (t.name, c) in self.used:
                    continue
                vals = t.values(c)
                fmt = _date_format(vals)
                if fmt is not None:
                    self._date(t, c, fmt)
                    continue
                mapping = _binary(vals)
                if mapping is not None and t is self.p and _words(c) & {
                        "loss", "perte", "failure", "echec", "lost"}:
                    if mapping:
                        self.values[c] = mapping
                        self.note(("values", c), "words of a yes/no column")
                    self.outcomes["graft_loss"] = c
                    self.note(("outcomes", "graft_loss"), "header words (graft loss)")
                    self.used.add((t.name, c))
                elif mapping:
                    self.values[c] = mapping
                    self.note(("values", c), "words of a yes/no column")

    def _date(self, t: _Table, c: str, fmt: str) -> None:
        w = _words(c)
        self.used.add((t.name, c))
        if t is self.e:
            role = "exam"
        elif w & {"loss", "perte", "failure", "echec", "lost"}:
            role = "graft_loss"
        elif w & {"follow", "followup", "suivi", "last", "dernier", "dernieres", "contact",
                  "nouvelles"}:
            role = "followup"
        elif w & {"transplant", "transplantation", "greffe", "graft", "tx", "surgery"}:
            role = "transplant"
        else:
            return
        if role in self.dates:
            return
        self.dates[role] = c
        self.dates.setdefault("format", fmt)
        self.date_values += t.values(c)
        self.note(("dates", role), f"a date column of {t.name} (header words)")
        self.date_format()

    def date_format(self) -> None:
        """One format for every date column (dates.format is shared): the first that all
        their dates fit, and a plain warning when day-first and month-first both fit."""
        fits = _date_formats(self.date_values)
        if not fits:
            self.note(("dates", "format"), "the date columns are not written alike: "
                      f"{self.dates['format']} fits the first only")
            return
        self.dates["format"] = fits[0]
        swapped = fits[0].replace("%d", "%D").replace("%m", "%d").replace("%D", "%m")
        if swapped in fits:
            self.note(("dates", "format"), f"ambiguous: every date fits both {fits[0]} and "
                      f"{swapped}; {fits[0]} was chosen: check it against a date you know")
        else:
            self.note(("dates", "format"), f"every date parses as {fits[0]}")

    def quantities(self) -> None:
        for t in (self.p, self.e):
            for c in t.df.columns:
                if (t.name, c) in self.used:
                    continue
                role = role_of_words(c)
                if role is None:
                    continue
                unit = unit_in_header(c)
                if unit is not None and unit in QUANTITIES[role].factors:
                    self.units[c] = unit
                    self.note(("units", c), f"the unit in the header; converted to "
                                            f"{QUANTITIES[role].unit} on read"
                              if unit != QUANTITIES[role].unit else "the unit in the header")
                if t is self.p and role == "egfr" and (h := _horizon(c)) is not None:
                    self.outcomes.setdefault("egfr", {})[h] = c
                    self.note(("outcomes", "egfr", str(h)), f"eGFR at {h} years (header)")
                    self.used.add((t.name, c))
                elif t is self.p and role == "age" and _words(c) & {"donor", "donneur",
                                                                      "spender", "donante"}:
                    self._variable("donor_age", c)
                elif t is self.e and role == "egfr":
                    self._variable("gfr", c)
                elif t is self.e and role == "creatinine_cv":
                    self._variable("creatinine_variability", c)

    def _variable(self, name: str, c: str) -> None:
        if name not in self.variables:
            self.variables[name] = c
            self.note(("variables", name), f"column {c!r} (header words)")


def init_cohort(folder: str | os.PathLike[str], *, overwrite: bool = False) -> InitResult:
    """Write ``study.yaml`` and ``manifest.csv`` for a clinic's export in ``folder``.

    Raises:
        MedimpDataError: the tables are absent or unreadable, no patient id or exam column
            is found, or study.yaml / manifest.csv exist (without ``overwrite``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise MedimpDataError("not a folder", file=root,
                              fix="give the folder that holds the exported tables and images")
    for name in ("study.yaml", "manifest.csv"):
        path = root / name
        if path.is_file() and path.read_text(encoding="utf-8", errors="replace").strip() \
                and not overwrite:
            raise MedimpDataError(f"{name} exists", file=path,
                                  fix="pass --overwrite to replace it (it is rewritten from "
                                      "the tables and images)")
    tables = []
    for name in ("patients.csv", "exams.csv"):
        if not (root / name).is_file():
            found = sorted(p.name for p in root.glob("*.csv"))
            raise MedimpDataError(
                f"{name} not found (CSV files here: {found})", file=root,
                fix="name the table with one row per patient patients.csv and the one with "
                    "one row per exam exams.csv")
        try:
            tables.append(_Table(root / name))
        except UnicodeDecodeError:
            line, problem, _ = not_utf8(root / name)
            raise MedimpDataError(problem, file=f"{root / name}:{line}", fix=(
                "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`, or 'CSV UTF-8' in a "
                "spreadsheet)")) from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise MedimpDataError(f"unreadable table ({type(exc).__name__}: {exc})",
                                  file=root / name, fix="save it as UTF-8 CSV") from None
    g = _Guesser(*tables)
    _, exam_col = g.ids()
    g.dates_and_binaries()
    g.quantities()
    labels = list(dict.fromkeys(v for v in g.e.values(exam_col)))
    pids = list(dict.fromkeys(g.p.df[_id_column(g.p, unique=True) or "patient_id"]))
    layout = propose_manifest(root, pids, labels, skip={"figures", "runs", "eval"})
    text, study = _render(root, g, labels, layout)
    study_path, manifest_path = root / "study.yaml", root / "manifest.csv"
    manifest = pd.DataFrame(layout.rows, columns=["patient_id", "exam", "phase", "path"])
    # both written beside, then renamed together: an interruption leaves neither
    with atomic_path(manifest_path) as tmp_manifest, atomic_path(study_path) as tmp_study:
        tmp_manifest.write_text(manifest.to_csv(index=False), encoding="utf-8")
        tmp_study.write_text(text, encoding="utf-8")
    guesses = [f"{'.'.join(k)}: {why}" for k, why in g.notes.items()]
    return InitResult(root, study, study_path, manifest_path, layout, guesses)


def _flow(x: Any) -> str:
    text = yaml.safe_dump(x, default_flow_style=True, allow_unicode=True, width=10**6)
    return text.strip().removesuffix("...").strip()


def _mapping(title: str, key: str, entries: dict[Any, Any], notes: dict[tuple[str, ...], str],
             comment: str) -> list[str]:
    lines = [f"# {comment}", f"{title}:" + ("" if entries else " {}")]
    for k, v in entries.items():
        why = notes.get((key, str(k)))
        lines.append(f"  {_flow(k)}: {_flow(v)}" + (f"   {REVIEW}: {why}" if why else ""))
    return lines


def _render(root: Path, g: _Guesser, labels: list[str], layout: Layout) -> tuple[str, Study]:
    base = default_study(name=root.resolve().name or "cohort")
    by_name = {v.name: v for v in base.variables}
    exams = sorted(((lab, *_nominal(lab)) for lab in labels), key=lambda t: (t[1], t[0]))
    variables = [by_name[n].model_copy(update={"column": c}) for n, c in g.variables.items()]
    outcomes: dict[str, Any] = {"egfr": dict(sorted(g.outcomes.get("egfr", {}).items())),
                                "graft_loss": g.outcomes.get("graft_loss", "graft_loss"),
                                "graft_loss_days": "graft_loss_days",
                                "followup_days": "followup_days", "threshold": 45.0}
    dates = dict(g.dates)
    if dates and "transplant" not in dates:
        dates = {}  # days need the transplant date; without it the dates stay unused
    outcome_cols = set(outcomes["egfr"].values()) | {outcomes["graft_loss"]}
    skip = {*g.columns, *dates.values(), *outcome_cols}
    baseline = [c for c in g.p.df.columns if c not in skip]
    exam_cols = [c for c in g.e.df.columns if c not in skip]
    missing = sorted(g.p.missing | g.e.missing, key=lambda s: (s != "", s))
    stamp = datetime.date.today().isoformat()
    n_images = len(layout.rows)
    out = [f"# study.yaml written by `medimp init` on {stamp} from patients.csv, exams.csv and "
           f"{n_images} image(s).",
           f"# Each line marked '{REVIEW}' is a guess from the headers and values: check it, then",
           "# delete the mark; `medimp validate` counts the marks left. Every key: docs/data.md.",
           f"name: {_flow(base.name)}",
           "# cell spellings that mean 'unknown' (found in the tables)",
           f"missing_values: {_flow(missing or [''])}"]
    out += _mapping("columns", "columns", g.columns, g.notes,
                    "the files' own column names -> medimp's columns (renamed on read)")
    out += _mapping("values", "values", g.values, g.notes,
                    "words -> numbers, per column (case-insensitive)")
    out += _mapping("units", "units", g.units, g.notes,
                    "the unit each column is written in (converted on read)")
    out.append("# date columns -> days from the transplant date (days_post_transplant, "
               "graft_loss_days, followup_days)")
    if dates:
        out.append("dates:")
        for k in ("format", "transplant", "exam", "graft_loss", "followup"):
            if k in dates:
                why = g.notes.get(("dates", k))
                out.append(f"  {k}: {_flow(dates[k])}" + (f"   {REVIEW}: {why}" if why else ""))
    else:
        out.append("dates: null")
    out.append(f"# the exams found in {g.e.name} ({REVIEW}: nominal days and prompt phrases "
               "guessed from the labels)")
    out.append(yaml.safe_dump({"exams": [{"name": n, "days": d, "phrase": p}
                                         for n, d, p in exams]},
                              sort_keys=False, allow_unicode=True).rstrip())
    out.append("# contrast phases and their seconds after the bolus (dynamic series: frames)")
    out.append(yaml.safe_dump({"phases": [p.model_dump() for p in base.phases]},
                              sort_keys=False, allow_unicode=True).rstrip())
    out.append(f"# text variables of the prompts ({REVIEW}: "
               + "; ".join(f"{n} reads {c!r}" for n, c in g.variables.items()) + ")"
               if variables else "# text variables: none found (add them by hand)")
    out.append(yaml.safe_dump({"variables": [v.model_dump(exclude_defaults=True)
                                             for v in variables]},
                              sort_keys=False, allow_unicode=True).rstrip())
    out.append("# outcome columns of patients.csv (never in prompts)" +
               (f" ({REVIEW}: {', '.join(f'{k} = {v!r}' for k, v in g.outcomes.items())})"
                if g.outcomes else ""))
    out.append(yaml.safe_dump({"outcomes": outcomes}, sort_keys=False,
                              allow_unicode=True).rstrip())
    out.append("# other columns known at transplant / measured at the exam (clinical_only)")
    out.append(f"baseline_columns: {_flow(baseline)}")
    out.append(f"exam_columns: {_flow(exam_cols)}")
    out.append("# plausible ranges by column (default: by the quantity of its role); "
               "error | warning")
    out += ["ranges: {}", "out_of_range: error"]
    text = "\n".join(out) + "\n"
    study = Study.model_validate(yaml.safe_load(text))
    return text, study


def count_reviews(study_path: Path) -> int:
    """Lines of a study.yaml that still carry ``medimp init``'s review mark."""
    try:
        text = study_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    return sum(REVIEW in line for line in text.splitlines()
               if not line.lstrip().startswith("# Each line") and
               not line.lstrip().startswith("# delete"))


def layout_summary(layout: Layout) -> list[str]:
    """Lines that show the image patterns found, for the user to confirm."""
    lines = [f"{n:>5}  {p}" for p, n in Counter(layout.patterns).most_common()]
    if layout.phase_words:
        lines.append("phases from: " + ", ".join(f"{w!r} -> {ph}"
                                                 for w, ph in layout.phase_words.items()))
    return lines
