import re

import numpy as np
import pandas as pd
import pytest
import yaml

from medimp.prompts import (
    ColumnError,
    LeakageError,
    PromptError,
    build_prompts_from_tables,
    default_bank,
    exam_words,
    load_bank,
)
from medimp.study import Study, default_study
from tests.prompts.conftest import random_tables

FORBIDDEN = re.compile(r"\bnan\b|\bNone\b|\bFalse\b|\{|\}|  ", re.IGNORECASE)


def test_fixture_tables_with_original_bank(study, fixture_tables, gpt_augs) -> None:
    exams, patients = fixture_tables
    df = build_prompts_from_tables(study, exams, patients, bank=load_bank(gpt_augs))
    assert list(df.columns) == ["patient_id", "exam", "variant", "prompt"]
    assert df["variant"].tolist()[:10] == list(range(10))
    first = df[(df.patient_id == "001-0001-A-A") & (df.exam == "D15")]
    # donor 70 y -> 65 or more; GFR 22 -> very low; creatinine CV 4 -> minor; D15 -> "two-week"
    assert first.prompt.iloc[0] == (
        "The kidney donor was 65 or more years of age. The patient's GFR was found to be very "
        "low at the two-week check-up. Creatinine levels displayed minor fluctuations.")
    assert len(first) == 10 and first.prompt.nunique() == 10
    # patient 001-0002-B-B has no M12 GFR: its GFR sentence is dropped, the others stay
    m12 = df[(df.patient_id == "001-0002-B-B") & (df.exam == "M12")].prompt.iloc[0]
    assert "GFR" not in m12 and "donor" in m12 and "reatinine" in m12


def test_every_exam_never_prints_missing_values(study) -> None:
    exams, patients = random_tables(60, seed=3)
    df = build_prompts_from_tables(study, exams, patients, seed=1)
    assert not df.empty
    bad = df[df.prompt.str.contains(FORBIDDEN)]
    assert bad.empty, bad.prompt.tolist()[:3]
    assert (df.prompt == df.prompt.str.strip()).all()
    # every exam whose row has at least one value has all 10 variants
    counts = df.groupby(["patient_id", "exam"]).size()
    assert set(counts) == {10}
    # missing donor age -> no donor sentence anywhere for that patient
    no_age = patients[patients.donor_age.isna()].patient_id
    assert not df[df.patient_id.isin(no_age)].prompt.str.contains("donor").any()
    # bin edges: 15 -> "very low" (>= 15), 60 -> "high"
    e15 = exams[exams.egfr == 15.0].iloc[0]
    w = exam_words(study, exams, patients, e15.patient_id, e15.exam)
    assert w["gfr"] == "very low"


