"""Findings a person reads, on real files: ranges by role and unit, one line per file x
column x problem with the count and the first rows, hints (a date, a word, a decimal comma, a
spelling of 'unknown'), many files of one folder in one line, plain lines when piped, and the
consistency warnings (geometry, dynamic frame times, per-exam frames)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.data import CohortError, read_cohort, validate_cohort
from tests.data._dynamic_helpers import make_nifti4d_cohort
from tests.data.conftest import write_nifti


def _edit(root: Path, name: str, **columns: list) -> None:
    df = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    df = df.assign(**columns)
    df.to_csv(root / name, index=False)


def _study(root: Path, **fields) -> None:
    raw = yaml.safe_load((root / "study.yaml").read_text(encoding="utf-8"))
    raw.update(fields)
    (root / "study.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")


def _errors(root: Path) -> list:
    with pytest.raises(CohortError) as ei:
        read_cohort(root)
    return ei.value.problems


@pytest.fixture
def four(cohort_factory) -> Path:
    """4 patients x 2 exams: enough rows for a column to show its unit."""
    return cohort_factory(n_patients=4)


def test_umol_values_in_a_mg_dl_column_are_one_line_naming_the_unit(four) -> None:
    _edit(four, "exams.csv", creatinine_mg_dl=["120", "98", "143", "110"] * 2)
    (p,) = _errors(four)
    assert p.file == "exams.csv"
    assert "column 'creatinine_mg_dl': 8 of 8 values are outside the plausible range " \
           "[0.1, 30] mg/dL" in p.problem
    assert "fit µmol/L better than mg/dL" in p.problem
    assert "units: {'creatinine_mg_dl': µmol/L}" in p.fix
    _study(four, units={"creatinine_mg_dl": "umol/L"})  # declared: converted on read
    c = read_cohort(four)
    assert c.exams["creatinine_mg_dl"].iloc[0] == pytest.approx(120 / 88.42)


def test_ranges_follow_the_role_not_the_column_name(four) -> None:
    """eGFR mapped to a clinic's column name keeps eGFR's range; a donor age in months in a
    'years' column is named once with its likely unit."""
    name = "eGFR (mL/min/1.73m2)"
    df = pd.read_csv(four / "exams.csv", dtype=str, keep_default_na=False)
    df = df.rename(columns={"egfr": name})
    df[name] = ["250", *df[name][1:]]
    df.to_csv(four / "exams.csv", index=False)
    pats = pd.read_csv(four / "patients.csv", dtype=str, keep_default_na=False)
    pats = pats.rename(columns={"donor_age": "Donor age (years)"})
    pats["Donor age (years)"] = ["660", "540", "720", "300"]
    pats.to_csv(four / "patients.csv", index=False)
    raw = yaml.safe_load((four / "study.yaml").read_text())
    for v in raw["variables"]:
        v["column"] = {"egfr": name, "donor_age": "Donor age (years)"}.get(v["column"],
                                                                          v["column"])
    raw["exam_columns"] = [name if c == "egfr" else c for c in raw["exam_columns"]]
    raw["baseline_columns"] = ["Donor age (years)" if c == "donor_age" else c
                               for c in raw["baseline_columns"]]
    (four / "study.yaml").write_text(yaml.safe_dump(raw))
    problems = {p.problem for p in _errors(four)}
    assert f"column {name!r}: 250 is outside the plausible range [0, 200] mL/min/1.73m2" \
        in problems
    [age] = [p for p in problems if "Donor age" in p]
    assert "4 of 4 values are outside the plausible range [0, 100] years" in age
    assert "fit months better than years" in age


def test_a_fraction_in_a_percent_column_and_a_variable_without_range_warn(four) -> None:
    _edit(four, "exams.csv", creatinine_cv=["0.11", "0.2", "0.08", "0.15"] * 2,
          hb=["12.1"] * 8)
    raw = yaml.safe_load((four / "study.yaml").read_text())
    raw["variables"].append({"name": "anaemia", "table": "exams", "column": "hb",
                             "known_at": "exam", "bins": [{"label": "low", "upper": 11},
                                                          {"label": "normal"}],
                             "slot": "hb", "template": "Haemoglobin was {hb}."})
    (four / "study.yaml").write_text(yaml.safe_dump(raw))
    report = validate_cohort(four, read_images=False)
    assert report.ok
    text = [w.problem for w in report.warnings]
    assert any("'creatinine_cv'" in t and "fit fraction better than %" in t for t in text)
    assert any("column 'hb' of text variable 'anaemia' has no plausible range" in t
               for t in text)


def test_words_dates_decimal_commas_and_na_get_one_line_each_with_a_hint(four) -> None:
    _edit(four, "patients.csv", graft_loss=["Yes", "No", "No", "Yes"],
          egfr_y2=["49,3", "50.1", "NA", "61"])
    _edit(four, "exams.csv", days_post_transplant=["15/01/2020", "30/01/2020"] * 4)
    by_column = {}
    for p in _errors(four):
        by_column.setdefault(p.problem.split(":")[0], []).append(p)
    assert {k: len(v) for k, v in by_column.items()} == {
        "column 'graft_loss'": 1, "column 'egfr_y2'": 2, "column 'days_post_transplant'": 1}
    [words] = by_column["column 'graft_loss'"]
    assert words.file == "patients.csv"
    assert "4 values are not numbers (a word): line 2 (P001: 'Yes'), line 3 (P002: 'No'), " \
           "line 4 (P003: 'No') and 1 more" in words.problem
    assert "values: {'graft_loss': {Yes: 1, No: 0}}" in words.fix
    [dates] = by_column["column 'days_post_transplant'"]
    assert "8 values are not numbers (it looks like a date)" in dates.problem
    assert "dates:" in dates.fix and "medimp init" in dates.fix
    comma, na = sorted(by_column["column 'egfr_y2'"], key=lambda p: p.problem)
    assert comma.file == "patients.csv:2" and "(a decimal comma)" in comma.problem
    assert "write a decimal point (49.3)" in comma.fix
    assert "(a spelling of 'unknown'?)" in na.problem and "missing_values" in na.fix
    # the study says how to read them: no finding is left
    _study(four, values={"graft_loss": {"yes": 1, "no": 0}}, missing_values=["", "NA"])
    _edit(four, "patients.csv", egfr_y2=["49.3", "50.1", "NA", "61"])
    _edit(four, "exams.csv", days_post_transplant=["15", "30"] * 4)
    c = read_cohort(four)
    assert c.patients["graft_loss"].tolist() == [1.0, 0.0, 0.0, 1.0]


def test_symlinked_images_folder_is_one_warning(tiny_cohort, tmp_path) -> None:
    outside = tmp_path / "lab_storage"
    shutil.move(tiny_cohort / "images", outside)
    (tiny_cohort / "images").symlink_to(outside, target_is_directory=True)
    report = validate_cohort(tiny_cohort)
    assert report.ok
    [w] = [w for w in report.warnings if "outside the cohort folder" in w.problem]
    assert w.problem.startswith("12 image paths lead outside the cohort folder through the "
                                f"symlink 'images' -> {outside.resolve()}: line 2")
    assert w.file == "manifest.csv"


def test_identical_findings_about_many_files_are_collapsed(tiny_cohort) -> None:
    for path in (tiny_cohort / "images").rglob("*.nii.gz"):
        write_nifti(path, np.zeros((8, 8, 6), np.float32), affine=np.diag([15, 15, 20, 1.0]))
    report = validate_cohort(tiny_cohort)
    [w] = [w for w in report.warnings if "constant volume" in w.problem]
    assert w.problem.startswith("12 files: constant volume: every voxel is 0 (images/P001/")
    assert w.file == "images"


def test_piped_validate_prints_whole_lines(four) -> None:
    _edit(four, "patients.csv", graft_loss=["Yes", "No", "No", "Yes"])
    res = CliRunner().invoke(app, ["validate", "--cohort", str(four), "--tables-only"])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    [line] = [ln for ln in lines if "graft_loss" in ln and "error" in ln]
    assert line.lstrip().startswith("error  patients.csv  column 'graft_loss': 4 values")
    assert line.endswith("or write numbers") and "| fix: map the words" in line
    assert len(line) > 80 and "│" not in res.output


def test_an_empty_study_yaml_points_to_medimp_init(tiny_cohort) -> None:
    (tiny_cohort / "study.yaml").write_text("", encoding="utf-8")
    (p,) = _errors(tiny_cohort)
    assert "study.yaml is empty" in p.problem and "medimp init" in p.problem


def test_a_three_slice_volume_is_implausible_for_the_study(tiny_cohort) -> None:
    write_nifti(tiny_cohort / "images/P001/D15/pre.nii.gz",
                np.random.default_rng(0).uniform(1, 9, (64, 64, 3)).astype(np.float32),
                affine=np.diag([3.5, 3.5, 5.0, 1.0]))
    report = validate_cohort(tiny_cohort)
    [w] = [w for w in report.warnings if "cannot hold a kidney" in w.problem]
    assert w.problem.startswith("1 of 12 volume(s)") and "64x64x3 voxels" in w.problem
    assert (w.patient, w.exam, w.phase) == ("P001", "D15", "pre")


@pytest.fixture(scope="module")
def dynamic(simulated_cohort, tmp_path_factory) -> Path:
    return make_nifti4d_cohort(simulated_cohort, tmp_path_factory.mktemp("dyn") / "cohort")


def test_frames_far_from_their_phase_times_warn_and_exams_choose_their_own(
        dynamic, tmp_path) -> None:
    root = tmp_path / "c"
    shutil.copytree(dynamic, root)
    _study(root, dynamic={"select": "index", "frames": {"pre": 0, "arterial": 3,
                                                        "tubular": 4}})
    m = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    first = m.index[m["phase"] == "dynamic"][0]
    m["frames"] = ""
    m.loc[first, "frames"] = "pre:2 arterial:5 tubular:11"
    m.to_csv(root / "manifest.csv", index=False)
    c = read_cohort(root)
    pid, exam = m.loc[first, "patient_id"], m.loc[first, "exam"]
    own = c.dynamic_selection(pid, exam)
    assert own.frames == {"pre": 2, "arterial": 5, "tubular": 11} and own.method == "manifest"
    other = m[(m["phase"] == "dynamic") & (m.index != first)].iloc[0]
    assert c.dynamic_selection(other["patient_id"], other["exam"]).frames["tubular"] == 4
    report = validate_cohort(root)
    assert report.ok, report.errors
    # every other dynamic exam: the same finding, one line for all their files
    [late] = [w for w in report.warnings if "study.yaml puts it 180 s" in w.problem]
    n_dynamic = int((m["phase"] == "dynamic").sum())
    assert late.problem.startswith(f"{n_dynamic - 1} files: phase 'tubular' is frame 4 at 40 "
                                   "s, 40 s after the pre frame")
    assert m.loc[first, "path"] not in late.problem  # its own frame 11 is 190 s after pre
    m.loc[first, "frames"] = "pre:0 arterial:5"
    m.to_csv(root / "manifest.csv", index=False)
    (p,) = _errors(root)
    assert p.file == f"manifest.csv:{first + 2}" and "one frame for each phase" in p.problem


def test_many_outcomes_unknown_counts_what_is_known(tiny_cohort) -> None:
    pats = pd.read_csv(tiny_cohort / "patients.csv", dtype=str, keep_default_na=False)
    pats.drop(columns=["graft_loss_days"]).to_csv(tiny_cohort / "patients.csv", index=False)
    c = read_cohort(tiny_cohort)
    [w] = [w for w in c.warnings if "absent" in w.problem]
    assert "egfr_y2 known for 2 of 2 patients" in w.problem
    assert "every outcome is unknown" not in w.problem


def test_a_nifti_4d_in_the_lab_tree_is_a_dynamic_row(tmp_path) -> None:
    from medimp.data.cohort._layout import propose_manifest

    img = nib.Nifti1Image(np.zeros((4, 4, 4, 5), np.float32), np.eye(4))
    (tmp_path / "P7" / "M3").mkdir(parents=True)
    nib.save(img, tmp_path / "P7" / "M3" / "dce.nii.gz")
    layout = propose_manifest(tmp_path, ["7"], ["M3"])
    assert layout.rows == [{"patient_id": "7", "exam": "M3", "phase": "dynamic",
                            "path": "P7/M3/dce.nii.gz"}]


def test_dicom_series_folders_of_a_lab_tree_become_manifest_rows(tmp_path) -> None:
    from medimp.data.cohort._layout import propose_manifest
    from tests.data.conftest import write_dicom_series

    arr = np.random.default_rng(0).uniform(0, 100, (8, 8, 4)).astype(np.float32)
    for seq in ("ss_IV", "ART", "tub", "localizer"):
        write_dicom_series(tmp_path / "Patient 12" / "Visite J30" / seq, arr)
    (tmp_path / "Patient 12" / "Visite J30" / "report.pdf").write_bytes(b"%PDF-1.4")
    layout = propose_manifest(tmp_path, ["12"], ["D30"])
    assert sorted((r["phase"], r["path"]) for r in layout.rows) == [
        ("arterial", "Patient 12/Visite J30/ART"), ("pre", "Patient 12/Visite J30/ss_IV"),
        ("tubular", "Patient 12/Visite J30/tub")]
    assert {r["exam"] for r in layout.rows} == {"D30"}  # J30 (jour) is the tables' D30
    assert dict(layout.patterns) == {"Patient {patient}/Visite {exam}/{phase}": 3}
    assert [p for p, _ in layout.unmatched] == ["Patient 12/Visite J30/localizer"]


def test_collapse_joins_files_not_lines_of_a_table() -> None:
    from medimp.data._errors import Problem
    from medimp.data.cohort._findings import collapse

    lines = [Problem("error", f"exams.csv:{i}", problem="column 'exam' is empty")
             for i in (2, 3, 4)]
    files = [Problem("warning", f"images/P00{i}/D15/pre.nii.gz", f"P00{i}", "D15", "pre",
                     problem="constant volume: every voxel is 0") for i in (1, 2, 3, 4)]
    out = collapse(lines + files)
    assert out[:3] == lines
    [one] = out[3:]
    assert one.file == "images" and one.exam == "D15" and one.phase == "pre"
    assert one.patient is None and one.problem.startswith("4 files: constant volume")
    assert one.problem.endswith("images/P003/D15/pre.nii.gz and 1 more)")
