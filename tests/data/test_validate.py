"""validate_cohort and `medimp validate` on real cohorts with damaged images and tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.data import validate_cohort
from tests.data.conftest import snapshot, write_nifti

IMG = "images/P002/D15/arterial.nii.gz"


def _check(root: Path):
    before = snapshot(root)
    report = validate_cohort(root)  # never raises on bad data
    assert snapshot(root) == before
    return report


def _one_error(root: Path):
    report = _check(root)
    assert len(report.errors) == 1, report.errors
    (p,) = report.errors
    assert (p.file, p.patient, p.exam, p.phase) == (IMG, "P002", "D15", "arterial")
    assert p.fix
    return p


def test_valid_cohort_report(tiny_cohort: Path) -> None:
    report = _check(tiny_cohort)
    assert report.ok and report.errors == [] and report.warnings == []
    s = report.summary
    assert (s["patients"], s["exams"], s["volumes"], s["files"]) == (2, 4, 12, 12)
    assert s["exams_per_label"] == {"D15": 2, "D30": 2, "M3": 0, "M12": 0}
    assert s["volumes_per_phase"] == {"pre": 4, "arterial": 4, "tubular": 4}
    assert s["phases_per_exam"] == {"3": 4}
    assert s["outcomes"]["egfr_y2"] == {"known": 2, "missing": 0}
    assert s["outcomes"]["egfr_y3"] == {"known": 0, "missing": 2}
    assert s["outcomes"]["graft_loss"] == {"known": 2, "missing": 0, "positive": 0}
    assert json.loads(report.to_json())["summary"]["volumes"] == 12


def test_truncated_image(tiny_cohort: Path) -> None:
    path = tiny_cohort / IMG
    path.write_bytes(path.read_bytes()[:200])
    assert "truncated" in _one_error(tiny_cohort).problem


def test_not_gzip_image(tiny_cohort: Path) -> None:
    write_nifti(tiny_cohort / "plain.nii")
    shutil.copy(tiny_cohort / "plain.nii", tiny_cohort / IMG)
    assert "not gzip" in _one_error(tiny_cohort).problem


def test_header_dims_mismatch(tiny_cohort: Path) -> None:
    import gzip

    path = tiny_cohort / IMG
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw = raw[: len(raw) - 8 * 8 * 4]  # drop the last slice's bytes, keep the header's dims
    path.write_bytes(gzip.compress(bytes(raw)))
    assert "header dims" in _one_error(tiny_cohort).problem


def test_nan_voxels(tiny_cohort: Path) -> None:
    a = np.ones((8, 8, 6), np.float32)
    a[2, 2, 2] = np.nan
    write_nifti(tiny_cohort / IMG, a)
    assert _one_error(tiny_cohort).problem.startswith("1 NaN and 0 Inf")


def test_zero_affine(tiny_cohort: Path) -> None:
    img = nib.Nifti1Image(np.ones((8, 8, 6), np.float32), None)
    img.header.set_sform(np.zeros((4, 4)), code=1)
    nib.save(img, str(tiny_cohort / IMG))
    assert "singular affine" in _one_error(tiny_cohort).problem


def test_4d_image(tiny_cohort: Path) -> None:
    write_nifti(tiny_cohort / IMG, np.ones((8, 8, 6, 3), np.float32))
    assert "4D image" in _one_error(tiny_cohort).problem


def test_constant_volume_is_a_warning(tiny_cohort: Path, medimp_original: Path) -> None:
    """The original's all-zero dummy volume: a warning, not an error and not a crash."""
    shutil.copy(medimp_original / "dummy_mri_dataset" / "dummy_mri.nii.gz", tiny_cohort / IMG)
    report = _check(tiny_cohort)
    assert report.ok
    (w,) = report.warnings
    assert w.severity == "warning" and "constant volume: every voxel is 0" in w.problem
    assert (w.patient, w.exam, w.phase) == ("P002", "D15", "arterial")


