"""One exam order everywhere: ``patient_latest`` is the exam with the most days after
transplant (then study order), in the evaluation as in ``medimp.data.Cohort``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from medimp.data import read_cohort
from medimp.evaluate.embeddings import level_data
from tests.evaluate.conftest import truth_embeddings


def irregular_dates(src: Path, dst: Path) -> Path:
    """A copy of ``src`` where P000's M12 exam happened at day 50 (before its M3, day 91) and
    P001's D30 exam at day 10 (before its D15): real cohorts have such irregular dates."""
    shutil.copytree(src, dst)
    exams = pd.read_csv(dst / "exams.csv", dtype={"patient_id": str})
    for pid, exam, day in (("P000", "M12", 50), ("P001", "D30", 10)):
        exams.loc[(exams.patient_id == pid) & (exams.exam == exam), "days_post_transplant"] = day
    exams.to_csv(dst / "exams.csv", index=False)
    return dst


def test_patient_latest_follows_days_not_labels(eval_cohort, tmp_path) -> None:
    root = irregular_dates(eval_cohort, tmp_path / "cohort")
    cohort = read_cohort(root)
    emb = truth_embeddings(root, noise=0.1)
    patients = np.array(sorted(cohort.patients["patient_id"]))
    data = level_data(emb, "patient_latest", cohort, patients)
    latest = dict(zip(data.patient_id, data.exam, strict=True))
    assert latest["P000"] == "M3"  # M12 (day 50) came before M3 (day 91)
    assert latest["P002"] == "M12"
    assert latest == cohort.latest_exams()
    # the exam level lists each patient's exams in the same order
    exams = level_data(emb, "exam", cohort, patients)
    p1 = [e for p, e in zip(exams.patient_id, exams.exam, strict=True) if p == "P001"]
    assert p1 == ["D30", "D15", "M3", "M12"]
