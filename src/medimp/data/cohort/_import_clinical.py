"""The original MEDIMP layout's clinical table, read into the cohort's exams and patients
(``medimp.data.cohort.import_medimp``), and the import report."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medimp.data._errors import ImportMappingError, Problem
from medimp.data.cohort._tables import not_utf8

_EXAM_RE = re.compile(r"^([DJM])\s*0*(\d+)$", re.IGNORECASE)


def _exam_label(name: str, exams: list[str]) -> tuple[str | None, str | None]:
    """(cohort exam label or None, alias note or None) for an exam folder/column suffix."""
    m = _EXAM_RE.match(name.strip())
    if not m:
        return None, None
    letter, num = m.group(1).upper(), str(int(m.group(2)))
    label = f"{'D' if letter == 'J' else letter}{num}"
    if label not in exams:
        return None, None
    note = f"{name} read as {label} (J = jour, day)" if letter == "J" else None
    return label, note


@dataclass
class ImportReport:
    """What ``import_medimp`` did and what it could not map.

    Attributes:
        out: the cohort folder written.
        patients, exams, volumes: counts written to patients.csv, exams.csv, manifest.csv.
        fallback_volumes: manifest rows pointing at ``--fallback-volume``.
        augs_path: the copied paraphrase file (inside the cohort), or None.
        notes: every unmapped, aliased or filled-in item (severity info/warning/error).
    """

    out: Path
    patients: int = 0
    exams: int = 0
    volumes: int = 0
    fallback_volumes: int = 0
    augs_path: Path | None = None
    notes: list[Problem] = field(default_factory=list)

    def note(self, severity: str, problem: str, fix: str = "", **where: Any) -> None:
        self.notes.append(Problem(severity, problem=problem, fix=fix, **where))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "patients": self.patients, "exams": self.exams,
                "volumes": self.volumes, "fallback_volumes": self.fallback_volumes,
                "augs_path": str(self.augs_path) if self.augs_path else None,
                "notes": [n.to_dict() for n in self.notes]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _clean_name(col: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", col.strip().lower()).strip("_") or "column"


_NUMERIC = {"donor_age", "egfr", "creatinine_std"}


def _cell(row: pd.Series, c: str, target: str, *, pid: str, exam: str | None, csv: Path,
          rep: ImportReport) -> Any:
    """One clinical cell: None when empty; numbers for the mapped numeric columns."""
    v = row[c]
    if not isinstance(v, str) or not v:
        return None
    if target not in _NUMERIC:
        return v
    num = pd.to_numeric(v, errors="coerce")
    if pd.isna(num):
        rep.note("error", f"column {c!r}: {v!r} is not a number; left empty",
                 "correct the value in the clinical CSV and import again",
                 file=csv.name, patient=pid, exam=exam)
        return None
    return float(num)


_PER_EXAM = re.compile(r"^(.*?)[\s_]*([DJM]\s*\d+)$", re.IGNORECASE)


def _exam_target(stem: str, c: str, csv: Path, rep: ImportReport) -> str:
    """exams.csv column of a per-exam clinical column ``<stem> <exam>``."""
    if stem in ("gfr", "egfr"):
        return "egfr"
    if stem.startswith("std_creat"):
        return "creatinine_std"
    target = _clean_name(stem)
    rep.note("warning", f"clinical column {c!r} not known to the prompts; kept as "
             f"exams.csv column {target!r}", "add it to study.yaml if it matters",
             file=csv.name)
    return target


def _map_columns(columns: list[str], exams: list[str], csv: Path, rep: ImportReport
                 ) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Wide-table columns -> (patients.csv column, (exams.csv column, exam label))."""
    baseline_map: dict[str, str] = {}
    exam_map: dict[str, tuple[str, str]] = {}
    for c in columns:
        if c.lower() in ("age_donor", "donor_age"):
            baseline_map[c] = "donor_age"
            continue
        m = _PER_EXAM.match(c)
        label, alias = _exam_label(m.group(2), exams) if m else (None, None)
        if m and label:
            exam_map[c] = (_exam_target(m.group(1).strip().lower(), c, csv, rep), label)
            if alias:
                rep.note("info", f"clinical column {c!r}: {alias}", file=csv.name)
            continue
        target = _clean_name(c)
        baseline_map[c] = target
        if target != "donor_age":
            rep.note("warning", f"clinical column {c!r} not known to the prompts; kept as "
                     f"patients.csv column {target!r}", "add it to study.yaml if it matters",
                     file=csv.name)
    return baseline_map, exam_map


def _read_clinical(csv: Path, exams: list[str], rep: ImportReport) -> tuple[
        dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """Wide clinical CSV -> (patient -> baseline values, (patient, exam) -> exam values)."""
    try:
        df = pd.read_csv(csv, dtype=str, skipinitialspace=True)
    except UnicodeDecodeError:
        line, problem, _ = not_utf8(csv)
        raise ImportMappingError(problem, file=f"{csv}:{line}", fix="save it as UTF-8 (e.g. "
                                 "`iconv -f latin1 -t utf-8`)") from None
    except Exception as exc:
        raise ImportMappingError(f"clinical CSV unreadable ({exc})", file=csv,
                                 fix="give the original df_clinicobiological_data.csv") from exc
    df.columns = [str(c).strip() for c in df.columns]
    id_col = next((c for c in df.columns if c.lower() in ("patient", "patient_id", "id")), None)
    if id_col is None:
        raise ImportMappingError(f"no patient column (found {list(df.columns)})", file=csv,
                                 fix="name the patient identifier column 'patient'")
    baseline_map, exam_map = _map_columns([c for c in df.columns if c != id_col], exams,
                                          csv, rep)
    baseline: dict[str, dict[str, Any]] = {}
    per_exam: dict[tuple[str, str], dict[str, Any]] = {}
    for i, row in df.iterrows():
        pid = row[id_col]
        if not isinstance(pid, str) or not pid:
            rep.note("error", f"row {int(i) + 2} has no patient identifier; row skipped",
                     "fill in the patient column", file=csv.name)
            continue
        if pid in baseline:
            rep.note("error", f"patient listed twice (line {int(i) + 2}); later row skipped",
                     "keep one row per patient", file=csv.name, patient=pid)
            continue

        baseline[pid] = {t: _cell(row, c, t, pid=pid, exam=None, csv=csv, rep=rep)
                         for c, t in baseline_map.items()}
        for c, (target, label) in exam_map.items():
            v = _cell(row, c, target, pid=pid, exam=label, csv=csv, rep=rep)
            if v is not None:
                per_exam.setdefault((pid, label), {})[target] = v
    return baseline, per_exam
