"""The one clinical feature builder: one known-at rule (Cohort.value_at), NaN for missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medimp.data import read_cohort
from medimp.data.pipeline.features import ClinicalFeatures, clinical_columns
from medimp.study import Bin, TextVariable, load_study, save_study


def _with_variables(root: Path, *extra: TextVariable) -> None:
    study = load_study(root / "study.yaml")
    save_study(study.model_copy(update={"variables": [*study.variables, *extra]}),
               root / "study.yaml")


def test_clinical_features_follow_value_at(tiny_cohort: Path) -> None:
    bins = [Bin(label="low", upper=45), Bin(label="high")]
    _with_variables(
        tiny_cohort,
        TextVariable(name="gfr30", table="exams", column="egfr", known_at="exam",
                     from_exam="D30", bins=bins, slot="g30", template="GFR30 {g30}."),
        TextVariable(name="late", table="patients", column="recipient_age",
                     known_at="followup", bins=bins, slot="late", template="Late {late}."),
        TextVariable(name="dtype", table="patients", column="donor_type", known_at="transplant",
                     kind="categorical", categories={"deceased": "deceased", "living": "living"},
                     slot="dt", template="Donor {dt}."),
    )
    exams = pd.read_csv(tiny_cohort / "exams.csv", dtype={"patient_id": str})
    exams.loc[(exams.patient_id == "P002") & (exams.exam == "D15"), "creatinine_cv"] = np.nan
    exams.to_csv(tiny_cohort / "exams.csv", index=False)
    c = read_cohort(tiny_cohort)
    keys = c.exam_keys()

    tab = ClinicalFeatures("variables", sep="=").fit(c, keys).transform(c, keys)
    by_key = tab.set_index(["patient_id", "exam"])
    d30 = c.exam_row("P001", "D30")["egfr"]
    # measured at D30: missing at D15, the D30 value at D30 (not each exam's own eGFR)
    assert np.isnan(by_key.at[("P001", "D15"), "gfr30"])
    assert by_key.at[("P001", "D30"), "gfr30"] == d30
    assert by_key["late"].isna().all()  # known only at follow-up: always missing
    assert np.isnan(by_key.at[("P002", "D15"), "creatinine_variability"])
    # a categorical variable: one column per study.yaml category, even one never seen
    assert list(by_key.filter(like="dtype=").columns) == ["dtype=deceased", "dtype=living"]
    assert (by_key["dtype=living"] == 0).all() and (by_key["dtype=deceased"] == 1).all()

    allf = ClinicalFeatures("all")
    table = allf.fit(c, keys).transform(c, keys)
    names = [f.name for f in clinical_columns(c, "all")]
    assert "recipient_age" in names  # a baseline column, known at transplant
    assert "late" not in names and "egfr_y2" not in names  # never known / an outcome
    assert list(table.columns[:2]) == ["patient_id", "exam"]
    assert list(zip(table.patient_id, table.exam, strict=True)) == keys
    own = table.set_index(["patient_id", "exam"])["egfr"]
    assert own[("P001", "D15")] == c.exam_row("P001", "D15")["egfr"]  # exam column: own exam
