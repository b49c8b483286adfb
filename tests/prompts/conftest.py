"""Fixtures of the prompts tests: clinical tables from the original MEDIMP fixture CSV and
random tables with missing values (property-style tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimp.study import default_study


def tables_from_wide(csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(exams, patients) in the cohort layout from the original wide clinical CSV."""
    wide = pd.read_csv(csv, dtype={"patient": str})
    exams = []
    for _, row in wide.iterrows():
        for e in ("D15", "D30", "M3", "M12"):
            exams.append({"patient_id": row["patient"], "exam": e, "egfr": row[f"GFR {e}"],
                          "creatinine_cv": row[f"std_creat_level {e}"]})
    patients = wide[["patient", "age_donor"]].rename(
        columns={"patient": "patient_id", "age_donor": "donor_age"})
    return pd.DataFrame(exams), patients


def random_tables(n: int, seed: int, p_missing: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random exams/patients tables in the default study's columns, ~p_missing cells empty."""
    rng = np.random.default_rng(seed)
    pids = [f"P{i:03d}" for i in range(n)]
    patients = pd.DataFrame({
        "patient_id": pids,
        "donor_age": rng.uniform(10, 85, n).round(),
        "egfr_y2": rng.uniform(5, 90, n),
    })
    patients.loc[rng.random(n) < p_missing, "donor_age"] = np.nan
    rows = []
    for p in pids:
        for e, d in (("D15", 15), ("D30", 30), ("M3", 91), ("M12", 365)):
            if rng.random() < 0.15:
                continue  # missing exam
            rows.append({"patient_id": p, "exam": e, "days_post_transplant": d,
                         "egfr": rng.choice([rng.uniform(3, 110), np.nan, 15.0, 60.0],
                                            p=[0.6, p_missing, 0.05, 0.35 - p_missing]),
                         "creatinine_cv": rng.uniform(0, 40) if rng.random() > p_missing
                         else np.nan})
    return pd.DataFrame(rows), patients


@pytest.fixture(scope="session")
def study():
    return default_study()


@pytest.fixture(scope="session")
def gpt_augs(medimp_original: Path) -> Path:
    return medimp_original / "dummy_dataframes" / "gpt_augs.txt"


@pytest.fixture(scope="session")
def fixture_tables(medimp_original: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tables_from_wide(medimp_original / "dummy_dataframes" /
                            "df_clinicobiological_data.csv")