def test_seed_changes_synonyms_only_deterministically(study) -> None:
    exams, patients = random_tables(10, seed=5)
    a = build_prompts_from_tables(study, exams, patients, seed=0)
    b = build_prompts_from_tables(study, exams, patients, seed=0)
    c = build_prompts_from_tables(study, exams, patients, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert (a.prompt != c.prompt).any()
    # one exam's prompts do not depend on which other exams are built
    key = (a.patient_id.iloc[0], a.exam.iloc[0])
    alone = build_prompts_from_tables(study, exams, patients, seed=0, keys=[key])
    assert alone.prompt.tolist() == a[(a.patient_id == key[0]) & (a.exam == key[1])
                                      ].prompt.tolist()


def test_unknown_exam_is_an_error_not_false(study, fixture_tables) -> None:
    exams, patients = fixture_tables
    exams = exams.replace({"exam": {"D15": "J15"}})
    with pytest.raises(PromptError, match=r"exam 'J15'.*J15 -> D15"):
        build_prompts_from_tables(study, exams, patients)


def test_absent_column_named(study, fixture_tables) -> None:
    exams, patients = fixture_tables
    with pytest.raises(ColumnError, match=r"exams\.csv: column 'egfr'"):
        build_prompts_from_tables(study, exams.drop(columns="egfr"), patients)


def _with_variable(**kw) -> Study:
    raw = default_study().model_dump()
    var = {"name": "leak", "table": "exams", "known_at": "exam", "bins":
           [{"label": "low", "upper": 45}, {"label": "high", "upper": None}],
           "slot": "leak", "template": "Later GFR was {leak}."}
    var.update(kw)
    raw["variables"].append(var)
    return Study.model_validate(raw)


@pytest.mark.parametrize(("kw", "match"), [
    ({"column": "egfr_y2"}, "outcome column 'egfr_y2'"),
    ({"column": "egfr", "known_at": "followup"}, "known only at follow-up"),
    ({"column": "egfr", "from_exam": "M12"}, "measured at exam 'M12', later than exam 'D15'"),
])
def test_leakage_guard(kw, match) -> None:
    study = _with_variable(**kw)
    exams, patients = random_tables(5, seed=0)
    exams["egfr_y2"] = 50.0
    d15 = exams[exams.exam == "D15"].iloc[0]
    with pytest.raises(LeakageError, match=match) as info:
        exam_words(study, exams, patients, d15.patient_id, "D15")
    assert "'leak'" in str(info.value) and d15.patient_id in str(info.value)
    with pytest.raises(LeakageError):
        build_prompts_from_tables(study, exams, patients, bank=default_bank(study, n=3))
    if "from_exam" in kw:  # an M12 value is fine in the M12 prompt
        m12 = exams[(exams.exam == "M12") & exams.egfr.notna()].iloc[0]
        words = exam_words(study, exams, patients, m12.patient_id, "M12")
        assert words["leak"] in {"low", "high"}
        dropped = build_prompts_from_tables(study, exams, patients, on_leak="drop",
                                            bank=default_bank(study, n=3))
        d15_prompts = dropped[dropped.exam == "D15"].prompt
        assert not d15_prompts.str.contains("Later GFR").any()
        assert dropped[dropped.exam == "M12"].prompt.str.contains("Later GFR").any()


def test_kdigo_binning_and_categorical(fixture_tables) -> None:
    kdigo = default_study(gfr_binning="kdigo")
    exams, patients = fixture_tables
    words = exam_words(kdigo, exams, patients, "001-0001-A-A", "M12")  # GFR 32 -> G3b
    assert words["gfr"] == "moderately to severely decreased"
    raw = default_study().model_dump()
    raw["variables"].append({"name": "donor_type", "table": "patients", "column": "donor_type",
                             "known_at": "transplant", "kind": "categorical",
                             "categories": {"DBD": "brain-dead", "LD": "living"},
                             "slot": "dtype", "template": "The donor was {dtype}."})
    study = Study.model_validate(raw)
    patients = patients.assign(donor_type=["DBD", "LD", None, "DBD", "LD", "DBD", "LD", "DBD",
                                           "LD", "DBD"][: len(patients)])
    df = build_prompts_from_tables(study, exams, patients, bank=default_bank(study, n=4))
    assert df.prompt.str.contains("living").any()
    p3 = df[df.patient_id == patients.patient_id.iloc[2]].prompt
    assert not p3.str.contains("brain-dead|living").any()
    patients.loc[0, "donor_type"] = "XYZ"
    with pytest.raises(PromptError, match=r"'XYZ'.*categories"):
        build_prompts_from_tables(study, exams, patients, bank=default_bank(study, n=4))


def test_numeric_column_holding_text_or_booleans(study, fixture_tables) -> None:
    exams, patients = fixture_tables
    bad = exams.astype({"egfr": object})
    bad.loc[0, "egfr"] = False
    with pytest.raises(PromptError, match="numeric but holds False"):
        build_prompts_from_tables(study, bad, patients)
    assert np.isnan(exams.egfr).any()  # the fixture really has missing values


def test_study_template_with_unknown_slot(fixture_tables) -> None:
    from medimp.prompts import TemplateError

    raw = default_study().model_dump()
    raw["variables"][1]["template"] = "The GFR was {gfr} at the {when} check-up."
    study = Study.model_validate(raw)  # the schema only checks that the own slot is there
    exams, patients = fixture_tables
    with pytest.raises(TemplateError, match=r"study\.yaml: .*unknown slot\(s\) \{when\}"):
        build_prompts_from_tables(study, exams, patients)


@pytest.mark.parametrize("uppers", [[30, 15, None], [15, 15, None], [15, None, None]])
def test_bins_with_gaps_or_overlaps_never_reach_prompts(tmp_path, uppers) -> None:
    from medimp.study import StudyError, load_study, save_study

    save_study(default_study(), tmp_path / "study.yaml")
    raw = yaml.safe_load((tmp_path / "study.yaml").read_text())
    raw["variables"][1]["bins"] = [{"label": f"b{i}", "upper": u} for i, u in enumerate(uppers)]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"(?s)study\.yaml.*'gfr'.*bin"):
        load_study(tmp_path / "study.yaml")
