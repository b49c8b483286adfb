"""``embed``'s ``patient_latest`` rows and the evaluation's agree on irregular exam dates."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from medimp.data import read_cohort
from medimp.evaluate.embeddings import level_data
from medimp.train import embed, pretrain


def test_embed_and_evaluation_pick_the_same_latest_exam(simulated_cohort, tiny_config,
                                                        tmp_path) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, root)
    exams = pd.read_csv(root / "exams.csv", dtype={"patient_id": str})
    # each patient's last exam in study order happened first (day 1): irregular dates
    order = {e: i for i, e in enumerate(["D15", "D30", "M3", "M12"])}
    last = exams.assign(_o=exams.exam.map(order)).sort_values("_o").groupby("patient_id").tail(1)
    exams.loc[last.index, "days_post_transplant"] = 1
    exams.to_csv(root / "exams.csv", index=False)
    cohort = read_cohort(root)
    run = pretrain(root, tmp_path / "run", tiny_config("method=random_init"), progress=False)
    df = embed(run, root)
    written = df[df["level"] == "patient_latest"].set_index("patient_id")["exam"].to_dict()
    assert written == cohort.latest_exams()
    several = [p for p, g in exams.groupby("patient_id") if len(g) > 1]
    assert several and all(written[p] != last.set_index("patient_id").at[p, "exam"]
                           for p in several)
    # the evaluation computes the same latest exam from the exam rows
    patients = np.array(sorted(written))
    data = level_data(df[df["level"] == "exam"], "patient_latest", cohort, patients)
    assert dict(zip(data.patient_id, data.exam, strict=True)) == written
