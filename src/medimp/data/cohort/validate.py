"""Check a whole cohort, images included, and report every problem without raising.

``validate_cohort`` runs the table checks of :func:`medimp.data.read_cohort`, then opens every
image with :func:`medimp.data.read_volume` and checks its content (NaN/Inf, constant volume,
zero/singular affine, 4D, truncated or mis-named gzip, header dims). It also warns about what
is legal but worth knowing: a missing phase in an exam, an exam without images, a patient
without outcomes. ``medimp validate`` prints the result as a table.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data._errors import MedimpDataError, Problem
from medimp.data.cohort._findings import collapse
from medimp.data.cohort._geometry_checks import geometry_problems
from medimp.data.cohort.init import count_reviews
from medimp.data.cohort.read import _load
from medimp.data.cohort.view import Cohort
from medimp.data.io.frames import select_frames
from medimp.data.io.geometry import field_of_view, suggest_preprocess, world_spacing
from medimp.data.io.readers import read_series, read_volume
from medimp.errors import describe_os_error
from medimp.study import DYNAMIC_PHASE, default_study, load_study

__all__ = ["ValidationReport", "validate_cohort"]


@dataclass
class ValidationReport:
    """What ``validate_cohort`` found.

    Attributes:
        root: the cohort folder.
        errors: problems that make the cohort unusable as is.
        warnings: legal but noteworthy findings.
        summary: counts (patients, exams, volumes, files, exams per label, volumes per phase,
            phases per exam as {number of phases: exams}, outcome counts with missing);
            ``geometry``: per exam ("P001 D15") its shape, spacing and field of view (mm, RAS
            axes); ``dynamic``: per dynamic exam the chosen frames and times
            (:meth:`medimp.data.io.frames.FrameSelection.to_dict`).
    """

    root: Path
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no error was found (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "cohort": str(self.root),
            "ok": self.ok,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "summary": self.summary,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (``medimp validate --json``)."""
        return json.dumps(self.to_dict(), indent=indent, default=_jsonable)


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _read_checked(cohort: Cohort, path: Path, first: dict[str, Any]) -> tuple[Any, Any]:
    """The volume to check (a dynamic series' first chosen frame) and the frame selection."""
    uid = first.get("series_uid")
    uid = uid if isinstance(uid, str) and uid else None
    if first["phase"] != DYNAMIC_PHASE:
        return read_volume(path, check_finite=False, series_uid=uid), None

    series = read_series(path, check_finite=False, series_uid=uid)
    finite = np.isfinite(series.array)
    if not finite.all():
        return series.frame(int(np.argmin(finite.reshape(-1, series.n_frames).all(0)))), None
    selection = select_frames(series, cohort.study,
                              cohort.own_frames(first["patient_id"], first["exam"]))
    return series.frame(next(iter(selection.frames.values()))), selection


def _geometry(vol: Any) -> dict[str, Any]:
    return {"shape": [int(s) for s in vol.shape],
            "spacing_ras": [round(s, 3) for s in world_spacing(vol.affine)],
            "fov_mm": [round(f, 1) for f in field_of_view(vol.affine, vol.shape)]}


def _check_image(cohort: Cohort, rel: str, rows: list[dict[str, Any]]
                 ) -> tuple[list[Problem], dict[str, Any]]:
    """Read one image and return its problems, located at its first manifest row, and what
    it says about the exam (``geometry``, ``dynamic``)."""
    first = rows[0]
    where = {"file": rel, "patient": first["patient_id"], "exam": first["exam"],
             "phase": first["phase"]}
    also = f" (file shared by {len(rows)} manifest rows)" if len(rows) > 1 else ""
    path = cohort._resolve(rel)
    try:
        vol, selection = _read_checked(cohort, path, first)
    except MedimpDataError as exc:
        p = exc.to_problem()
        if p.file and Path(p.file) != path:  # a file inside a series folder: name that file
            inner = Path(p.file)
            where["file"] = (inner.relative_to(cohort.root).as_posix()
                             if inner.is_relative_to(cohort.root) else str(inner))
        return [Problem("error", problem=p.problem + also, fix=p.fix, **where)], {}
    except Exception as exc:  # an unexpected library failure must not stop the report
        return [Problem("error", problem=f"unreadable ({type(exc).__name__}: {exc}){also}",
                        fix="export the image again", **where)], {}
    info: dict[str, Any] = {"geometry": _geometry(vol)}
    out = []
    if selection is not None:
        from medimp.data.io.frames import timing_warnings

        info["dynamic"] = selection.to_dict()
        info["dynamic"]["file"] = rel
        tol = cohort.study.dynamic.tolerance_s
        out += [Problem("warning", problem=w, fix="check the frame (dynamic.frames in study.yaml"
                        " or the manifest's frames column) or the phase's seconds", **where)
                for w in timing_warnings(selection, cohort.study, tol)]
    a = vol.array
    finite = np.isfinite(a)
    if not finite.all():
        n_nan = int(np.isnan(a).sum())
        n_inf = int(a.size - finite.sum() - n_nan)
        out.append(Problem(
            "error", problem=f"{n_nan} NaN and {n_inf} Inf voxels out of {a.size}{also}",
            fix="re-export the volume; replace non-finite voxels only if they are known "
                "background", **where))
    elif float(a.max()) == float(a.min()):
        out.append(Problem(
            "warning", problem=f"constant volume: every voxel is {float(a.min()):g}{also}",
            fix="check the export; a blank volume carries no image information (normalisation "
                "leaves it at 0)", **where))
    return out, info


