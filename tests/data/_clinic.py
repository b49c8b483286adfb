"""A clinic's export for the tests: the tables of ``tests/fixtures/clinic_export`` (made from
the simulated cohort ``make_cohort(24, (16, 16, 16), 0)``) and that cohort's volumes laid out
as a lab stores them: ``imaging/sub-<id>/ses-<visit>/DCE_<sequence>.nii.gz``, with a
localiser and a notes file that are no phase."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from tests.conftest import FIXTURES

EXPORT = FIXTURES / "clinic_export"
VISIT = {"D15": "J15", "D30": "J30", "M3": "M3", "M12": "M12"}
SEQUENCE = {"pre": "DCE_ss_IV", "arterial": "DCE_ART", "tubular": "DCE_tub"}


def clinic_id(pid: str) -> str:
    return f"{int(pid.removeprefix('P')):03d}"


def clinic_export(sim: Path, dst: Path) -> Path:
    """Copy the export's tables to ``dst`` and lay out the simulated volumes lab-style."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("patients.csv", "exams.csv"):
        shutil.copy(EXPORT / name, dst / name)
    manifest = pd.read_csv(sim / "manifest.csv", dtype=str)
    for pid, exam, phase, path in zip(manifest["patient_id"], manifest["exam"],
                                      manifest["phase"], manifest["path"], strict=True):
        out = (dst / "imaging" / f"sub-{clinic_id(pid)}" / f"ses-{VISIT[exam]}"
               / f"{SEQUENCE[phase]}.nii.gz")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sim / path, out)
    first = sorted((dst / "imaging").glob("sub-*/ses-*"))[0]
    shutil.copy(next(first.glob("*.nii.gz")), first / "localizer.nii.gz")
    (first / "notes.txt").write_text("scanner 2, contrast 0.1 mmol/kg\n", encoding="utf-8")
    return dst
