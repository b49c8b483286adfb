"""Ingestion timings: read_cohort / validate_cohort on large tables, and reader throughput.

Run: ``PYTHONPATH=src python benchmarks/ingest.py [--patients 1000]``. Writes
``benchmarks/results/ingest.json`` and prints a table. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from _common import timeit, write_result

from medimp.data import read_cohort, read_volume, validate_cohort
from medimp.study import default_study, save_study

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 2
BENCH_SMALL = ['--patients', '50', '--files', '4']

EXAMS = ("D15", "D30", "M3", "M12")
PHASES = ("pre", "arterial", "tubular")


def _tables(root: Path, n: int, n_files: int, shape: tuple[int, int, int]) -> int:
    """A cohort of ``n`` patients x 4 exams x 3 phases whose rows share ``n_files`` images."""
    rng = np.random.default_rng(0)
    save_study(default_study(), root / "study.yaml")
    paths = []
    for i in range(n_files):
        rel = f"images/v{i:04d}.nii.gz"
        (root / "images").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(rng.uniform(0, 100, shape).astype(np.float32), np.eye(4)),
                 str(root / rel))
        paths.append(rel)
    man = [{"patient_id": f"P{i:05d}", "exam": e, "phase": ph,
            "path": paths[(i * 12 + j * 3 + k) % n_files]}
           for i in range(n) for j, e in enumerate(EXAMS) for k, ph in enumerate(PHASES)]
    exams = [{"patient_id": f"P{i:05d}", "exam": e, "days_post_transplant": 15, "egfr": 40.5,
              "creatinine_mg_dl": 1.2, "creatinine_cv": 10.0} for i in range(n) for e in EXAMS]
    pats = [{"patient_id": f"P{i:05d}", "donor_age": 50, "donor_type": "deceased",
             "recipient_age": 40, "recipient_sex": "F", "egfr_y2": 50.0, "egfr_y3": None,
             "egfr_y4": None, "graft_loss": 0, "graft_loss_days": None, "followup_days": 1000}
            for i in range(n)]
    pd.DataFrame(man).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(exams).to_csv(root / "exams.csv", index=False)
    pd.DataFrame(pats).to_csv(root / "patients.csv", index=False)
    return len(man)


def _time(fn, repeat: int = 3) -> float:
    return timeit(fn, repeats=repeat, warmup=0).best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=1000, help="patients in the table test")
    ap.add_argument("--files", type=int, default=60, help="distinct 48³ images to read")
    args = ap.parse_args()
    shape = (48, 48, 48)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cohort"
        rows = _tables(root, args.patients, args.files, shape)
        t_read = _time(lambda: read_cohort(root))
        t_tables = _time(lambda: validate_cohort(root, read_images=False))
        t_full = _time(lambda: validate_cohort(root), repeat=1)
        files = sorted((root / "images").glob("*.nii.gz"))
        t_nifti = _time(lambda: [read_volume(f) for f in files], repeat=1) / len(files)
    results = {
        "machine": platform.platform(), "patients": args.patients, "manifest_rows": rows,
        "read_cohort_s": round(t_read, 3), "validate_tables_only_s": round(t_tables, 3),
        "validate_full_s": round(t_full, 3), "distinct_images": args.files,
        "nifti_48cube_read_ms": round(1000 * t_nifti, 2),
    }
    write_result("ingest", results)


if __name__ == "__main__":
    main()
