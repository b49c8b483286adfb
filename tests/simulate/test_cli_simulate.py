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


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        res = run(str(ro / "cohort"), "--patients", "10", "--shape", "12", "12", "12")
        assert res.exit_code == 2 and "permission" in res.output.lower()
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)
