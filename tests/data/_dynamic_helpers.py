"""Dynamic (4D) cohorts built by stacking the simulator's 3D phases (the simulator is unchanged).

Every exam of a simulated cohort becomes one dynamic acquisition of ``len(SCHEDULE)`` frames,
10 s apart: frames 0-2 repeat the pre-contrast volume, frames 3-10 the arterial one and frames
11-25 the tubular one. With the study's delays (pre 0 s, arterial 30 s, tubular 180 s) and the
arrival detected between frames 2 and 3 (20-30 s), the chosen frames hold exactly the 3D phases
of the original cohort, so both cohorts must give the same preprocessed tensors. Exams with a
missing phase keep their 3D files (a cohort may mix both kinds of exam).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

PHASES = ("pre", "arterial", "tubular")
SCHEDULE = ["pre"] * 3 + ["arterial"] * 8 + ["tubular"] * 15
TIMES = [10.0 * i for i in range(len(SCHEDULE))]
EXPECTED_FRAMES = {"pre": 2, "arterial": 5, "tubular": 20}


def _copy_tables(src: Path, dst: Path) -> pd.DataFrame:
    dst.mkdir(parents=True)
    for name in ("exams.csv", "patients.csv", "study.yaml"):
        shutil.copy2(src / name, dst / name)
    return pd.read_csv(src / "manifest.csv", dtype=str)


def _exams(manifest: pd.DataFrame, src: Path, dst: Path, rows_out: list[dict]):
    """Yield (patient, exam, phase -> path) of the complete exams; copy the others as 3D."""
    for (pid, exam), rows in manifest.groupby(["patient_id", "exam"], sort=True):
        paths = dict(zip(rows["phase"], rows["path"], strict=True))
        if set(PHASES) <= set(paths):
            yield pid, exam, paths
            continue
        for rec in rows.to_dict("records"):
            target = dst / rec["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if (src / rec["path"]).is_dir():
                shutil.copytree(src / rec["path"], target)
            else:
                shutil.copy2(src / rec["path"], target)
            rows_out.append({k: rec[k] for k in ("patient_id", "exam", "phase", "path")})


def make_nifti4d_cohort(src: Path, dst: Path, *, sidecar: bool = True) -> Path:
    """One 4D NIfTI (time last) per exam with a dcm2niix-style JSON sidecar."""
    manifest = _copy_tables(src, dst)
    rows: list[dict] = []
    for pid, exam, paths in _exams(manifest, src, dst, rows):
        imgs = {ph: nib.load(src / paths[ph]) for ph in PHASES}
        data = {ph: np.asarray(img.dataobj) for ph, img in imgs.items()}
        arr = np.stack([data[ph] for ph in SCHEDULE], axis=-1)
        rel = f"images/{pid}/{exam}/dce.nii.gz"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(arr, imgs["pre"].affine)
        nib.save(img, dst / rel)
        if sidecar:
            (dst / rel.replace(".nii.gz", ".json")).write_text(json.dumps(
                {"Modality": "MR", "FrameTimesStart": TIMES}))
        rows.append({"patient_id": pid, "exam": exam, "phase": "dynamic", "path": rel})
    pd.DataFrame(rows).to_csv(dst / "manifest.csv", index=False)
    return dst
