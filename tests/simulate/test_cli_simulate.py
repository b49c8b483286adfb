"""`medimp simulate` on the command line: output, figures, one-line errors with exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medimp.cli.main import app


def run(*args: str):
    return CliRunner().invoke(app, ["simulate", *args])


def test_simulate_prints_cohort_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    res = run(str(out), "--patients", "10", "--shape", "12", "12", "10", "--seed", "3")
    assert res.exit_code == 0, res.output
    assert "montage.png" in res.output and "enhancement_curves.png" in res.output
    assert (out / "figures" / "montage.png").is_file()
    assert (out / "manifest.csv").is_file()


@pytest.mark.parametrize("args", [
    ["--patients", "4"],
    ["--shape", "16", "0", "16"],
    ["--shape", "16", "-1", "16"],
    ["--format", "png"],
    ["--workers", "0"],
])
def test_bad_input_exit_2_and_nothing_written(tmp_path: Path, args: list[str]) -> None:
    res = run(str(tmp_path / "out"), *args)
    assert res.exit_code == 2
    assert "error" in res.output.lower()
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_needs_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("keep")
    res = run(str(tmp_path), "--patients", "10", "--shape", "12", "12", "12")
    assert res.exit_code == 2 and "--overwrite" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_out_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    res = run(str(tmp_path / "afile" / "cohort"), "--patients", "10", "--shape", "12", "12", "12")
    assert res.exit_code == 2 and "is a file" in res.output
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
        res = run(str(parent / "medimp-cohort"), "--patients", "10", "--shape", "12", "12", "12")
        assert res.exit_code == 2 and "permission denied" in res.output.lower()
        assert not (parent / "medimp-cohort").exists()
    finally:
        if parent.is_relative_to(tmp_path):
            parent.chmod(0o700)
