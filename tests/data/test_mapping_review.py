"""A clinic's mapping read as written: study.yaml's values:/units: keys, YAML's Yes/No, dates
that contradict each other, creatinine clearance, and the cohort fingerprint of an export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from medimp.data import read_cohort, validate_cohort
from medimp.data.cohort._roles import role_of_words
from medimp.data.cohort.fingerprint import cohort_fingerprint


def _edit(root: Path, name: str, **columns: list) -> None:
    df = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    df.assign(**columns).to_csv(root / name, index=False)


def _yaml_lines(root: Path, *lines: str) -> None:
    """Append lines to study.yaml as a person types them (not through yaml.safe_dump)."""
    with (root / "study.yaml").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.fixture
def four(cohort_factory) -> Path:
    return cohort_factory(n_patients=4)


def test_unquoted_yes_no_in_values_is_read_as_the_words(four) -> None:
    """`{Yes: 1, No: 0}` (what the hints and docs/data.md write) is YAML's true/false: it
    must map the words, not refuse study.yaml."""
    _edit(four, "patients.csv", graft_loss=["Yes", "No", "no", "YES"])
    _yaml_lines(four, "values:", "  graft_loss: {Yes: 1, No: 0}")
    c = read_cohort(four)
    assert c.patients["graft_loss"].tolist() == [1.0, 0.0, 0.0, 1.0]


def test_values_and_units_keys_that_name_no_column_warn(four) -> None:
    _yaml_lines(four, "values:", "  Diabete: {Oui: 1, Non: 0}", "units:",
                "  Creatinine (umol/L): umol/L")
    report = validate_cohort(four, read_images=False)
    text = [w.problem for w in report.warnings]
    assert any("values:" in t and "'Diabete'" in t and "which no table has" in t
               for t in text), text
    assert any("units:" in t and "'Creatinine (umol/L)'" in t and "which no table has" in t
               for t in text), text


def test_graft_loss_after_last_followup_or_for_a_kept_graft_warns(four) -> None:
    _edit(four, "patients.csv", graft_loss=["1", "0", "0", "0"],
          graft_loss_days=["900", "", "400", ""], followup_days=["700", "800", "800", "800"])
    report = validate_cohort(four, read_images=False)
    text = [w.problem for w in report.warnings]
    assert any("graft lost on day 900 after the last follow-up (day 700)" in t
               for t in text), text
    assert any("graft-loss day 400" in t and "not lost" in t for t in text), text
    _edit(four, "patients.csv", graft_loss=["1", "0", "0", "0"],
          graft_loss_days=["700", "", "", ""], followup_days=["700", "800", "800", "800"])
    text = [w.problem for w in validate_cohort(four, read_images=False).warnings]
    assert not any("follow-up" in t or "not lost" in t for t in text), text


def test_creatinine_clearance_is_not_read_as_creatinine() -> None:
    """A clearance in mL/min is a GFR-like rate: as 'creatinine' its 60-120 values would be
    called µmol/L, and declaring that would divide them by 88.42."""
    for header in ("Creatinine clearance (mL/min)", "Clairance de la créatinine (mL/min)",
                   "CrCl Cockcroft (mL/min)"):
        assert role_of_words(header) != "creatinine", header
    assert role_of_words("Créatinine (µmol/L)") == "creatinine"


def test_fingerprint_of_a_clinic_export_with_its_own_id_column(four) -> None:
    """Renamed id column (columns:) and a semicolon file: the fingerprint still names the
    patients (None silently turned off the 'trained on another cohort' warning)."""
    before = cohort_fingerprint(four)
    assert before is not None
    pats = pd.read_csv(four / "patients.csv", dtype=str, keep_default_na=False)
    pats.rename(columns={"patient_id": "Patient ID"}).to_csv(four / "patients.csv", sep=";",
                                                             index=False)
    raw = yaml.safe_load((four / "study.yaml").read_text(encoding="utf-8"))
    raw["columns"] = {"Patient ID": "patient_id"}
    (four / "study.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    read_cohort(four)  # the export itself reads
    assert cohort_fingerprint(four) == before


def _export(folder: Path, tx: list[str], exam_dates: list[str]) -> Path:
    folder.mkdir()
    pd.DataFrame({"Patient ID": ["1", "2"], "Transplant date": tx,
                  "Graft loss": ["No", "No"]}).to_csv(folder / "patients.csv", index=False)
    pd.DataFrame({"Patient ID": ["1", "2"], "Visit": ["M3", "M3"], "Exam date": exam_dates,
                  "eGFR (mL/min/1.73m2)": ["50", "60"]}).to_csv(folder / "exams.csv",
                                                                 index=False)
    return folder


def test_init_picks_the_date_format_that_every_date_column_fits(tmp_path) -> None:
    """Transplant dates that fit both orders and an exam date only month-first fits: the
    format is month-first for all (day-first from the first column made every exam date an
    error, or worse, a wrong day count)."""
    from medimp.data.cohort.init import init_cohort

    r = init_cohort(_export(tmp_path / "us", ["03/04/2019", "11/02/2018"],
                            ["07/15/2019", "05/11/2018"]))
    assert r.study.dates is not None and r.study.dates.format == "%m/%d/%Y"


def test_init_says_when_every_date_fits_day_and_month_first(tmp_path) -> None:
    from medimp.data.cohort.init import init_cohort

    r = init_cohort(_export(tmp_path / "amb", ["03/04/2019", "11/02/2018"],
                            ["07/06/2019", "05/05/2018"]))
    [note] = [g for g in r.guesses if g.startswith("dates.format")]
    assert "ambiguous" in note and "%m/%d/%Y" in note, note
    r = init_cohort(_export(tmp_path / "eu", ["13/04/2019", "11/02/2018"],
                            ["07/06/2019", "05/05/2018"]))
    [note] = [g for g in r.guesses if g.startswith("dates.format")]
    assert r.study.dates is not None and r.study.dates.format == "%d/%m/%Y"
    assert "ambiguous" not in note, note


def test_init_takes_the_patient_id_not_a_donor_id_before_it(tmp_path) -> None:
    from medimp.data.cohort.init import init_cohort

    folder = _export(tmp_path / "donor", ["03/04/2019", "13/02/2018"],
                     ["07/06/2019", "05/05/2018"])
    pats = pd.read_csv(folder / "patients.csv", dtype=str)
    pats.insert(0, "Donor ID", ["D9", "D8"])
    pats.to_csv(folder / "patients.csv", index=False)
    r = init_cohort(folder)
    assert r.study.columns == {"Patient ID": "patient_id", "Visit": "exam"}


def test_a_unit_of_another_quantity_on_an_outcome_column_is_an_error(four) -> None:
    """units: µmol/L on an eGFR outcome made it a creatinine: its 40-60 values became
    0.5-0.7 'mg/dL' (all within creatinine's range) and every patient a poor status."""
    from medimp.data import CohortError

    _yaml_lines(four, "units:", "  egfr_y2: umol/L", "  followup_days: mg/dL")
    with pytest.raises(CohortError) as ei:
        read_cohort(four)
    text = [p.problem for p in ei.value.problems]
    assert any("'egfr_y2'" in t and "µmol/L" in t and "egfr" in t for t in text), text
    assert any("'followup_days'" in t and "mg/dL" in t and "days" in t for t in text), text


def test_an_exam_dated_before_the_transplant_is_named_with_its_date_column(tmp_path) -> None:
    from medimp.data.cohort.init import init_cohort

    folder = _export(tmp_path / "early", ["13/04/2019", "11/02/2018"],
                     ["07/06/2019", "05/01/2018"])
    init_cohort(folder)
    report = validate_cohort(folder, read_images=False)
    [p] = [e for e in report.errors if "Exam date" in e.problem or "days_post" in e.problem]
    assert "'05/01/2018' is before the patient's transplant date ('Transplant date')" \
        in p.problem and p.patient == "2"


def test_a_word_the_values_map_lacks_gets_a_hint_about_the_map(four) -> None:
    """'Oui' in a column mapped {Yes: 1, No: 0}: the hint names the map, not 'write
    values: {Yes: 1, No: 0}' (already there) or 'write a number'."""
    from medimp.data import CohortError

    _edit(four, "patients.csv", graft_loss=["Yes", "No", "Oui", "No"],
          donor_type=["A", "B", "Peut-être", "B"])
    _yaml_lines(four, "values:", "  graft_loss: {Yes: 1, No: 0}",
                "  donor_type: {A: 1, B: 0}")
    with pytest.raises(CohortError) as ei:
        read_cohort(four)
    by_col = {p.problem.split(":")[0]: p for p in ei.value.problems}
    for c, word in (("graft_loss", "Oui"), ("donor_type", "Peut-être")):
        p = by_col[f"column {c!r}"]
        assert "a word that values: does not map" in p.problem, p
        assert f"add {word!r} to the words of {c!r} under values:" in p.fix, p