def test_structure_warnings(tiny_cohort: Path) -> None:
    m = pd.read_csv(tiny_cohort / "manifest.csv", dtype=str)
    m = m[~((m.patient_id == "P001") & (m.exam == "D30") & (m.phase == "tubular"))]
    m = m[~((m.patient_id == "P002") & (m.exam == "D30"))]
    m.to_csv(tiny_cohort / "manifest.csv", index=False)
    p = pd.read_csv(tiny_cohort / "patients.csv", dtype=str)
    p.loc[p.patient_id == "P002", ["egfr_y2", "graft_loss", "followup_days"]] = ""
    p.to_csv(tiny_cohort / "patients.csv", index=False)
    report = _check(tiny_cohort)
    assert report.ok
    got = {(w.patient, w.exam, w.problem.split(" (")[0]) for w in report.warnings}
    assert got == {
        ("P001", "D30", "phase(s) ['tubular'] missing"),
        ("P002", "D30", "exam has clinical values but no image"),
        ("P002", None, "patient without outcomes"),
    }
    assert report.summary["exams"] == 3
    assert report.summary["phases_per_exam"] == {"3": 2, "2": 1}
    assert report.summary["outcomes"]["graft_loss"]["missing"] == 1


def test_table_and_image_errors_together(tiny_cohort: Path) -> None:
    """A broken table does not hide broken images: both are listed."""
    m = pd.read_csv(tiny_cohort / "manifest.csv", dtype=str)
    m.loc[0, "phase"] = "venous"
    m.to_csv(tiny_cohort / "manifest.csv", index=False)
    (tiny_cohort / IMG).write_bytes(b"\x1f\x8b garbage")
    report = _check(tiny_cohort)
    problems = sorted(p.problem.split(" ")[0] for p in report.errors)
    assert problems == ["truncated", "unknown"]
    assert report.summary["volumes"] == 12


def test_tables_only_skips_images(tiny_cohort: Path) -> None:
    (tiny_cohort / IMG).write_bytes(b"broken")
    assert validate_cohort(tiny_cohort, read_images=False).ok
    calls = []
    report = validate_cohort(tiny_cohort, progress=lambda d, t: calls.append((d, t)))
    assert not report.ok and calls[-1] == (12, 12)


def test_missing_folder_is_reported_not_raised(tmp_path: Path) -> None:
    report = validate_cohort(tmp_path / "nope")
    assert not report.ok and "not found" in report.errors[0].problem


# ---------------------------------------------------------------- CLI


def test_cli_ok_exit_0(tiny_cohort: Path) -> None:
    res = CliRunner().invoke(app, ["validate", "--cohort", str(tiny_cohort)])
    assert res.exit_code == 0, res.output
    assert "OK, 0 warning(s)" in res.output and "patients" in res.output


def test_cli_errors_exit_1_and_json(tiny_cohort: Path) -> None:
    (tiny_cohort / IMG).unlink()
    res = CliRunner().invoke(app, ["validate", "--cohort", str(tiny_cohort)])
    assert res.exit_code == 1
    assert "1 error(s), 0 warning(s)" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["validate", "--cohort", str(tiny_cohort), "--json"])
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert data["ok"] is False and data["errors"][0]["phase"] == "arterial"
    assert "does not exist" in data["errors"][0]["problem"]