def _summary(cohort: Cohort, n_files: int) -> dict[str, Any]:
    study = cohort.study
    keys = cohort.exam_keys()
    phases = Counter(ph for p, e in keys for ph in cohort.phases_of(p, e))
    exams = Counter(e for _, e in keys)
    n_phases = Counter(len(cohort.phases_of(p, e)) for p, e in keys)
    outcomes: dict[str, dict[str, int]] = {}
    pat = cohort.patients
    for c in study.outcomes.columns():
        if c in pat.columns:
            known = int(pat[c].notna().sum())
            outcomes[c] = {"known": known, "missing": len(pat) - known}
    gl = study.outcomes.graft_loss
    if gl in pat.columns:
        outcomes[gl]["positive"] = int((pat[gl] == 1).sum())
    return {
        "patients": len(pat),
        "patients_with_images": len({p for p, _ in keys}),
        "exams": len(keys),
        "exam_rows": len(cohort.exams),
        "volumes": len(cohort.manifest),
        "dynamic_series": int((cohort.manifest["phase"] == DYNAMIC_PHASE).sum()),
        "files": n_files,
        "exams_per_label": {e: exams.get(e, 0) for e in study.exam_names},
        "volumes_per_phase": {ph: phases.get(ph, 0) for ph in study.phase_names},
        "phases_per_exam": {str(n): c for n, c in sorted(n_phases.items(), reverse=True)},
        "outcomes": outcomes,
    }


def _structure_warnings(cohort: Cohort) -> list[Problem]:
    out = []
    study = cohort.study
    with_images = set(cohort.exam_keys())
    for pid, exam in sorted(with_images):
        have = cohort.phases_of(pid, exam)
        missing = [p for p in study.phase_names if p not in have]
        if missing:
            out.append(Problem("warning", "manifest.csv", pid, exam, ",".join(missing),
                               f"phase(s) {missing} missing (exam has {have})",
                               "add the volume(s) if they exist; otherwise they are fed as "
                               "empty channels with mask False"))
    for pid, exam in zip(cohort.exams["patient_id"], cohort.exams["exam"], strict=True):
        if (pid, exam) not in with_images:
            out.append(Problem("warning", "exams.csv", pid, exam, None,
                               "exam has clinical values but no image",
                               "add its volumes to manifest.csv if they exist; it is left out "
                               "of pretraining"))
    loss_col = study.outcomes.graft_loss_days
    if (loss_col and loss_col in cohort.patients.columns
            and "days_post_transplant" in cohort.exams.columns):
        lost = pd.to_numeric(cohort.patients.set_index("patient_id")[loss_col], errors="coerce")
        for pid, exam, day in zip(cohort.exams["patient_id"], cohort.exams["exam"],
                                  pd.to_numeric(cohort.exams["days_post_transplant"],
                                                errors="coerce"), strict=True):
            if (pid, exam) in with_images and day >= lost.get(pid, float("nan")):
                out.append(Problem(
                    "warning", "exams.csv", pid, exam, None,
                    f"exam on day {day:g} is on or after graft loss (day {lost[pid]:g}): its "
                    "images show the outcome that evaluation predicts",
                    "remove the exam from manifest.csv, or its embeddings leak the graft-loss "
                    "label into the probes"))
    outcome_cols = [c for c in study.outcomes.columns() if c in cohort.patients.columns]
    img_patients = {p for p, _ in with_images}
    for _, row in cohort.patients.iterrows():
        pid = row["patient_id"]
        if outcome_cols and row[outcome_cols].isna().all():
            out.append(Problem("warning", "patients.csv", pid, None, None,
                               "patient without outcomes (every outcome column empty)",
                               "fill in the outcomes if known; the patient is left out of "
                               "evaluation tasks"))
        if pid not in img_patients:
            out.append(Problem("warning", "patients.csv", pid, None, None,
                               "patient without any image",
                               "add the patient's volumes to manifest.csv if they exist"))
    return out


