"""Convert the original MEDIMP data layout into a medimp cohort directory.

The original code (Milecki et al., MIDL 2023) expected::

    <root>/<patient>/<exam>/<n>_WATER_AX_LAVA-Flex_<ss_IV|ART|tub>/   one sequence per folder
    df_clinicobiological_data.csv   patient, GFR D15..M12, age_donor, std_creat_level D15..M12
    gpt_augs.txt                    LLM paraphrases of the three prompt sentences

``import_medimp`` maps exam folders (``J15``/``J30`` are aliases of ``D15``/``D30``) and
sequence folders (``ss_IV`` -> pre, ``ART`` -> arterial, ``tub`` -> tubular, any case) to the
cohort layout, turns the wide clinical table into ``exams.csv`` and ``patients.csv``, writes a
``study.yaml`` adapted to the original's variables, copies ``gpt_augs.txt`` to
``prompts/gpt_augs.txt``, and reports everything it could not map. The cohort is written
atomically: a failed import leaves nothing behind and never touches an existing cohort unless
``overwrite``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from medimp._io import atomic_dir, refuse_foreign_entries
from medimp.data._errors import ImportMappingError
from medimp.data.cohort._import_clinical import (
    ImportReport,
    _exam_label,
    _read_clinical,
)
from medimp.data.cohort.read import _load
from medimp.study import Bin, Study, TextVariable, default_study, save_study

__all__ = ["CREATININE_STD_BINS", "ImportReport", "import_medimp", "import_study", "map_phase"]

#: Bins of the original's ``std_creat_level`` (standard deviation of serum creatinine over the
#: weeks before the exam; assumed µmol/L, fixture values 1-173). 20 µmol/L is about 15% of a
#: typical post-transplant creatinine of ~130 µmol/L, i.e. the same cut as the default 15%
#: coefficient of variation. Edit study.yaml if your unit or cut differs.
CREATININE_STD_BINS = [Bin(label="stable", upper=20.0), Bin(label="unstable")]

_NIFTI = (".nii", ".nii.gz")


def import_study(name: str = "medimp-import") -> Study:
    """The default study adapted to the original's columns (``creatinine_std``)."""
    base = default_study(name)
    variables = []
    for v in base.variables:
        if v.name == "creatinine_variability":
            v = TextVariable(**{**v.model_dump(), "column": "creatinine_std",
                                "bins": [b.model_dump() for b in CREATININE_STD_BINS]})
        variables.append(v)
    return base.model_copy(update={"variables": variables, "baseline_columns": ["donor_age"],
                                   "exam_columns": ["egfr", "creatinine_std"]})


def map_phase(folder_name: str) -> list[str]:
    """Phases whose keyword rule matches a sequence folder name (case-insensitive).

    ``ss_IV`` -> pre, ``ART`` -> arterial, ``tub`` -> tubular; tokens are split on
    non-alphanumerics so that e.g. ``PARTIAL`` is not arterial. One match is a mapping; none or
    several are reported.
    """
    low = folder_name.lower()
    tokens = set(re.split(r"[^a-z0-9]+", low))
    found = []
    if re.search(r"ss[_\-\s]?iv(?![a-z])", low):
        found.append("pre")
    if tokens & {"art", "arterial", "arteriel"}:
        found.append("arterial")
    if tokens & {"tub", "tubular", "tubulaire"}:
        found.append("tubular")
    return found


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _scan_images(root: Path, exams: list[str], rep: ImportReport) -> tuple[
        dict[tuple[str, str, str], Path | None], set[str]]:
    """(patient, exam, phase) -> image file/folder (None: sequence folder without image)."""
    found: dict[tuple[str, str, str], Path | None] = {}
    patients: set[str] = set()
    for pdir in _visible(root):
        if not pdir.is_dir():
            hint = (" (the original code points every sequence at it: see --fallback-volume)"
                    if pdir.name.lower().endswith(_NIFTI) else "")
            rep.note("info", f"file {pdir.name!r} in the image root is not a patient folder; "
                     f"ignored{hint}", file=str(pdir))
            continue
        pid = pdir.name.strip()
        patients.add(pid)
        for edir in _visible(pdir):
            label, alias = _exam_label(edir.name, exams) if edir.is_dir() else (None, None)
            if label is None:
                rep.note("warning", f"{edir.name!r} is not an exam folder of {exams}; ignored",
                         "rename it to an exam label (D15, D30, M3, M12)", file=str(edir),
                         patient=pid)
                continue
            if alias:
                rep.note("info", f"exam folder {alias}", file=str(edir), patient=pid,
                         exam=label)
            for sdir in _visible(edir):
                phases = map_phase(sdir.name) if sdir.is_dir() else []
                if len(phases) != 1:
                    why = "matches no phase rule" if not phases else f"matches {phases}"
                    rep.note("warning", f"sequence folder {sdir.name!r} {why}; ignored",
                             "rename it with ss_IV / ART / tub", file=str(sdir), patient=pid,
                             exam=label)
                    continue
                key = (pid, label, phases[0])
                if key in found:
                    rep.note("warning", f"second {phases[0]} sequence {sdir.name!r}; ignored "
                             f"(kept {found[key].name if found[key] else 'the first'})",
                             "keep one sequence per phase", file=str(sdir), patient=pid,
                             exam=label, phase=phases[0])
                    continue
                files = [f for f in _visible(sdir) if f.is_file()]
                nifti = [f for f in files if f.name.lower().endswith(_NIFTI)]
                if len(nifti) > 1:
                    rep.note("warning", f"{len(nifti)} NIfTI files in one sequence folder; "
                             "ignored", "keep one volume per sequence folder", file=str(sdir),
                             patient=pid, exam=label, phase=phases[0])
                    continue
                found[key] = nifti[0] if nifti else (sdir if files else None)
    return found, patients


