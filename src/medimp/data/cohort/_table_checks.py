"""Checks across the tables of a cohort: labels known to study.yaml, the columns study.yaml
names, outcome values, and references (every exam's patient, every image's exam)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from medimp.data.cohort._findings import RowFindings
from medimp.data.cohort._tables import Collector, check_duplicates, where_of
from medimp.data.io.frames import FRAMES_COLUMN, parse_frames
from medimp.study import DYNAMIC_PHASE, Study


def check_manifest(root: Path, manifest: pd.DataFrame, col: Collector,
                   phases: list[str] | None = None) -> None:
    """Non-empty, one row per volume, every image path exists (Windows separators allowed)."""
    # paths written on Windows ("images\\P001\\pre.nii.gz") work everywhere
    manifest["path"] = manifest["path"].str.replace("\\", "/", regex=False)
    if manifest.empty:
        col.error("empty cohort: manifest.csv lists no image",
                  "add one row per volume (patient_id, exam, phase, path)",
                  file="manifest.csv")
    check_duplicates(manifest, ["patient_id", "exam", "phase"], "manifest.csv", col)
    check_dynamic_rows(manifest, col, phases)
    for i, p in enumerate(manifest["path"]):
        if not isinstance(p, str) or not p:
            continue
        full = Path(p) if Path(p).is_absolute() else root / p
        if not full.exists():
            col.error(f"image path {p!r} does not exist",
                      "correct the path (relative to the cohort folder) or copy the file",
                      **where_of(manifest, i, "manifest.csv"))


def check_exams(study: Study | None, exams: pd.DataFrame, col: Collector) -> None:
    """One row per patient-exam; nominal days of study.yaml when the days column is absent."""
    check_duplicates(exams, ["patient_id", "exam"], "exams.csv", col)
    if "days_post_transplant" not in exams.columns and study is not None:
        days = {e.name: float(e.days) for e in study.exams}
        exams["days_post_transplant"] = exams["exam"].map(days)
        col.warning("column 'days_post_transplant' absent; nominal days of study.yaml used",
                    "add the real days after transplant if known", file="exams.csv")


def check_patients(patients: pd.DataFrame, col: Collector) -> None:
    """Non-empty, one row per patient."""
    if patients.empty:
        col.error("empty cohort: patients.csv lists no patient",
                  "add one row per patient", file="patients.csv")
    check_duplicates(patients, ["patient_id"], "patients.csv", col)


def check_labels(study: Study, manifest: pd.DataFrame | None, exams: pd.DataFrame | None,
                  col: Collector) -> None:
    exam_names, phase_names = set(study.exam_names), set(study.phase_names)
    for name, df in (("manifest.csv", manifest), ("exams.csv", exams)):
        if df is None:
            continue
        for i, e in enumerate(df["exam"]):
            if isinstance(e, str) and e and e not in exam_names:
                col.error(f"unknown exam label {e!r}",
                          f"use one of {study.exam_names} or add {e!r} to study.yaml exams",
                          **where_of(df, i, name))
    if manifest is not None:
        for i, ph in enumerate(manifest["phase"]):
            if isinstance(ph, str) and ph and ph not in phase_names and ph != DYNAMIC_PHASE:
                col.error(f"unknown phase label {ph!r}",
                          f"use one of {study.phase_names} (or {DYNAMIC_PHASE!r} for a whole "
                          f"dynamic series) or add {ph!r} to study.yaml phases",
                          **where_of(manifest, i, "manifest.csv"))


def check_dynamic_rows(manifest: pd.DataFrame, col: Collector,
                       phases: list[str] | None = None) -> None:
    """An exam is either one ``dynamic`` row (a 4D series) or one row per phase, not both;
    a ``frames`` column gives valid ``phase:index`` pairs."""

    dyn = manifest[manifest["phase"] == DYNAMIC_PHASE]
    if FRAMES_COLUMN in manifest.columns and phases:
        for i, (phase, text) in enumerate(zip(manifest["phase"], manifest[FRAMES_COLUMN],
                                              strict=True)):
            if not isinstance(text, str) or not text.strip():
                continue
            try:
                if phase != DYNAMIC_PHASE:
                    raise ValueError(f"frames {text!r} on a row of phase {phase!r}: only a "
                                     f"{DYNAMIC_PHASE!r} row has frames")
                parse_frames(text, phases)
            except ValueError as exc:
                col.error(str(exc), "write phase:index for every phase, e.g. 'pre:0 "
                          "arterial:6 tubular:20', or leave the cell empty",
                          **where_of(manifest, i, "manifest.csv"))
    if dyn.empty:
        return
    keys = set(zip(dyn["patient_id"], dyn["exam"], strict=True))
    for i, (pid, exam, phase) in enumerate(zip(manifest["patient_id"], manifest["exam"],
                                               manifest["phase"], strict=True)):
        if (pid, exam) in keys and phase != DYNAMIC_PHASE:
            col.error(f"exam has a {DYNAMIC_PHASE!r} row (a whole dynamic series) and also a "
                      f"row for phase {phase!r}",
                      f"keep either the {DYNAMIC_PHASE!r} row (phases are chosen from the series "
                      "by study.yaml's dynamic section) or one row per phase",
                      **where_of(manifest, i, "manifest.csv"))


def check_study_columns(study: Study, exams: pd.DataFrame | None,
                         patients: pd.DataFrame | None, col: Collector) -> None:
    tables = {"exams": exams, "patients": patients}
    for v in study.variables:
        df = tables[v.table]
        if df is None:
            continue
        if v.column not in df.columns:
            col.error(f"column {v.column!r} of text variable {v.name!r} absent from "
                      f"{v.table}.csv", f"add {v.column!r} to {v.table}.csv or change the "
                      f"variable's column in study.yaml", file=f"{v.table}.csv")
        elif v.kind == "categorical" and v.categories:
            findings = RowFindings()
            cats = sorted(v.categories)
            for i, value in enumerate(df[v.column]):
                if isinstance(value, str) and value and value not in v.categories:
                    findings.add(
                        (v.table, v.column, "category"), where_of(df, i, f"{v.table}.csv"),
                        value, severity="error",
                        one=f"column {v.column!r}: {value!r} is not a category of {v.name!r} "
                            f"({cats})",
                        many=lambda n, rows, v=v, cats=cats: (
                            f"column {v.column!r}: {n} values are not categories of "
                            f"{v.name!r} ({cats}): {rows}"),
                        fix="correct the value or add it to the categories in study.yaml")
            findings.emit(col.report)
    if patients is not None:
        absent = [c for c in study.outcomes.columns() if c not in patients.columns]
        for c in absent:
            patients[c] = float("nan")
        if absent:
            n = len(patients)
            known = [f"{c} known for {int(patients[c].replace('', float('nan')).notna().sum())}"
                     f" of {n} patients" for c in study.outcomes.columns() if c not in absent]
            col.warning(f"outcome column(s) {absent} absent: those outcomes are unknown" +
                        (f" ({'; '.join(known)})" if known else
                         " (every outcome is unknown)"),
                        "add the outcome columns when known (evaluation needs them)",
                        file="patients.csv")
        gl = study.outcomes.graft_loss
        if gl in patients.columns:
            values = pd.to_numeric(patients[gl], errors="coerce")
            findings = RowFindings()
            for i, v in enumerate(values):
                if not math.isnan(v) and v not in (0.0, 1.0):
                    findings.add(
                        ("patients", gl, "binary"), where_of(patients, i, "patients.csv"),
                        f"{float(v):g}", severity="error",
                        one=f"column {gl!r}: {float(v):g} is not 0 or 1",
                        many=lambda n, rows: f"column {gl!r}: {n} values are not 0 or 1: {rows}",
                        fix="write 1 (lost), 0 (not lost) or leave empty when unknown (words "
                            f"such as Yes/No: values: {{{gl!r}: {{Yes: 1, No: 0}}}} in "
                            "study.yaml)")
            findings.emit(col.report)


def check_references(manifest: pd.DataFrame | None, exams: pd.DataFrame | None,
                      patients: pd.DataFrame | None, col: Collector) -> None:
    if patients is not None:
        known = set(patients["patient_id"].dropna())
        for name, df in (("manifest.csv", manifest), ("exams.csv", exams)):
            if df is None:
                continue
            reported: set[str] = set()
            for i, pid in enumerate(df["patient_id"]):
                if isinstance(pid, str) and pid and pid not in known and pid not in reported:
                    reported.add(pid)
                    col.error(f"patient {pid!r} is absent from patients.csv",
                              "add the patient to patients.csv (or remove its rows)",
                              **where_of(df, i, name))
    if manifest is not None and exams is not None:
        exam_keys = set(zip(exams["patient_id"], exams["exam"], strict=True))
        seen: set[tuple[str, str]] = set()
        for i, key in enumerate(zip(manifest["patient_id"], manifest["exam"], strict=True)):
            if key in exam_keys or key in seen or not all(isinstance(k, str) for k in key):
                continue
            seen.add(key)
            col.error("exam has images in manifest.csv but no row in exams.csv",
                      "add the exam (patient_id, exam, days_post_transplant, ...) to exams.csv",
                      **where_of(manifest, i, "manifest.csv"))




def check_mapping_keys(study: Study, tables: dict[str, pd.DataFrame | None],
                       col: Collector) -> None:
    """A ``values:`` or ``units:`` entry whose column no table has (a typo, or the file's name
    of a column that ``columns:`` renames) would be ignored without a word: warn."""
    if any(df is None for df in tables.values()):
        return  # a table is missing: its own error says so
    have = {c for df in tables.values() if df is not None for c in df.columns}
    renamed = study.columns
    for key, entries in (("values", study.values), ("units", study.units)):
        for c in entries:
            if c in have:
                continue
            hint = (f"write the column's name after columns: renames it ({renamed[c]!r})"
                    if renamed.get(c) in have else
                    "correct the column name (as the table's header spells it, after "
                    "columns: renaming)")
            col.warning(f"study.yaml's {key}: names column {c!r}, which no table has: it is "
                        "not applied", f"{hint}; columns found: {sorted(have)}",
                        file="study.yaml")


def check_outcome_days(study: Study, patients: pd.DataFrame | None, col: Collector) -> None:
    """Outcome days that contradict each other (read after ``units:`` are converted): a graft
    lost after its last follow-up, a graft-loss day for a graft not marked lost (evaluation
    would ignore it)."""
    out = study.outcomes
    if patients is None or not out.graft_loss_days or not {
            out.graft_loss, out.graft_loss_days} <= set(patients.columns):
        return
    lost = pd.to_numeric(patients[out.graft_loss], errors="coerce")
    loss = pd.to_numeric(patients[out.graft_loss_days], errors="coerce")
    follow = (pd.to_numeric(patients[out.followup_days], errors="coerce")
              if out.followup_days in patients.columns else pd.Series(math.nan, patients.index))
    findings = RowFindings()
    gl, gd, fd = out.graft_loss, out.graft_loss_days, out.followup_days
    for i in range(len(patients)):
        day, last, status = loss.iloc[i], follow.iloc[i], lost.iloc[i]
        if status == 1 and day > last:
            findings.add(
                ("patients.csv", gd, "after_followup"), where_of(patients, i, "patients.csv"),
                f"{day:g} > {last:g}", severity="warning",
                one=f"graft lost on day {day:g} after the last follow-up (day {last:g})",
                many=lambda n, rows: f"{n} grafts lost after their last follow-up: {rows}",
                fix=f"check the dates: the last follow-up ({fd!r}) is on or after the graft "
                    f"loss ({gd!r})")
        elif status == 0 and math.isfinite(day):
            findings.add(
                ("patients.csv", gd, "not_lost"), where_of(patients, i, "patients.csv"),
                f"{day:g}", severity="warning",
                one=f"graft-loss day {day:g} for a graft marked not lost ({gl!r} = 0): "
                    "evaluation ignores it",
                many=lambda n, rows: (f"{n} graft-loss days for grafts marked not lost "
                                      f"({gl!r} = 0), ignored by evaluation: {rows}"),
                fix=f"set {gl!r} to 1 if the graft was lost, or empty its graft-loss day/date")
    findings.emit(col.report)
