"""Read a cohort directory into typed tables, checking its contract.

``read_cohort(path)`` loads ``study.yaml`` and the three tables (``manifest.csv``,
``exams.csv``, ``patients.csv``), validates every row with pydantic, checks the cross-table
references and that every manifest path exists, and raises one :class:`CohortError` listing
*every* problem found. It does not open the images: ``validate_cohort`` does.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import BeforeValidator, ValidationError, create_model

from medimp.data._errors import CohortError, MedimpDataError, Problem
from medimp.data._values import (
    apply_missing_values,
    check_paths_inside,
    check_ranges,
    emit_warnings,
    read_raw_csv,
)
from medimp.data.readers import Volume, read_volume
from medimp.study import Study, StudyError, load_study

__all__ = ["Cohort", "read_cohort"]

MANIFEST_REQUIRED = ("patient_id", "exam", "phase", "path")
EXAMS_REQUIRED = ("patient_id", "exam")
PATIENTS_REQUIRED = ("patient_id",)


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
    from pydantic import AfterValidator

    fields: dict[str, Any] = dict.fromkeys(str_cols, (_Id, ...))
    for c in num_cols:
        fields[c] = (Annotated[_Num, AfterValidator(_finite)], None)
    return create_model(name, **fields)


@dataclass
class Cohort:
    """A cohort directory read into memory (images stay on disk).

    Attributes:
        root: the cohort folder.
        study: ``study.yaml``.
        manifest: one row per volume (patient_id, exam, phase, path[, acquisition_s,
            series_uid]); the tables are read once: edit a copy, not these frames.
        exams: one row per patient-exam (patient_id, exam, days_post_transplant, ...).
        patients: one row per patient (patient_id, baseline and outcome columns).
        warnings: non-fatal findings of :func:`read_cohort` (e.g. absent outcome columns).
    """

    root: Path
    study: Study
    manifest: pd.DataFrame
    exams: pd.DataFrame
    patients: pd.DataFrame
    warnings: list[Problem] = field(default_factory=list)

    @cached_property
    def truth(self) -> pd.DataFrame | None:
        """``truth.csv`` (simulated cohorts only), read on first access; for ``oracle`` only."""
        path = self.root / "truth.csv"
        if not path.is_file():
            return None
        return pd.read_csv(path, dtype={"patient_id": str})

    def _exam_order(self, exam: str) -> int:
        names = self.study.exam_names
        return names.index(exam) if exam in names else len(names)

    def exam_keys(self) -> list[tuple[str, str]]:
        """(patient_id, exam) of every exam with at least one image, by patient then study
        exam order."""
        keys = set(zip(self.manifest["patient_id"], self.manifest["exam"], strict=True))
        return sorted(keys, key=lambda k: (k[0], self._exam_order(k[1]), k[1]))

    def _resolve(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.root / path

    @cached_property
    def _index(self) -> dict[tuple[str, str], dict[str, tuple[str, str | None]]]:
        """(patient_id, exam) -> phase -> (path as written, series_uid or None)."""
        m = self.manifest
        uids = m["series_uid"] if "series_uid" in m.columns else [None] * len(m)
        index: dict[tuple[str, str], dict[str, tuple[str, str | None]]] = {}
        for pid, exam, phase, path, uid in zip(m["patient_id"], m["exam"], m["phase"],
                                               m["path"], uids, strict=True):
            uid = uid if isinstance(uid, str) and uid else None
            index.setdefault((str(pid), str(exam)), {})[str(phase)] = (str(path), uid)
        return index

    def volumes(self, patient_id: str, exam: str) -> dict[str, Path]:
        """Phase -> absolute image path for one exam, in study phase order."""
        found = self._index.get((str(patient_id), exam), {})
        return {ph: self._resolve(found[ph][0]) for ph in self.study.phase_names if ph in found}

    def read_volume(self, patient_id: str, exam: str, phase: str,
                    check_finite: bool = True) -> Volume | None:
        """Read one volume (None when that phase is missing), honouring the optional
        ``series_uid`` column of manifest.csv for DICOM folders that hold several series."""
        entry = self._index.get((str(patient_id), exam), {}).get(phase)
        if entry is None:
            return None
        try:
            return read_volume(self._resolve(entry[0]), series_uid=entry[1],
                               check_finite=check_finite)
        except MedimpDataError as exc:
            raise exc.with_context(patient=str(patient_id), exam=exam, phase=phase) from None

    def volume_path(self, patient_id: str, exam: str, phase: str) -> Path | None:
        """Absolute path of one volume, or None when that phase is missing."""
        return self.volumes(patient_id, exam).get(phase)

    def series_uid(self, patient_id: str, exam: str, phase: str) -> str | None:
        """The manifest's ``series_uid`` of one volume (None: the folder holds one series)."""
        entry = self._index.get((str(patient_id), exam), {}).get(phase)
        return entry[1] if entry else None

    def phases_of(self, patient_id: str, exam: str) -> list[str]:
        """Phases present for one exam, in study phase order."""
        return list(self.volumes(patient_id, exam))

    def exam_row(self, patient_id: str, exam: str) -> pd.Series | None:
        """The exams.csv row of one exam, or None."""
        e = self.exams
        rows = e[(e["patient_id"] == str(patient_id)) & (e["exam"] == exam)]
        return None if rows.empty else rows.iloc[0]

    def patient_row(self, patient_id: str) -> pd.Series | None:
        """The patients.csv row of one patient, or None."""
        rows = self.patients[self.patients["patient_id"] == str(patient_id)]
        return None if rows.empty else rows.iloc[0]


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, problem: str, fix: str = "", **where: Any) -> None:
        self.problems.append(Problem("error", problem=problem, fix=fix, **where))

    def warning(self, problem: str, fix: str = "", **where: Any) -> None:
        self.problems.append(Problem("warning", problem=problem, fix=fix, **where))

    def report(self, severity: str, problem: str, fix: str = "", **where: Any) -> None:
        self.problems.append(Problem(severity, problem=problem, fix=fix, **where))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _read_table(path: Path, required: tuple[str, ...], col: _Collector,
                study: Study | None = None) -> pd.DataFrame | None:
    name = path.name
    if not path.is_file():
        col.error(f"{name} not found", f"every cohort needs {name} (see docs/data.md)",
                  file=name)
        return None
    try:
        ragged = _ragged_lines(path)
        if ragged:
            col.error(f"line(s) {ragged[:10]} have a different number of fields than the "
                      "header", "remove the extra/missing separators (a comma inside a value "
                      "needs quotes)", file=name)
            return None
        df = read_raw_csv(path)  # no NA parsing: study.yaml's missing_values, below
    except pd.errors.EmptyDataError:
        col.error("file is empty (no header row)", f"write the header: {', '.join(required)}",
                  file=name)
        return None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        col.error(f"not a readable CSV ({exc})", "save it as UTF-8, comma-separated",
                  file=name)
        return None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        fix = f"add the column(s) {missing} to {name}"
        if len(df.columns) == 1 and ";" in df.columns[0]:
            fix = "the file looks semicolon-separated: save it comma-separated"
        col.error(f"required column(s) {missing} absent (found {list(df.columns)})", fix,
                  file=name)
        return None
    for c in df.columns:
        df[c] = df[c].str.strip()
    apply_missing_values(df, study)
    return df


