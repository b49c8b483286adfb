import subprocess
import sys

import pytest
from typer.testing import CliRunner

from medimp.cli.main import app


def test_help_lists_commands() -> None:
    """The top-level help lists every registered command and group with its one-line help,
    and each group's help lists its subcommands."""
    import typer

    result = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    assert result.output.lstrip().startswith("Usage: medimp [OPTIONS] COMMAND")
    root = typer.main.get_command(app)
    names = sorted(root.commands)
    assert {"simulate", "validate", "prompts", "cache", "pretrain", "embed", "evaluate",
            "demo"} <= set(names)
    listed = {line.split()[1] for line in result.output.splitlines()
              if line.startswith("│ ") and len(line.split()) > 1}
    for name in names:
        assert name in listed, f"{name} missing from medimp --help"
        summary = (root.commands[name].get_short_help_str(limit=40) or "").split()[0]
        assert summary and summary in result.output, name
        if hasattr(root.commands[name], "commands"):
            sub = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
            assert sub.exit_code == 0
            for child in root.commands[name].commands:
                assert f"│ {child} " in sub.output, f"{name} {child} missing from its help"


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "medimp.cli.main", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("medimp ")


def test_demo_overwrite_refuses_a_folder_of_the_users_files(tmp_path) -> None:
    """`demo --overwrite` replaces an earlier demo, never a folder that also holds the user's
    files (a .git checkout, notes): refused before anything runs, nothing touched."""
    out = tmp_path / "project"
    (out / ".git").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "cohort").mkdir()
    (out / "cohort" / "mydata.csv").write_text("precious")
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--overwrite", "--patients", "10",
                                   "--shape", "8", "8", "8", "--epochs", "1", "--seeds", "0"])
    assert res.exit_code == 1, res.output
    assert "holds .git" in res.output and "demo folder" in res.output
    assert "[simulate]" not in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in out.rglob("*")) == [".git", "HEAD", "cohort", "mydata.csv"]


def test_run_demo_from_python_refuses_a_folder_of_the_users_files(tmp_path) -> None:
    """The same rule holds for the library call, not only for the command."""
    from medimp.demo import DemoConfig, run_demo

    out = tmp_path / "project"
    (out / ".git").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"holds \.git, notes\.txt"):
        run_demo(out, DemoConfig(n_patients=10, shape=(8, 8, 8), epochs=1, seeds=1),
                 overwrite=True, progress=False, log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == [".git", "notes.txt"]