def validate_cohort(
    path: str | os.PathLike[str],
    read_images: bool = True,
    progress: Callable[[int, int], None] | None = None,
    strict_paths: bool | None = None,
    preprocess: Any = None,
) -> ValidationReport:
    """Check a cohort directory, images included; never raises on bad data.

    Args:
        path: the cohort folder.
        read_images: open every image (slow on big cohorts; False checks only the tables).
        progress: called as ``progress(done, total)`` after each image (for a progress bar).
        strict_paths: make manifest paths leading outside the folder errors (None: as
            study.yaml says; by default a warning).
        preprocess: the ``PreprocessConfig`` whose window the fields of view are compared
            with (default: the default one).

    Returns:
        A :class:`ValidationReport` with every error and warning and a summary.
    """
    root = Path(path)
    try:
        cohort, problems = _load(root, strict_paths)
    except OSError as exc:  # an unreadable file (permissions, I/O): say which, and why
        file = Path(os.fsdecode(exc.filename)) if exc.filename else root
        rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        problems = [Problem("error", rel, problem=describe_os_error(exc).removeprefix(
            f"{file}: "), fix="make the file readable by your user")]
        cohort = None
    except Exception as exc:  # a table that breaks the reader itself: report, don't raise
        problems = [Problem("error", str(root), problem=f"tables unreadable ({type(exc).__name__}: "
                            f"{exc})", fix="check the CSV files; please report this as a bug")]
        cohort = None
    report = ValidationReport(root=root)
    report.errors = [p for p in problems if p.severity == "error"]
    report.warnings = [p for p in problems if p.severity != "error"]
    partial = cohort is None
    if cohort is None:
        cohort = _partial_cohort(root)
        if cohort is None:
            return report
    files = _image_files(cohort)
    geometry: dict[str, Any] = {}
    dynamic: dict[str, Any] = {}
    if read_images:
        geometry, dynamic = _check_images(cohort, files, report, progress, preprocess)
        report.errors, report.warnings = collapse(report.errors), collapse(report.warnings)
    reviews = count_reviews(root / "study.yaml")
    if reviews:
        report.warnings.append(Problem(
            "warning", "study.yaml", problem=f"{reviews} guess(es) of `medimp init` still "
            "marked '# review'", fix="check each marked line of study.yaml (columns, values, "
            "units, dates, exams, variables, outcomes), correct it if needed and delete its "
            "'# review' mark"))
    try:
        if not partial:  # on broken tables these warnings would be noise
            report.warnings.extend(_structure_warnings(cohort))
        report.summary = _summary(cohort, len(files))
        if geometry:
            report.summary["geometry"] = geometry
        if dynamic:
            report.summary["dynamic"] = dynamic
    except Exception:  # the tables were broken; their errors are already listed
        report.summary = {}
    return report


def _image_files(cohort: Cohort) -> dict[tuple[str, str | None], list[dict[str, Any]]]:
    """(manifest path, series_uid) of every existing image -> its manifest rows."""
    files: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for rec in cohort.manifest.to_dict("records"):
        rel, uid = rec.get("path"), rec.get("series_uid")
        if isinstance(rel, str) and rel and cohort._resolve(rel).exists():
            key = (rel, uid if isinstance(uid, str) and uid else None)
            files.setdefault(key, []).append(rec)
    return files