def _ragged_lines(path: Path) -> list[int]:
    """Line numbers of CSV records whose field count differs from the header's (pandas would
    otherwise silently turn extra leading fields into an index, or fill missing ones)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return []
        return [reader.line_num for rec in reader if rec and len(rec) != len(header)]


def _where(df: pd.DataFrame, i: int, file: str) -> dict[str, Any]:
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


def _check_rows(df: pd.DataFrame, file: str, str_cols: list[str], num_cols: list[str],
                col: _Collector) -> None:
    """pydantic row validation: ids present, numeric columns numeric and finite."""
    model = _row_model(f"{file}_row", str_cols, num_cols)
    cols = [c for c in str_cols + num_cols if c in df.columns]
    for i, rec in enumerate(df[cols].to_dict("records")):
        try:
            model.model_validate(rec)
        except ValidationError as exc:
            for err in exc.errors():
                c = str(err["loc"][0]) if err["loc"] else "?"
                value = rec.get(c)
                col.error(f"column {c!r}: {value!r} is not a number ({err['msg']})",
                          f"write a number (or leave the cell empty when unknown) in {c!r}",
                          **_where(df, i, file))
        for c in str_cols:
            if not isinstance(rec.get(c), str) or not rec[c]:
                col.error(f"column {c!r} is empty", f"fill in {c!r}", **_where(df, i, file))


def _check_duplicates(df: pd.DataFrame, keys: list[str], file: str, col: _Collector) -> None:
    dup = df[df.duplicated(keys, keep=False)]
    for _, group in dup.groupby(keys, sort=True):
        lines = [int(i) + 2 for i in group.index]
        first = df.index.get_loc(group.index[0])
        where = _where(df, first, file)
        where["file"] = file
        col.error(f"duplicate rows for {dict(zip(keys, group.iloc[0][keys], strict=True))} "
                  f"on lines {lines}", "keep one row per " + "/".join(keys), **where)


def _numeric_columns(study: Study, table: str, df: pd.DataFrame) -> list[str]:
    cols = [v.column for v in study.variables if v.table == table and v.kind == "numeric"]
    if table == "exams":
        cols.append("days_post_transplant")
    if table == "manifest":
        cols.append("acquisition_s")
    if table == "patients":
        cols += study.outcomes.columns()
    return [c for c in dict.fromkeys(cols) if c in df.columns]


def _coerce_other_columns(df: pd.DataFrame, skip: set[str], file: str,
                          col: _Collector) -> None:
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
            for i in filled.index[bad.to_numpy()]:
                col.error(f"column {c!r}: {df.at[i, c]!r} is not a number (the column is "
                          "otherwise numeric)", f"write a number or leave {c!r} empty",
                          **_where(df, df.index.get_loc(i), file))


def _load(root: str | os.PathLike[str], strict_paths: bool | None = None
          ) -> tuple[Cohort | None, list[Problem]]:
    """Read and check a cohort; return it (None when unusable) and every problem found.

    ``strict_paths`` (None: study.yaml's) refuses manifest paths leading outside the folder.
    """
    root = Path(root)
    col = _Collector()
    if not root.is_dir():
        col.error("cohort folder not found", "give the folder that holds manifest.csv",
                  file=str(root))
        return None, col.problems
    study: Study | None = None
    try:
        study = load_study(root / "study.yaml")
    except StudyError as exc:
        col.error(str(exc).replace(str(root / "study.yaml") + ": ", ""),
                  "fix study.yaml (see docs/data.md and `medimp.study.default_study()`)",
                  file="study.yaml")
    manifest = _read_table(root / "manifest.csv", MANIFEST_REQUIRED, col, study)
    exams = _read_table(root / "exams.csv", EXAMS_REQUIRED, col, study)
    patients = _read_table(root / "patients.csv", PATIENTS_REQUIRED, col, study)

    tables = {"manifest": manifest, "exams": exams, "patients": patients}
    ids = {"manifest": list(MANIFEST_REQUIRED), "exams": list(EXAMS_REQUIRED),
           "patients": list(PATIENTS_REQUIRED)}
    for name, df in tables.items():
        if df is None:
            continue
        num = _numeric_columns(study, name, df) if study else []
        _check_rows(df, f"{name}.csv", ids[name], num, col)
        for c in num:
            df[c] = pd.to_numeric(df[c], errors="coerce")
        if study is not None and name != "manifest":
            cat = {v.column for v in study.variables if v.table == name}
            _coerce_other_columns(df, set(ids[name]) | set(num) | cat, f"{name}.csv", col)

    if manifest is not None:
        # paths written on Windows ("images\\P001\\pre.nii.gz") work everywhere
        manifest["path"] = manifest["path"].str.replace("\\", "/", regex=False)
        if manifest.empty:
            col.error("empty cohort: manifest.csv lists no image",
                      "add one row per volume (patient_id, exam, phase, path)",
                      file="manifest.csv")
        _check_duplicates(manifest, ["patient_id", "exam", "phase"], "manifest.csv", col)
        for i, p in enumerate(manifest["path"]):
            if not isinstance(p, str) or not p:
                continue
            full = Path(p) if Path(p).is_absolute() else root / p
            if not full.exists():
                col.error(f"image path {p!r} does not exist",
                          "correct the path (relative to the cohort folder) or copy the file",
                          **_where(manifest, i, "manifest.csv"))
    if exams is not None:
        _check_duplicates(exams, ["patient_id", "exam"], "exams.csv", col)
        if "days_post_transplant" not in exams.columns and study is not None:
            days = {e.name: float(e.days) for e in study.exams}
            exams["days_post_transplant"] = exams["exam"].map(days)
            col.warning("column 'days_post_transplant' absent; nominal days of study.yaml used",
                        "add the real days after transplant if known", file="exams.csv")
    if patients is not None:
        if patients.empty:
            col.error("empty cohort: patients.csv lists no patient",
                      "add one row per patient", file="patients.csv")
        _check_duplicates(patients, ["patient_id"], "patients.csv", col)

    if study is not None:
        _check_labels(study, manifest, exams, col)
        _check_study_columns(study, exams, patients, col)
        check_ranges(study, {"exams": exams, "patients": patients}, col.report, _where)
        if manifest is not None:
            strict = study.strict_paths if strict_paths is None else strict_paths
            check_paths_inside(root, manifest, strict, col.report, _where)
    _check_references(manifest, exams, patients, col)

    if col.errors or study is None or manifest is None or exams is None or patients is None:
        return None, col.problems
    cohort = Cohort(root=root, study=study, manifest=manifest.reset_index(drop=True),
                    exams=exams.reset_index(drop=True), patients=patients.reset_index(drop=True),
                    warnings=[p for p in col.problems if p.severity != "error"])
    return cohort, col.problems


def _check_labels(study: Study, manifest: pd.DataFrame | None, exams: pd.DataFrame | None,
                  col: _Collector) -> None:
    exam_names, phase_names = set(study.exam_names), set(study.phase_names)
    for name, df in (("manifest.csv", manifest), ("exams.csv", exams)):
        if df is None:
            continue
        for i, e in enumerate(df["exam"]):
            if isinstance(e, str) and e and e not in exam_names:
                col.error(f"unknown exam label {e!r}",
                          f"use one of {study.exam_names} or add {e!r} to study.yaml exams",
                          **_where(df, i, name))
    if manifest is not None:
        for i, ph in enumerate(manifest["phase"]):
            if isinstance(ph, str) and ph and ph not in phase_names:
                col.error(f"unknown phase label {ph!r}",
                          f"use one of {study.phase_names} or add {ph!r} to study.yaml phases",
                          **_where(manifest, i, "manifest.csv"))


def _check_study_columns(study: Study, exams: pd.DataFrame | None,
                         patients: pd.DataFrame | None, col: _Collector) -> None:
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
            for i, value in enumerate(df[v.column]):
                if isinstance(value, str) and value and value not in v.categories:
                    col.error(f"column {v.column!r}: {value!r} is not a category of "
                              f"{v.name!r} ({sorted(v.categories)})",
                              "correct the value or add it to the categories in study.yaml",
                              **_where(df, i, f"{v.table}.csv"))
    if patients is not None:
        absent = [c for c in study.outcomes.columns() if c not in patients.columns]
        for c in absent:
            patients[c] = float("nan")
        if absent:
            col.warning(f"outcome column(s) {absent} absent: every outcome is unknown",
                        "add the outcome columns when known (evaluation needs them)",
                        file="patients.csv")
        gl = study.outcomes.graft_loss
        if gl in patients.columns:
            values = pd.to_numeric(patients[gl], errors="coerce")
            for i, v in enumerate(values):
                if not math.isnan(v) and v not in (0.0, 1.0):
                    col.error(f"column {gl!r}: {float(v):g} is not 0 or 1",
                              "write 1 (lost), 0 (not lost) or leave empty when unknown",
                              **_where(patients, i, "patients.csv"))


def _check_references(manifest: pd.DataFrame | None, exams: pd.DataFrame | None,
                      patients: pd.DataFrame | None, col: _Collector) -> None:
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
                              **_where(df, i, name))
    if manifest is not None and exams is not None:
        exam_keys = set(zip(exams["patient_id"], exams["exam"], strict=True))
        seen: set[tuple[str, str]] = set()
        for i, key in enumerate(zip(manifest["patient_id"], manifest["exam"], strict=True)):
            if key in exam_keys or key in seen or not all(isinstance(k, str) for k in key):
                continue
            seen.add(key)
            col.error("exam has images in manifest.csv but no row in exams.csv",
                      "add the exam (patient_id, exam, days_post_transplant, ...) to exams.csv",
                      **_where(manifest, i, "manifest.csv"))


def read_cohort(path: str | os.PathLike[str], strict_paths: bool | None = None) -> Cohort:
    """Read a cohort directory and check its tables, labels, references, values and paths.

    Args:
        path: the cohort folder.
        strict_paths: refuse manifest paths that lead outside the folder (None: study.yaml's
            ``strict_paths``, default False: a warning).

    Warnings (``CohortWarning``, once each): every non-fatal finding, e.g. a value outside its
    plausible range under ``out_of_range: warning``, or an image outside the cohort folder.

    Raises:
        CohortError: listing every problem found (``.problems``); run ``medimp validate``
            for the same list as a table, plus the checks that need the images.
    """
    cohort, problems = _load(path, strict_paths)
    errors = [p for p in problems if p.severity == "error"]
    if errors or cohort is None:
        raise CohortError(errors, root=path)
    emit_warnings(cohort.warnings)
    return cohort