# What an imported cohort folder holds (and what later stages add to it, the preprocessing
# cache): ``overwrite`` replaces only a folder made of these.
IMPORTED_ENTRIES = frozenset({"manifest.csv", "exams.csv", "patients.csv", "study.yaml", "images",
                              "prompts", "import_report.json", ".medimp_cache"})


def import_medimp(
    root: str | os.PathLike[str],
    clinical_csv: str | os.PathLike[str],
    out: str | os.PathLike[str],
    augs: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    fallback_volume: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Convert the original MEDIMP layout into a cohort directory at ``out``.

    Args:
        root: the image root (``dummy_mri_dataset``: patient/exam/sequence folders).
        clinical_csv: the wide clinical table (``df_clinicobiological_data.csv``).
        out: the cohort folder to create (atomically).
        augs: ``gpt_augs.txt`` to copy to ``prompts/gpt_augs.txt`` in the cohort.
        overwrite: replace a non-empty ``out``.
        fallback_volume: a NIfTI used for every sequence folder without an image (what the
            original code did with ``dummy_mri.nii.gz``); each use is reported.
        progress: called as ``progress(done, total)`` while copying images.

    Raises:
        ImportMappingError: nothing usable (no image at all, unreadable CSV...); nothing is
            written.
        FileExistsError: ``out`` is not empty and ``overwrite`` is False, or ``out`` holds
            files that an import does not write (``overwrite`` replaces an earlier import,
            never a folder of the user's own files).
    """
    root, clinical_csv, out = Path(root), Path(clinical_csv), Path(out)
    fallback = _check_inputs(root, clinical_csv, fallback_volume, augs)
    study = import_study()
    exams = study.exam_names
    rep = ImportReport(out=out)
    baseline, per_exam = _read_clinical(clinical_csv, exams, rep)
    images, folder_patients = _scan_images(root, exams, rep)
    _report_images(root, images, fallback, rep)
    _report_coverage(study, root, clinical_csv, images=images, folder_patients=folder_patients,
                     baseline=baseline, per_exam=per_exam, fallback=fallback, rep=rep)

    if overwrite:
        refuse_foreign_entries(out, IMPORTED_ENTRIES, what="cohort folder written by "
                               "import-medimp")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        manifest = _copy_images(tmp, study, images, fallback=fallback, rep=rep,
                                progress=progress)
        _write_tables(tmp, study, manifest, baseline=baseline, per_exam=per_exam, rep=rep)
        if augs is not None:
            _copy_augs(tmp, out, Path(augs), rep)
        _self_check(tmp)
        (tmp / "import_report.json").write_text(rep.to_json(), encoding="utf-8")
    return rep


def _check_inputs(root: Path, clinical_csv: Path,
                  fallback_volume: str | os.PathLike[str] | None,
                  augs: str | os.PathLike[str] | None) -> Path | None:
    """Refuse absent inputs before anything is read; return the fallback volume (or None)."""
    if not root.is_dir():
        raise ImportMappingError("image root folder not found", file=root,
                                 fix="give the folder holding one folder per patient")
    if not clinical_csv.is_file():
        raise ImportMappingError("clinical CSV not found", file=clinical_csv,
                                 fix="give df_clinicobiological_data.csv with --clinical")
    fallback = Path(fallback_volume) if fallback_volume else None
    if fallback is not None and not (fallback.is_file()
                                     and fallback.name.lower().endswith(_NIFTI)):
        raise ImportMappingError("fallback volume is not a NIfTI file", file=fallback,
                                 fix="give a .nii or .nii.gz file")
    if augs is not None and not Path(augs).is_file():
        raise ImportMappingError("paraphrase file not found", file=augs,
                                 fix="give gpt_augs.txt with --augs, or leave it out")
    return fallback


def _report_images(root: Path, images: dict[tuple[str, str, str], Path | None],
                   fallback: Path | None, rep: ImportReport) -> None:
    """Exam labels kept, empty sequence folders; refuse a layout with no image at all."""
    if any(e in ("D15", "D30") for _, e, _ in images):
        rep.note("info", "exam labels D15/D30 kept: the original prompt code looked them up as "
                 "J15/J30 and silently missed them; medimp uses one label set (J15/J30 folders "
                 "or columns are read as D15/D30)", file=str(root))
    empty = sorted(k for k, v in images.items() if v is None)
    if empty and fallback is None:
        rep.note("warning", f"{len(empty)} sequence folder(s) hold no image; left out",
                 "copy the volumes in, or pass --fallback-volume to use one volume for all "
                 "(as the original code did)", file=str(root))
    if not any(v is not None for v in images.values()) and fallback is None:
        raise ImportMappingError(
            f"no image in any of the {len(images)} sequence folders (e.g. only .placeholder "
            "files)", file=root,
            fix="copy the volumes into the sequence folders, or pass --fallback-volume "
                "dummy_mri.nii.gz to point every sequence at one volume as the original did")


def _report_coverage(study: Study, root: Path, clinical_csv: Path, *,
                     images: dict[tuple[str, str, str], Path | None], folder_patients: set[str],
                     baseline: dict[str, dict[str, Any]],
                     per_exam: dict[tuple[str, str], dict[str, Any]], fallback: Path | None,
                     rep: ImportReport) -> None:
    """What the images and the clinical table do not both cover (patients, exams, phases)."""
    for pid in sorted(folder_patients - set(baseline)):
        rep.note("warning", "patient folder without a row in the clinical CSV; its clinical "
                 "values are empty", "add the patient to the clinical CSV", patient=pid,
                 file=clinical_csv.name)
    for pid in sorted(set(baseline) - folder_patients):
        rep.note("warning", "patient in the clinical CSV without an image folder",
                 "add its image folder if it exists", patient=pid, file=str(root))
    image_exams = {(k[0], k[1]) for k, v in images.items() if v is not None or fallback}
    for key in sorted(set(per_exam) - image_exams):
        rep.note("warning", "exam has clinical values but no image folder (missing exam); "
                 "kept in exams.csv without images", "add the exam's images if they exist",
                 patient=key[0], exam=key[1])
    for pid, exam in sorted(image_exams):
        if (pid, exam) not in per_exam and pid in baseline:
            rep.note("warning", "exam has images but no clinical values", patient=pid,
                     exam=exam, fix="fill in GFR/std_creat_level for this exam")
        have = {ph for (p, e, ph), v in images.items() if p == pid and e == exam}
        for ph in study.phase_names:
            if ph not in have:
                rep.note("warning", "no sequence folder for this phase", patient=pid,
                         exam=exam, phase=ph, fix="add the sequence if it was acquired")


def _copy_images(tmp: Path, study: Study, images: dict[tuple[str, str, str], Path | None], *,
                 fallback: Path | None, rep: ImportReport,
                 progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    """Copy every volume (or DICOM folder) into ``tmp/images``; return the manifest rows."""
    manifest = []
    eorder = {e: i for i, e in enumerate(study.exam_names)}
    porder = {p: i for i, p in enumerate(study.phase_names)}
    todo = sorted(((k, v) for k, v in images.items() if v is not None or fallback),
                  key=lambda kv: (kv[0][0], eorder[kv[0][1]], porder[kv[0][2]]))
    fb_rel = None
    if fallback is not None and any(v is None for _, v in todo):
        fb_rel = f"images/_fallback/{fallback.name}"
        (tmp / fb_rel).parent.mkdir(parents=True)
        shutil.copy2(fallback, tmp / fb_rel)
    for n, ((pid, exam, phase), src) in enumerate(todo):
        if src is None:
            rel = fb_rel
            rep.fallback_volumes += 1
        elif src.is_dir():
            rel = f"images/{pid}/{exam}/{phase}"
            shutil.copytree(src, tmp / rel, ignore=shutil.ignore_patterns(".*"))
        else:
            suffix = ".nii.gz" if src.name.lower().endswith(".gz") else ".nii"
            rel = f"images/{pid}/{exam}/{phase}{suffix}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
        manifest.append({"patient_id": pid, "exam": exam, "phase": phase, "path": rel})
        if progress is not None:
            progress(n + 1, len(todo))
    if rep.fallback_volumes:
        rep.note("warning", f"{rep.fallback_volumes} volume(s) point at the fallback "
                 f"{fallback.name if fallback else ''} (copied once to {fb_rel})",
                 "replace with the real volumes before training on real data", file=fb_rel)
    return manifest


def _copy_augs(tmp: Path, out: Path, augs: Path, rep: ImportReport) -> None:
    """The original paraphrases, copied to the cohort's ``prompts/gpt_augs.txt``."""
    dest = tmp / "prompts" / "gpt_augs.txt"
    dest.parent.mkdir(parents=True)
    shutil.copy2(augs, dest)
    n_lines = sum(1 for ln in dest.read_text(encoding="utf-8").splitlines() if ln.strip())
    rep.augs_path = out / "prompts" / "gpt_augs.txt"
    rep.note("info", f"paraphrases copied to prompts/gpt_augs.txt ({n_lines} lines)",
             file=str(augs))


def _write_tables(tmp: Path, study: Study, manifest: list[dict[str, Any]], *,
                  baseline: dict[str, dict[str, Any]],
                  per_exam: dict[tuple[str, str], dict[str, Any]], rep: ImportReport) -> None:
    order = {e: i for i, e in enumerate(study.exam_names)}
    days = {e.name: e.days for e in study.exams}
    exam_keys = {(m["patient_id"], m["exam"]) for m in manifest} | set(per_exam)
    patients_all = sorted({p for p, _ in exam_keys} | set(baseline))
    exam_rows = [{"patient_id": p, "exam": e, "days_post_transplant": days[e],
                  "egfr": None, "creatinine_std": None, **per_exam.get((p, e), {})}
                 for p, e in sorted(exam_keys, key=lambda k: (k[0], order[k[1]]))]
    outcome_cols = study.outcomes.columns()
    patient_rows = [{"patient_id": p, "donor_age": None, **baseline.get(p, {}),
                     **dict.fromkeys(outcome_cols)} for p in patients_all]
    pd.DataFrame(manifest, columns=["patient_id", "exam", "phase", "path"]).to_csv(
        tmp / "manifest.csv", index=False)
    pd.DataFrame(exam_rows).to_csv(tmp / "exams.csv", index=False)
    pd.DataFrame(patient_rows).to_csv(tmp / "patients.csv", index=False)
    save_study(study, tmp / "study.yaml")
    rep.patients, rep.exams, rep.volumes = len(patient_rows), len(exam_rows), len(manifest)
    rep.note("info", "days_post_transplant set to the nominal day of each exam "
             "(the original table has no dates)", file="exams.csv")
    rep.note("warning", f"outcomes missing: the original layout has none; columns "
             f"{outcome_cols} left empty", "fill them in patients.csv before `medimp evaluate`",
             file="patients.csv")
    rep.note("info", "std_creat_level imported as exams.csv 'creatinine_std'; prompt bins "
             f"stable < {CREATININE_STD_BINS[0].upper:g} <= unstable (assumed µmol/L)",
             "edit the bins in study.yaml if your unit differs", file="study.yaml")


def _self_check(tmp: Path) -> None:
    """The written cohort must pass read_cohort's checks; otherwise nothing is kept."""

    _, problems = _load(tmp)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ImportMappingError(
            "the converted cohort fails its checks: " + "; ".join(str(p) for p in errors[:5]),
            fix="report this as a medimp bug, with the import report")
