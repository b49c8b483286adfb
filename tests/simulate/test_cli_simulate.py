"""`medimp simulate` on the command line: the cohort it writes, its figures, one-line errors
(exit 2 for a usage error, 1 for input the simulator refuses)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimp.cli.main import app


def run(*args: str):
    return CliRunner().invoke(app, ["simulate", *args])


def test_simulate_writes_the_cohort_it_prints(tmp_path: Path) -> None:
    import nibabel as nib
    import pandas as pd

    out = tmp_path / "cohort"
    res = run("--out", str(out), "--patients", "10", "--shape", "12", "12", "10", "--seed", "3")
    assert res.exit_code == 0, res.output
    assert f"cohort written to {out} (10 patients, nifti, shape 12x12x10)" in res.output
    for name in ("montage.png", "enhancement_curves.png"):
        assert f"figure: {out / 'figures' / name}" in res.output
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    patients = pd.read_csv(out / "patients.csv", dtype={"patient_id": str})
    manifest = pd.read_csv(out / "manifest.csv", dtype={"patient_id": str})
    assert len(patients) == 10 and patients["patient_id"].is_unique
    assert set(manifest["patient_id"]) == set(patients["patient_id"])
    assert all((out / p).is_file() for p in manifest["path"])
    assert nib.load(out / manifest["path"].iloc[0]).shape == (12, 12, 10)
    # the same seed gives the same cohort, whatever the number of processes
    again = tmp_path / "again"
    assert run("--out", str(again), "--patients", "10", "--shape", "12", "12", "10", "--seed",
               "3", "--jobs", "2").exit_code == 0
    for table in ("patients.csv", "exams.csv", "manifest.csv"):
        assert (again / table).read_bytes() == (out / table).read_bytes(), table


def test_positional_out_still_works_with_a_warning(tmp_path: Path) -> None:
    res = run(str(tmp_path / "c"), "--patients", "10", "--shape", "8", "8", "8")
    assert res.exit_code == 0, res.output
    assert "the positional OUT of 'medimp simulate' is deprecated" in res.stderr
    assert (tmp_path / "c" / "manifest.csv").is_file()


@pytest.mark.parametrize(("args", "code"), [
    (["--patients", "4"], 1),
    (["--shape", "16", "0", "16"], 1),
    (["--shape", "16", "-1", "16"], 1),
    (["--format", "png"], 1),
    (["--jobs", "-2"], 2),
    (["--patients", "many"], 2),
])
def test_bad_input_one_line_and_nothing_written(tmp_path: Path, args: list[str],
                                                code: int) -> None:
    res = run("--out", str(tmp_path / "out"), *args)
    assert res.exit_code == code, res.output
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith("(see 'medimp simulate --help')")
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("keep")
    res = run("--out", str(tmp_path), "--patients", "10", "--shape", "12", "12", "12")
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_out_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = run("--out", str(tmp_path / "afile" / "cohort"), "--patients", "10", "--shape", "12",
              "12", "12")
    assert res.exit_code == 1 and "is a file" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_unwritable_out(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        parent = tmp_path / "ro"
        parent.mkdir()
        parent.chmod(0o500)
    else:  # root writes anywhere except on read-only mounts such as /proc/sys
        parent = Path("/proc/sys")
        if not parent.is_dir() or os.access(parent, os.W_OK):
            pytest.skip("no unwritable folder available to root here")
    try:
        res = run("--out", str(parent / "medimp-cohort"), "--patients", "10", "--shape", "12",
                  "12", "12")
        assert res.exit_code == 1 and "permission denied" in res.output.lower()
        assert not (parent / "medimp-cohort").exists()
    finally:
        if parent.is_relative_to(tmp_path):
            parent.chmod(0o700)
