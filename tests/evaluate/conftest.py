"""Fixtures of the evaluate tests: a small cohort with known latent truth, and embeddings
computed from that truth (informative) or from nothing (noise).

The cohort is written in the cohort-directory layout (study.yaml, CSV tables, tiny NIfTI
volumes), so the evaluation reads it exactly as it reads a simulated or real cohort.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medimp.study import default_study, save_study

EXAM_DAYS = {"D15": 15, "D30": 30, "M3": 91, "M12": 365}


def write_cohort(root: Path, n_patients: int = 40, seed: int = 0) -> Path:
    """A cohort whose outcomes follow a latent kidney function (gfr_true) that declines."""
    rng = np.random.default_rng(seed)
    study = default_study("eval-test")
    root.mkdir(parents=True, exist_ok=True)
    save_study(study, root / "study.yaml")
    pats, exams, truth, manifest = [], [], [], []
    for i in range(n_patients):
        pid = f"P{i:03d}"
        mass = rng.uniform(0.3, 1.1)
        fib = rng.uniform(0.0, 0.4)
        decline = max(0.0, rng.normal(2.0 + 10 * fib, 2.0))
        gfr0 = 100 * mass * (1 - fib)

        def gfr(years: float, gfr0=gfr0, decline=decline) -> float:
            return gfr0 - decline * years

        loss_day = next((d for d in range(30, 6 * 365, 30) if gfr(d / 365.25) < 12), None)
        follow = float(rng.uniform(3.5, 5.5) * 365.25)
        lost = loss_day is not None and loss_day < follow
        row = {"patient_id": pid, "donor_age": round(70 - 30 * mass + rng.normal(0, 5), 1),
               "donor_type": rng.choice(["living", "deceased"]),
               "recipient_age": round(rng.uniform(20, 70), 1),
               "recipient_sex": rng.choice(["F", "M"]),
               "graft_loss": int(lost), "graft_loss_days": float(loss_day) if lost else np.nan,
               "followup_days": float(loss_day) if lost else follow}
        for k in (2, 3, 4):
            known = not (lost and loss_day < k * 365.25) and k * 365.25 <= follow
            known = known and rng.random() > 0.1
            row[f"egfr_y{k}"] = round(gfr(k) + rng.normal(0, 4), 1) if known else np.nan
        pats.append(row)
        for exam, days in EXAM_DAYS.items():
            g = gfr(days / 365.25)
            egfr = g + rng.normal(0, 6)
            exams.append({"patient_id": pid, "exam": exam, "days_post_transplant": days,
                          "egfr": round(egfr, 1), "creatinine_mg_dl": round(90 / max(egfr, 5), 2),
                          "creatinine_cv": round(abs(rng.normal(8 + 20 * fib, 4)), 1)})
            truth.append({"patient_id": pid, "exam": exam, "gfr_true": g,
                          "nephron_mass": mass, "fibrosis_fraction": fib,
                          "decline_rate": decline})
            for ph in study.phase_names:
                rel = f"images/{pid}/{exam}/{ph}.nii.gz"
                manifest.append({"patient_id": pid, "exam": exam, "phase": ph, "path": rel})
                vol = rng.normal(0, 1, (8, 8, 8)).astype(np.float32) + g / 50
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(vol, np.eye(4)), root / rel)
    pd.DataFrame(pats).to_csv(root / "patients.csv", index=False)
    pd.DataFrame(exams).to_csv(root / "exams.csv", index=False)
    pd.DataFrame(truth).to_csv(root / "truth.csv", index=False)
    pd.DataFrame(manifest).to_csv(root / "manifest.csv", index=False)
    return root


def truth_embeddings(cohort: Path, noise: float, dim: int = 8, seed: int = 0) -> pd.DataFrame:
    """Exam-level embeddings: a random linear map of the latent truth plus noise."""
    rng = np.random.default_rng(seed)
    truth = pd.read_csv(cohort / "truth.csv", dtype={"patient_id": str})
    z = truth[["gfr_true", "fibrosis_fraction", "decline_rate"]].to_numpy(float)
    z = (z - z.mean(0)) / z.std(0)
    e = z @ rng.normal(size=(3, dim)) + noise * rng.normal(size=(len(z), dim))
    df = pd.DataFrame(e, columns=[f"e{i}" for i in range(dim)])
    df.insert(0, "level", "exam")
    df.insert(0, "exam", truth["exam"].astype(str))
    df.insert(0, "patient_id", truth["patient_id"])
    return df


def noise_embeddings(cohort: Path, dim: int = 8, seed: int = 1) -> pd.DataFrame:
    """Exam-level embeddings that carry no information."""
    df = truth_embeddings(cohort, noise=0.0, dim=dim, seed=seed)
    df[[f"e{i}" for i in range(dim)]] = np.random.default_rng(seed).normal(size=(len(df), dim))
    return df


@pytest.fixture(scope="session")
def eval_cohort(tmp_path_factory) -> Path:
    """40 patients × 4 exams with latent truth, 8³ volumes."""
    return write_cohort(tmp_path_factory.mktemp("eval") / "cohort", n_patients=40)
