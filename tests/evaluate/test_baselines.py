"""clinical_only uses only what is known at the exam; oracle reads truth.csv."""

from __future__ import annotations

from medimp.data import read_cohort
from medimp.evaluate.baselines import clinical_features, oracle_features
from medimp.evaluate.embeddings import feature_columns


def test_clinical_features_exclude_outcomes_and_truth(eval_cohort) -> None:
    tables = read_cohort(eval_cohort)
    df = clinical_features(tables)
    cols = feature_columns(df)
    outcome = set(tables.study.outcomes.columns())
    assert not outcome & set(cols)
    assert not {"gfr_true", "nephron_mass", "fibrosis_fraction", "decline_rate"} & set(cols)
    assert {"egfr", "creatinine_cv", "donor_age"} <= set(cols)
    assert any(c.startswith("donor_type_") for c in cols)  # categorical one-hot
    # each row carries the exam's own eGFR, not another exam's
    merged = df.merge(tables.exams, on=["patient_id", "exam"], suffixes=("", "_x"))
    assert (merged["egfr"] == merged["egfr_x"]).all()


def test_oracle_reads_truth(eval_cohort) -> None:
    df = oracle_features(read_cohort(eval_cohort))
    assert df is not None
    assert {"gfr_true", "fibrosis_fraction"} <= set(feature_columns(df))
    assert len(df) == 40 * 4


def test_clinical_features_skip_follow_up_variables(eval_cohort, tmp_path) -> None:
    import shutil

    import pandas as pd

    from medimp.study import Bin, TextVariable, load_study, save_study

    cohort = tmp_path / "cohort"
    shutil.copytree(eval_cohort, cohort)
    exams = pd.read_csv(cohort / "exams.csv", dtype={"patient_id": str})
    exams["late_marker"] = 1.0
    exams.to_csv(cohort / "exams.csv", index=False)
    study = load_study(cohort / "study.yaml")
    late = TextVariable(name="late", table="exams", column="late_marker", known_at="followup",
                        bins=[Bin(label="a", upper=0.5), Bin(label="b")], slot="late",
                        template="Late {late}.")
    save_study(study.model_copy(update={"variables": [*study.variables, late]}),
               cohort / "study.yaml")
    cols = feature_columns(clinical_features(read_cohort(cohort)))
    assert "late_marker" not in cols
    assert "egfr" in cols
