"""read_cohort on real cohort folders: the contract, and each table defect as a typed error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medimp.data import Cohort, CohortError, MedimpDataError, read_cohort
from tests.data.conftest import snapshot


def _edit(root: Path, name: str, fn) -> None:
    df = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    df = fn(df)
    df.to_csv(root / name, index=False)


def _problems(root: Path) -> list:
    before = snapshot(root)
    with pytest.raises(CohortError) as ei:
        read_cohort(root)
    assert snapshot(root) == before  # reading never changes or loses anything
    assert isinstance(ei.value, MedimpDataError) and isinstance(ei.value, ValueError)
    assert all(p.severity == "error" for p in ei.value.problems)
    assert "medimp validate" in str(ei.value)
    return ei.value.problems


def test_valid_cohort(tiny_cohort: Path) -> None:
    c = read_cohort(tiny_cohort)
    assert isinstance(c, Cohort) and c.root == tiny_cohort
    assert c.study.exam_names == ["D15", "D30", "M3", "M12"]
    assert c.exam_keys() == [("P001", "D15"), ("P001", "D30"), ("P002", "D15"), ("P002", "D30")]
    assert c.phases_of("P002", "D30") == ["pre", "arterial", "tubular"]
    assert c.volume_path("P001", "D15", "arterial") == (
        tiny_cohort / "images/P001/D15/arterial.nii.gz")
    assert c.volume_path("P001", "M3", "pre") is None
    assert len(c.manifest) == 12 and len(c.exams) == 4 and len(c.patients) == 2
    assert c.exams["egfr"].dtype.kind == "f"
    assert c.patients["egfr_y3"].isna().all()  # empty = unknown
    assert c.truth is None
    assert c.exam_row("P001", "D30")["exam"] == "D30"
    assert c.patient_row("P404") is None
    assert c.warnings == []


def test_patient_ids_stay_strings_and_truth_is_read(tiny_cohort: Path) -> None:
    for name in ("manifest.csv", "exams.csv", "patients.csv"):
        _edit(tiny_cohort, name, lambda d: d.assign(
            patient_id=d["patient_id"].str.replace("P", "00", regex=False)))
    pd.DataFrame({"patient_id": ["00001", "00002"], "exam": ["D15", "D15"],
                  "latent": [0.1, 0.2]}).to_csv(tiny_cohort / "truth.csv", index=False)
    c = read_cohort(tiny_cohort)
    assert c.patients["patient_id"].tolist() == ["00001", "00002"]
    assert c.exam_keys()[0] == ("00001", "D15")
    assert c.truth["patient_id"].tolist() == ["00001", "00002"]


def test_exam_keys_follow_study_exam_order(cohort_factory) -> None:
    c = read_cohort(cohort_factory(n_patients=1, exams=("M12", "D15", "M3")))
    assert c.exam_keys() == [("P001", "D15"), ("P001", "M3"), ("P001", "M12")]


def test_manifest_path_missing_on_disk(tiny_cohort: Path) -> None:
    (tiny_cohort / "images/P002/D30/tubular.nii.gz").unlink()
    (p,) = _problems(tiny_cohort)
    assert "does not exist" in p.problem
    assert (p.patient, p.exam, p.phase) == ("P002", "D30", "tubular")
    assert p.file == "manifest.csv:13" and p.fix


def test_duplicate_manifest_rows(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "manifest.csv", lambda d: pd.concat([d, d.iloc[[4]]]))
    (p,) = _problems(tiny_cohort)
    assert "duplicate rows" in p.problem and "lines [6, 14]" in p.problem
    assert p.patient == "P001" and p.exam == "D30"


def test_manifest_patient_absent_from_patients(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "patients.csv", lambda d: d[d["patient_id"] != "P002"])
    problems = _problems(tiny_cohort)
    # reported once per table, not once per row
    assert [(p.file.split(":")[0], p.patient) for p in problems] == [
        ("manifest.csv", "P002"), ("exams.csv", "P002")]
    assert all("absent from patients.csv" in p.problem for p in problems)


@pytest.mark.parametrize(("table", "column", "value"), [
    ("exams.csv", "egfr", "forty"),
    ("exams.csv", "days_post_transplant", "2 weeks"),
    ("patients.csv", "donor_age", "old"),
    ("patients.csv", "egfr_y2", "inf"),
    ("exams.csv", "creatinine_mg_dl", "1,4"),
])
def test_non_numeric_clinical_values(tiny_cohort: Path, table, column, value) -> None:
    _edit(tiny_cohort, table, lambda d: d.assign(**{column: [value, *list(d[column][1:])]}))
    (p,) = _problems(tiny_cohort)
    assert f"column {column!r}: {value!r}" in p.problem
    assert p.patient == "P001" and p.file == f"{table}:2"
    if table == "exams.csv":
        assert p.exam == "D15"


def test_unknown_exam_and_phase_labels(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(
        phase=d["phase"].replace({"tubular": "late"})))
    _edit(tiny_cohort, "exams.csv", lambda d: d.assign(exam=d["exam"].replace({"D30": "J30"})))
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(exam=d["exam"].replace({"D30": "J30"})))
    problems = _problems(tiny_cohort)
    text = [p.problem for p in problems]
    assert text.count("unknown phase label 'late'") == 4
    assert text.count("unknown exam label 'J30'") == 2 + 6
    assert any("'D30'" in p.fix for p in problems if "J30" in p.problem)


def test_empty_cohort(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "manifest.csv", lambda d: d.iloc[:0])
    problems = _problems(tiny_cohort)
    assert any(p.problem.startswith("empty cohort") for p in problems)


def test_empty_patients_table(tiny_cohort: Path) -> None:
    for name in ("manifest.csv", "exams.csv", "patients.csv"):
        _edit(tiny_cohort, name, lambda d: d.iloc[:0])
    problems = _problems(tiny_cohort)
    assert sum(p.problem.startswith("empty cohort") for p in problems) == 2


def test_missing_required_column_and_files(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "manifest.csv", lambda d: d.drop(columns=["phase"]))
    (tiny_cohort / "exams.csv").unlink()
    (tiny_cohort / "patients.csv").write_text("")
    problems = _problems(tiny_cohort)
    assert {p.file for p in problems} == {"manifest.csv", "exams.csv", "patients.csv"}
    assert any("['phase'] absent" in p.problem for p in problems)


def test_text_variable_column_absent(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "exams.csv", lambda d: d.drop(columns=["creatinine_cv"]))
    (p,) = _problems(tiny_cohort)
    assert "'creatinine_cv' of text variable 'creatinine_variability'" in p.problem


def test_every_problem_is_listed_not_only_the_first(tiny_cohort: Path) -> None:
    (tiny_cohort / "images/P001/D15/pre.nii.gz").unlink()
    _edit(tiny_cohort, "exams.csv", lambda d: d.assign(egfr=["x", *list(d["egfr"][1:])]))
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(
        phase=[*list(d["phase"][:-1]), "venous"]))
    problems = _problems(tiny_cohort)
    assert len(problems) == 3
    assert {p.problem.split(" ")[0] for p in problems} == {"image", "column", "unknown"}


def test_bad_study_yaml(tiny_cohort: Path) -> None:
    raw = yaml.safe_load((tiny_cohort / "study.yaml").read_text())
    raw["phases"] = []
    (tiny_cohort / "study.yaml").write_text(yaml.safe_dump(raw))
    problems = _problems(tiny_cohort)
    assert problems[0].file == "study.yaml" and "phase names" in problems[0].problem


def test_images_without_exam_row_and_bad_graft_loss(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "exams.csv", lambda d: d[d["exam"] != "D30"])
    _edit(tiny_cohort, "patients.csv", lambda d: d.assign(graft_loss=["2", "0"]))
    problems = _problems(tiny_cohort)
    assert sum("no row in exams.csv" in p.problem for p in problems) == 2
    assert any("'graft_loss': 2 is not 0 or 1" in p.problem for p in problems)


def test_absent_outcome_columns_are_a_warning(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "patients.csv", lambda d: d.drop(columns=["egfr_y4", "followup_days"]))
    c = read_cohort(tiny_cohort)
    assert c.patients["egfr_y4"].isna().all()
    (w,) = c.warnings
    assert w.severity == "warning" and "egfr_y4" in w.problem
    # it counts what is known: the other outcomes are there (2 patients each)
    assert "every outcome is unknown" not in w.problem
    assert "egfr_y2 known for 2 of 2 patients" in w.problem


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="cohort folder not found"):
        read_cohort(tmp_path / "nope")


def test_series_uid_column_selects_a_dicom_series(tiny_cohort: Path) -> None:
    """Two series in one folder: an error naming the exam, unless manifest.csv says which."""
    import numpy as np

    from medimp.data import DicomSeriesError
    from tests.data.conftest import write_dicom_series

    folder = tiny_cohort / "images/P001/D15/dicom"
    a = np.full((6, 6, 3), 7, np.float32)
    write_dicom_series(folder, a, series_uid="1.2.826.1", prefix="a")
    write_dicom_series(folder, a * 2, series_uid="1.2.826.2", prefix="b")
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(
        path=d["path"].mask(d["path"] == "images/P001/D15/pre.nii.gz", "images/P001/D15/dicom")))
    c = read_cohort(tiny_cohort)
    with pytest.raises(DicomSeriesError, match="patient P001 exam D15 phase pre: 2 DICOM series"):
        c.read_volume("P001", "D15", "pre")
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(
        series_uid=["1.2.826.2"] + [""] * (len(d) - 1)))
    c = read_cohort(tiny_cohort)
    assert float(c.read_volume("P001", "D15", "pre").array.max()) == 14
    assert c.read_volume("P001", "M3", "pre") is None
    assert c.read_volume("P001", "D15", "arterial").shape == (8, 8, 6)


def test_excel_bom_is_accepted(tiny_cohort: Path) -> None:
    path = tiny_cohort / "patients.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_cohort(tiny_cohort).patients["patient_id"].tolist() == ["P001", "P002"]


def test_ragged_and_semicolon_csv(tiny_cohort: Path) -> None:
    m = tiny_cohort / "manifest.csv"
    m.write_text(m.read_text().replace("\nP001,D15,arterial", "\nP001,D15,x,arterial", 1))
    e = tiny_cohort / "exams.csv"
    e.write_text(e.read_text().replace(",", ";"))
    problems = {p.file: p for p in _problems(tiny_cohort)}
    assert "line(s) [3] have a different number of fields" in problems["manifest.csv"].problem
    assert "comma inside a value needs quotes" in problems["manifest.csv"].fix
    # a semicolon-separated file is read as such (a spreadsheet's European CSV), not refused
    assert not [p for p in problems if p.startswith("exams.csv")]


def test_semicolon_csv_with_decimal_commas_is_read(tiny_cohort: Path) -> None:
    e = tiny_cohort / "exams.csv"
    df = pd.read_csv(e, dtype=str, keep_default_na=False)
    df["egfr"] = ["49,3", *df["egfr"][1:]]
    e.write_text(df.to_csv(index=False, sep=";"))
    assert ";" in e.read_text().splitlines()[0]
    c = read_cohort(tiny_cohort)
    assert c.exams["egfr"].iloc[0] == pytest.approx(49.3)
    ragged = e.read_text().replace("\nP001;D15;", "\nP001;D15;x;", 1)
    e.write_text(ragged)
    problems = {p.file: p for p in _problems(tiny_cohort)}
    assert "a semicolon inside a value needs quotes" in problems["exams.csv"].fix


def test_windows_separators_in_manifest_paths(tiny_cohort: Path) -> None:
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(path=d["path"].str.replace("/", "\\")))
    c = read_cohort(tiny_cohort)
    assert c.volume_path("P001", "D15", "pre") == tiny_cohort / "images/P001/D15/pre.nii.gz"


# --- the one cohort view: exam order, latest exam, values known at an exam ---------------------

def _irregular(root: Path) -> Path:
    """P001's D30 exam happened before its D15 exam (day 12 vs day 20): irregular dates."""
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        d15 = (df.patient_id == "P001") & (df.exam == "D15")
        d30 = (df.patient_id == "P001") & (df.exam == "D30")
        df.loc[d15, "days_post_transplant"] = "20"
        df.loc[d30, "days_post_transplant"] = "12"
        df.loc[(df.patient_id == "P002") & (df.exam == "D30"), "days_post_transplant"] = ""
        return df

    _edit(root, "exams.csv", fn)
    return root


