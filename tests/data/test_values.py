"""Values in the tables: missing-value spellings, patient ids that look like NA, plausible
ranges, and image paths that lead outside the cohort folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from medimp.data import CohortError, read_cohort, validate_cohort
from medimp.data.cohort._values import CohortWarning


def _edit(root: Path, name: str, fn) -> None:
    df = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    fn(df).to_csv(root / name, index=False)


def _study(root: Path, **fields) -> None:
    raw = yaml.safe_load((root / "study.yaml").read_text())
    raw.update(fields)
    (root / "study.yaml").write_text(yaml.safe_dump(raw))


def _rename_patient(root: Path, old: str, new: str) -> None:
    for name in ("manifest.csv", "exams.csv", "patients.csv"):
        _edit(root, name, lambda d: d.assign(patient_id=d["patient_id"].replace({old: new})))


@pytest.mark.parametrize("pid", ["NA", "None", "null", "N/A", "nan", "NaN", "#N/A"])
def test_patient_named_like_a_missing_value_stays_a_patient(tiny_cohort, pid) -> None:
    _rename_patient(tiny_cohort, "P002", pid)
    c = read_cohort(tiny_cohort)
    assert sorted(c.patients["patient_id"]) == sorted(["P001", pid])
    assert (pid, "D15") in c.exam_keys()
    assert c.volume_path(pid, "D30", "tubular") is not None
    assert c.patient_row(pid)["donor_age"] == c.patient_row(pid)["donor_age"]  # not NaN


def test_undeclared_missing_spelling_in_a_numeric_cell_is_an_error(tiny_cohort) -> None:
    _edit(tiny_cohort, "exams.csv", lambda d: d.assign(egfr=["n/a", *d["egfr"][1:]]))
    with pytest.raises(CohortError) as ei:
        read_cohort(tiny_cohort)
    (p,) = ei.value.problems
    assert "column 'egfr': 'n/a' is not a number" in p.problem
    assert (p.file, p.patient, p.exam) == ("exams.csv:2", "P001", "D15")


def test_declared_missing_spellings_are_unknown(tiny_cohort) -> None:
    _study(tiny_cohort, missing_values=["", "n/a", "NA"])
    _edit(tiny_cohort, "exams.csv", lambda d: d.assign(egfr=["n/a", "NA", *d["egfr"][2:]]))
    _rename_patient(tiny_cohort, "P002", "NA")  # an id is never a missing value
    c = read_cohort(tiny_cohort)
    assert c.exams["egfr"].isna().sum() == 2
    assert "NA" in set(c.patients["patient_id"])


def test_empty_cell_is_unknown_by_default(tiny_cohort) -> None:
    c = read_cohort(tiny_cohort)
    assert c.patients["egfr_y3"].isna().all()


@pytest.mark.parametrize(("table", "column", "value"), [
    ("patients.csv", "donor_age", "-5"),
    ("patients.csv", "recipient_age", "250"),
    ("exams.csv", "egfr", "9999"),
    ("exams.csv", "egfr", "-12"),
    ("exams.csv", "creatinine_mg_dl", "0"),
    ("exams.csv", "days_post_transplant", "-3"),
    ("patients.csv", "egfr_y2", "1500"),
])
def test_implausible_values_are_errors(tiny_cohort, table, column, value) -> None:
    _edit(tiny_cohort, table, lambda d: d.assign(**{column: [value, *d[column][1:]]}))
    with pytest.raises(CohortError) as ei:
        read_cohort(tiny_cohort)
    (p,) = ei.value.problems
    assert f"column {column!r}: {float(value):g} is outside the plausible range" in p.problem
    assert p.file == f"{table}:2" and p.patient == "P001" and "study.yaml" in p.fix
    report = validate_cohort(tiny_cohort, read_images=False)
    assert [q.problem for q in report.errors] == [p.problem]


def test_ranges_are_configurable_and_can_warn(tiny_cohort) -> None:
    _edit(tiny_cohort, "patients.csv", lambda d: d.assign(donor_age=["-5", "120"]))
    _study(tiny_cohort, out_of_range="warning")
    # both rows in one finding: the file, the column, the count and the rows
    with pytest.warns(CohortWarning, match=r"patients.csv: column 'donor_age': 2 values are "
                      r"outside the plausible range \[0, 100\] years: line 2 \(P001: '-5'\), "
                      r"line 3 \(P002: '120'\)"):
        c = read_cohort(tiny_cohort)
    assert len([w for w in c.warnings if "plausible range" in w.problem]) == 1
    report = validate_cohort(tiny_cohort, read_images=False)
    assert report.ok and sum("plausible range" in w.problem for w in report.warnings) == 1
    # a study's own range replaces the default; null turns a default off
    _study(tiny_cohort, out_of_range="error", ranges={"donor_age": None})
    read_cohort(tiny_cohort)
    _study(tiny_cohort, ranges={"egfr": {"min": 20, "max": 30}})
    _edit(tiny_cohort, "patients.csv", lambda d: d.assign(donor_age=["50", "60"]))
    with pytest.raises(CohortError, match=r"plausible range \[20, 30\]"):
        read_cohort(tiny_cohort)


def test_out_of_range_stops_prompt_building(tiny_cohort) -> None:
    from medimp.prompts import build_prompts

    _edit(tiny_cohort, "exams.csv", lambda d: d.assign(egfr=["9999", *d["egfr"][1:]]))
    with pytest.raises(CohortError, match="9999 is outside"):
        build_prompts(read_cohort(tiny_cohort))


def _outside_image(tmp_path: Path, cohort: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (cohort / "images/P001/D15/pre.nii.gz").rename(outside / "pre.nii.gz")


def test_dotdot_manifest_path_warns_and_strict_refuses(tmp_path, tiny_cohort) -> None:
    _outside_image(tmp_path, tiny_cohort)
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(
        path=d["path"].replace({"images/P001/D15/pre.nii.gz": "../elsewhere/pre.nii.gz"})))
    with pytest.warns(CohortWarning, match=r"leads outside the cohort folder"):
        read_cohort(tiny_cohort)
    report = validate_cohort(tiny_cohort, read_images=False)
    (w,) = [w for w in report.warnings if "outside" in w.problem]
    assert w.file == "manifest.csv:2" and w.patient == "P001" and w.phase == "pre"
    with pytest.raises(CohortError, match=r"'../elsewhere/pre.nii.gz' leads outside"):
        read_cohort(tiny_cohort, strict_paths=True)
    assert not validate_cohort(tiny_cohort, read_images=False, strict_paths=True).ok
    _study(tiny_cohort, strict_paths=True)
    with pytest.raises(CohortError, match="leads outside"):
        read_cohort(tiny_cohort)


def test_symlink_out_of_the_folder_warns(tmp_path, tiny_cohort) -> None:
    _outside_image(tmp_path, tiny_cohort)
    (tiny_cohort / "images/P001/D15/pre.nii.gz").symlink_to(tmp_path / "elsewhere/pre.nii.gz")
    with pytest.warns(CohortWarning, match=r"a symlink points to .*elsewhere"):
        read_cohort(tiny_cohort)
    with pytest.raises(CohortError, match="symlink"):
        read_cohort(tiny_cohort, strict_paths=True)


def test_paths_inside_do_not_warn(tiny_cohort) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CohortWarning)
        read_cohort(tiny_cohort)


def test_cli_validate_strict_paths(tmp_path, tiny_cohort) -> None:
    from typer.testing import CliRunner

    from medimp.cli.main import app

    _outside_image(tmp_path, tiny_cohort)
    _edit(tiny_cohort, "manifest.csv", lambda d: d.assign(
        path=d["path"].replace({"images/P001/D15/pre.nii.gz": "../elsewhere/pre.nii.gz"})))
    runner = CliRunner()
    assert runner.invoke(app, ["validate", "--cohort", str(tiny_cohort)]).exit_code == 0
    res = runner.invoke(app, ["validate", "--cohort", str(tiny_cohort), "--strict-paths"])
    assert res.exit_code == 1 and "outside" in res.output


def test_truth_and_embedding_csv_keep_a_patient_named_na(tiny_cohort, tmp_path) -> None:
    from medimp.evaluate.embeddings import read_embeddings

    _rename_patient(tiny_cohort, "P002", "NA")
    pd.DataFrame({"patient_id": ["P001", "NA"], "exam": ["D15", "D15"],
                  "latent": [0.1, ""]}).to_csv(tiny_cohort / "truth.csv", index=False)
    truth = read_cohort(tiny_cohort).truth
    assert truth["patient_id"].tolist() == ["P001", "NA"] and truth["latent"].isna().sum() == 1
    emb = tmp_path / "emb.csv"
    pd.DataFrame({"patient_id": ["P001", "NA"], "exam": ["D15", "D15"], "level": "exam",
                  "e0": [0.5, 0.7]}).to_csv(emb, index=False)
    assert read_embeddings(emb)["patient_id"].tolist() == ["P001", "NA"]
