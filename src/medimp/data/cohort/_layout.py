"""A manifest proposed from an image tree as a lab stores it (patient / visit / sequence).

``medimp init`` walks the folder, takes every ``.nii``/``.nii.gz`` file and every DICOM
series folder as one image, and finds in its path the patient (an id of the tables), the
exam (a label of the tables, ``J15`` = ``D15`` = ``day 15``) and the phase (keywords:
``ss_IV``/``pre`` -> pre, ``ART`` -> arterial, ``tub`` -> tubular; a 4D file without a phase
keyword is a whole ``dynamic`` series). The patterns found (``images/sub-{patient}/ses-{exam}/
{phase}.nii.gz``) are shown with their counts for the user to confirm, and the files that
match no pattern are listed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medimp.data.cohort.import_medimp import map_phase
from medimp.study import DYNAMIC_PHASE

__all__ = ["Layout", "exam_key", "propose_manifest"]

_NIFTI = (".nii.gz", ".nii")
_EXAM = re.compile(r"(?i)(?<![a-z])(d|j|day|jour|w|wk|week|m|mo|month|mois|y|yr|year)"
                   r"[\s_\-]*0*(\d+)(?![0-9])")
_UNIT = {"d": "D", "j": "D", "day": "D", "jour": "D", "w": "W", "wk": "W", "week": "W",
         "m": "M", "mo": "M", "month": "M", "mois": "M", "y": "Y", "yr": "Y", "year": "Y"}
_PATIENT_WORDS = re.compile(r"(?i)^(sub|subj|subject|p|pat|patient|pt|id|case|s)?[\s_\-]*0*"
                            r"(\d+)$")


def exam_key(text: str) -> tuple[str, int] | None:
    """``J15`` / ``D15`` / ``Day 15`` / ``ses-d015`` -> ``("D", 15)``; None if no label."""
    m = _EXAM.search(text)
    if not m:
        return None
    return _UNIT[m.group(1).lower()], int(m.group(2))


@dataclass
class Layout:
    """What the image tree says: manifest rows, the patterns, what matched nothing."""

    rows: list[dict[str, str]] = field(default_factory=list)
    patterns: Counter[str] = field(default_factory=Counter)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    phase_words: dict[str, str] = field(default_factory=dict)  # path component -> phase


def _images(root: Path, skip: set[str]) -> list[Path]:
    """NIfTI files and DICOM series folders under ``root`` (hidden entries skipped)."""
    out: list[Path] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(p.startswith(".") for p in rel.parts) or rel.parts[0] in skip:
            continue
        if (path.is_file() and path.name.lower().endswith(_NIFTI)) or (
                path.is_dir() and _is_series(path)):
            out.append(path)
    return out


def _is_series(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    for f in files[:3]:
        try:
            with f.open("rb") as fh:
                if fh.read(132)[128:] == b"DICM":
                    return True
        except OSError:
            continue
    return False


def _match_patient(part: str, ids: dict[str, str]) -> str | None:
    """The table's patient id that a path component names (``sub-007`` -> ``007``)."""
    if part in ids.values():
        return part
    tokens = set(re.split(r"[\s_\-.]+", part))
    hits = [pid for pid in ids.values() if pid in tokens]
    if len(hits) == 1:
        return hits[0]
    m = _PATIENT_WORDS.match(part)
    if m:
        return ids.get(str(int(m.group(2))))
    return None


def _phases(part: str) -> list[str]:
    """Phases a path component names: import-medimp's keywords, and pre-contrast words."""
    found = map_phase(part)
    if not found and set(re.split(r"[^a-z0-9]+", part.lower())) & {
            "pre", "precontrast", "native", "baseline", "sans"}:
        found = ["pre"]
    return found


def _strip(name: str) -> str:
    low = name.lower()
    for s in _NIFTI:
        if low.endswith(s):
            return name[: -len(s)]
    return name


def _is_4d(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        import nibabel as nib

        shape = nib.load(str(path)).shape
    except Exception:  # a damaged file: validate names it
        return False
    return len(shape) == 4 and shape[3] > 1


def propose_manifest(root: Path, patient_ids: list[str], exams: list[str],
                     skip: set[str] | None = None) -> Layout:
    """Manifest rows (patient_id, exam, phase, path) for the images under ``root``."""
    ids = {}
    for pid in patient_ids:
        ids[pid] = pid
        if pid.isdigit():
            ids.setdefault(str(int(pid)), pid)
    by_key = {exam_key(e): e for e in exams}
    layout = Layout()
    seen: dict[tuple[str, str, str], str] = {}
    for path in _images(root, skip or set()):
        rel = path.relative_to(root).as_posix()
        parts = list(path.relative_to(root).parts)
        parts[-1] = _strip(parts[-1])
        pid = exam = phase = None
        pattern = list(parts)
        for i, part in enumerate(parts):
            if pid is None and (found := _match_patient(part, ids)) is not None:
                pid = found
                pattern[i] = part.replace(found, "{patient}") if found in part else "{patient}"
                continue
            if exam is None and (part in exams or by_key.get(exam_key(part)) is not None):
                exam = part if part in exams else by_key[exam_key(part)]
                pattern[i] = "{exam}" if part == exam else _EXAM.sub("{exam}", part, count=1)
                continue
            phases = _phases(part)
            if phase is None and len(phases) == 1:
                phase = phases[0]
                pattern[i] = "{phase}"
                layout.phase_words.setdefault(part, phase)
        if phase is None and pid and exam and _is_4d(path):
            phase = DYNAMIC_PHASE
            pattern[-1] = f"{{{DYNAMIC_PHASE}}}"
        missing = [w for w, v in (("patient", pid), ("exam", exam), ("phase", phase)) if not v]
        if missing:
            layout.unmatched.append((rel, f"no {' / '.join(missing)} found in the path"))
            continue
        assert pid is not None and exam is not None and phase is not None
        key = (pid, exam, phase)
        if key in seen:
            layout.unmatched.append((rel, f"a second image for {pid} {exam} {phase} (the first "
                                          f"is {seen[key]})"))
            continue
        seen[key] = rel
        suffix = rel[len(rel) - (len(path.name) - len(_strip(path.name))):] if \
            path.is_file() else ""
        layout.patterns["/".join(pattern) + suffix] += 1
        layout.rows.append({"patient_id": pid, "exam": exam, "phase": phase, "path": rel})
    return layout