def test_exam_order_is_days_then_study_order(tiny_cohort: Path) -> None:
    c = read_cohort(_irregular(tiny_cohort))
    # P001: by days (D30 at day 12 first); P002: a blank day falls back to the nominal day
    assert c.exam_keys() == [("P001", "D30"), ("P001", "D15"), ("P002", "D15"), ("P002", "D30")]
    assert c.exam_day("P002", "D30") == 30.0 and c.exam_day("P001", "D30") == 12.0
    assert c.latest_exams() == {"P001": "D15", "P002": "D30"}
    assert c.latest_exams([("P001", "D30")]) == {"P001": "D30"}
    assert c.sort_exams([("P001", "D15"), ("P001", "D30")]) == [("P001", "D30"), ("P001", "D15")]
    imaged = c.imaged_exams()
    assert list(zip(imaged.patient_id, imaged.exam, strict=True)) == c.exam_keys()


def test_value_at_applies_the_leakage_rule(tiny_cohort: Path) -> None:
    from medimp.study import Bin, TextVariable, load_study, save_study

    study = load_study(tiny_cohort / "study.yaml")
    bins = [Bin(label="low", upper=45), Bin(label="high")]
    extra = [
        TextVariable(name="late", table="patients", column="recipient_age", known_at="followup",
                     bins=bins, slot="late", template="Late {late}."),
        TextVariable(name="gfr30", table="exams", column="egfr", known_at="exam",
                     from_exam="D30", bins=bins, slot="g30", template="GFR30 {g30}."),
    ]
    save_study(study.model_copy(update={"variables": [*study.variables, *extra]}),
               tiny_cohort / "study.yaml")
    c = read_cohort(tiny_cohort)
    row = c.exam_row("P001", "D30")
    assert c.value_at("gfr", "P001", "D15") == c.exam_row("P001", "D15")["egfr"]
    assert c.value_at("donor_age", "P001", "D30") == c.patient_row("P001")["donor_age"]
    assert c.value_at("late", "P001", "D30") is None  # known only at follow-up
    assert c.value_at("gfr30", "P001", "D15") is None  # measured at a later exam
    assert c.value_at("gfr30", "P001", "D30") == row["egfr"]
    assert c.value_at("creatinine_mg_dl", "P001", "D30") == row["creatinine_mg_dl"]  # exam column
    assert c.value_at("egfr_y2", "P001", "D30") is None  # an outcome is never known at an exam
    assert c.value_at("gfr", "P999", "D15") is None
    with pytest.raises(KeyError, match="does not say when it is known"):
        c.value_at("no_such_column", "P001", "D15")


def test_cohort_from_tables_refuses_duplicates(tiny_cohort: Path) -> None:
    c = read_cohort(tiny_cohort)
    again = Cohort.from_tables(c.study, c.exams, c.patients)
    assert again.value_at("gfr", "P001", "D15") == c.value_at("gfr", "P001", "D15")
    with pytest.raises(CohortError, match="duplicate rows"):
        Cohort.from_tables(c.study, pd.concat([c.exams, c.exams.head(1)]), c.patients)


def test_latin1_table_names_the_line_and_patient(tmp_path: Path, simulated_cohort: Path) -> None:
    root = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, root)
    lines = (root / "patients.csv").read_text(encoding="utf-8").splitlines()
    pid = lines[4].split(",")[0]
    lines[4] = lines[4].replace(lines[4].split(",")[2], "décédé")  # donor_type, in Latin-1
    (root / "patients.csv").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(CohortError) as ei:
        read_cohort(root)
    (p,) = ei.value.problems
    assert (p.file, p.patient) == ("patients.csv:5", pid)
    assert "line 5 is not UTF-8" in p.problem and "save patients.csv as UTF-8" in p.fix
    assert len(str(ei.value).splitlines()) == 1