def _check_images(cohort: Cohort, files: dict[tuple[str, str | None], list[dict[str, Any]]],
                  report: ValidationReport, progress: Callable[[int, int], None] | None,
                  preprocess: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Open every image, add its problems to ``report`` (and the geometry warnings of
    ``medimp.data.cohort._geometry_checks`` for the ``preprocess`` window); return the
    geometry and the dynamic series found, per exam ("patient exam")."""
    from medimp.data.pipeline.preprocess import PreprocessConfig

    geometry: dict[str, Any] = {}
    dynamic: dict[str, Any] = {}
    phase_geometry: dict[tuple[str, str], dict[str, Any]] = {}
    geometry_files: dict[tuple[str, str, str], str] = {}
    total = len(files)
    for i, ((rel, _), rows) in enumerate(files.items()):
        problems, info = _check_image(cohort, rel, rows)
        for p in problems:
            (report.errors if p.severity == "error" else report.warnings).append(p)
        exam_key = f"{rows[0]['patient_id']} {rows[0]['exam']}"
        if "geometry" in info:
            geometry.setdefault(exam_key, info["geometry"])
            for r in rows:
                k = (str(r["patient_id"]), str(r["exam"]))
                phase_geometry.setdefault(k, {})[str(r["phase"])] = info["geometry"]
                geometry_files[(*k, str(r["phase"]))] = rel
        if "dynamic" in info:
            dynamic[exam_key] = info["dynamic"]
        if progress is not None:
            progress(i + 1, total)
    pre = preprocess or PreprocessConfig()
    found = geometry_problems(phase_geometry, pre.shape, pre.spacing, geometry_files)
    report.warnings.extend(_one_suggestion(found, list(geometry.values())))
    report.warnings.extend(implausible_geometry(phase_geometry, geometry_files))
    return geometry, dynamic


#: a volume with fewer voxels along an axis, or a field of view under this many millimetres
#: along an axis, cannot hold a kidney (a transplanted kidney is about 110 x 60 x 50 mm)
MIN_VOXELS, MIN_FOV_MM = 4, 50.0


def implausible_geometry(exams: dict[tuple[str, str], dict[str, dict[str, Any]]],
                         files: dict[tuple[str, str, str], str]) -> list[Problem]:
    """One warning for the volumes whose geometry cannot be the study's organ: fewer than
    ``MIN_VOXELS`` slices along an axis, or a field of view under ``MIN_FOV_MM`` mm."""
    odd = [(k, ph, g) for k, phases in exams.items() for ph, g in phases.items()
           if min(g["shape"]) < MIN_VOXELS or min(g["fov_mm"]) < MIN_FOV_MM]
    if not odd:
        return []
    total = sum(len(p) for p in exams.values())
    (pid, exam), ph, g = odd[0]
    what = "x".join(map(str, g["shape"])) + " voxels, " + \
        "x".join(f"{f:.0f}" for f in g["fov_mm"]) + " mm"
    return [Problem(
        "warning", files.get((pid, exam, ph)), pid, exam, ph,
        f"{len(odd)} of {total} volume(s) cannot hold a kidney: fewer than {MIN_VOXELS} "
        f"voxels or under {MIN_FOV_MM:g} mm along an axis (the first: {what})",
        "check that these are the study's DCE volumes (not a localiser, a few slices or "
        "another organ's series); remove them from manifest.csv otherwise")]


def _one_suggestion(problems: list[Problem], geometries: list[dict[str, Any]]) -> list[Problem]:
    """The small-field-of-view warning proposes the spacing and shape of ``medimp validate
    --suggest-preprocess`` (for a CPU), so that both say the same."""
    from dataclasses import replace


    if not geometries:
        return problems
    out = []
    for p in problems:
        if "of the preprocessing window" in p.problem:
            sug = suggest_preprocess(geometries, max_side=32)
            p = replace(p, fix=f"set preprocess.spacing={sug['spacing']} and preprocess.shape="
                        f"{sug['shape']} (what `medimp validate --suggest-preprocess` proposes "
                        "for a CPU; pass them with --set to medimp pretrain)")
        out.append(p)
    return out


def _partial_cohort(root: Path) -> Cohort | None:
    """A best-effort Cohort over broken tables, so that images can still be checked."""
    import pandas as pd


    try:
        study = load_study(root / "study.yaml")
    except Exception:
        study = default_study()
    tables = {}
    for name in ("manifest", "exams", "patients"):
        try:
            df = pd.read_csv(root / f"{name}.csv", dtype=str, skipinitialspace=True)
            df.columns = [str(c).strip() for c in df.columns]
        except Exception:
            df = pd.DataFrame()
        tables[name] = df
    m = tables["manifest"]
    if not {"patient_id", "exam", "phase", "path"} <= set(m.columns):
        return None
    for name, cols in (("exams", ["patient_id", "exam"]), ("patients", ["patient_id"])):
        if not set(cols) <= set(tables[name].columns):
            tables[name] = pd.DataFrame(columns=cols)
    for name in ("exams", "patients"):
        df = tables[name]
        for c in df.columns:
            if c not in ("patient_id", "exam"):
                df[c] = pd.to_numeric(df[c], errors="coerce")
    return Cohort(root=root, study=study, manifest=m, exams=tables["exams"],
                  patients=tables["patients"])