def test_cli_not_a_folder_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["validate", "--cohort", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a folder" in res.output


@pytest.mark.parametrize("flag", ["--json", "--tables-only"])
def test_cli_help_documents_options(flag: str) -> None:
    res = CliRunner().invoke(app, ["validate", "--help"], terminal_width=200)
    assert res.exit_code == 0 and flag in res.output


def test_two_dicom_series_in_one_folder(tiny_cohort: Path) -> None:
    from tests.data.conftest import write_dicom_series

    folder = tiny_cohort / "images/P002/D15/arterial_dcm"
    write_dicom_series(folder, np.ones((6, 6, 3), np.float32), series_uid="1.9.1", prefix="a")
    write_dicom_series(folder, np.ones((6, 6, 3), np.float32), series_uid="1.9.2", prefix="b")
    m = pd.read_csv(tiny_cohort / "manifest.csv", dtype=str)
    m.loc[m.path == IMG, "path"] = "images/P002/D15/arterial_dcm"
    m.to_csv(tiny_cohort / "manifest.csv", index=False)
    report = _check(tiny_cohort)
    (p,) = report.errors
    assert "2 DICOM series" in p.problem and "1.9.1" in p.problem and p.phase == "arterial"
    m["series_uid"] = ""
    m.loc[m.path == "images/P002/D15/arterial_dcm", "series_uid"] = "1.9.1"
    m.to_csv(tiny_cohort / "manifest.csv", index=False)
    report = _check(tiny_cohort)
    assert report.ok and "constant volume" in report.warnings[0].problem


def test_simulated_cohort_is_valid_and_damage_is_caught(simulated_cohort: Path,
                                                        tmp_path: Path) -> None:
    report = validate_cohort(simulated_cohort)
    assert report.ok, report.errors
    manifest = pd.read_csv(simulated_cohort / "manifest.csv", dtype=str)
    assert report.summary["volumes"] == len(manifest)
    assert report.summary["patients"] == 16
    # the same cohort with one volume cut short: exactly that volume is reported
    copy = tmp_path / "sim"
    shutil.copytree(simulated_cohort, copy)
    row = manifest.iloc[5]
    target = copy / row["path"]
    target.write_bytes(target.read_bytes()[:-100])
    (err,) = validate_cohort(copy).errors
    assert (err.patient, err.exam, err.phase) == (row["patient_id"], row["exam"], row["phase"])


def test_exam_after_graft_loss_is_flagged(tiny_cohort: Path) -> None:
    pats = pd.read_csv(tiny_cohort / "patients.csv", dtype={"patient_id": str})
    exams = pd.read_csv(tiny_cohort / "exams.csv", dtype={"patient_id": str})
    first = exams.sort_values("days_post_transplant").iloc[0]
    pid, day0 = first["patient_id"], float(first["days_post_transplant"])
    pats["graft_loss_days"] = np.nan
    pats.loc[pats["patient_id"] == pid, ["graft_loss", "graft_loss_days"]] = [1, day0 + 1]
    pats.to_csv(tiny_cohort / "patients.csv", index=False)
    report = _check(tiny_cohort)
    flagged = [(p.patient, p.exam) for p in report.warnings if "graft loss" in p.problem]
    later = exams[(exams["patient_id"] == pid) & (exams["days_post_transplant"] >= day0 + 1)]
    expected = sorted(zip(later["patient_id"], later["exam"], strict=True))
    assert flagged and sorted(flagged) == expected
    assert report.ok  # a warning, not an error


def test_stray_file_in_a_dicom_folder_is_named(tiny_cohort: Path) -> None:
    from tests.data.conftest import write_dicom_series

    folder = tiny_cohort / "images/P002/D15/arterial_dcm"
    write_dicom_series(folder, np.ones((6, 6, 3), np.float32), series_uid="1.9.1")
    (folder / "notes.txt").write_text("scanned by the night shift\n")
    m = pd.read_csv(tiny_cohort / "manifest.csv", dtype=str)
    m.loc[m.path == IMG, "path"] = "images/P002/D15/arterial_dcm"
    m.to_csv(tiny_cohort / "manifest.csv", index=False)
    (p,) = _check(tiny_cohort).errors
    assert p.file == "images/P002/D15/arterial_dcm/notes.txt"  # the file, not only its folder
    assert (p.patient, p.exam, p.phase) == ("P002", "D15", "arterial")
    assert "DICM" in p.problem and "remove non-DICOM files" in p.fix
