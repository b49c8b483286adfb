import subprocess
import sys

from typer.testing import CliRunner

from medimp.cli.main import app


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "medimp" in result.output.lower()


def test_console_script_version() -> None:
    out = subprocess.run([sys.executable, "-m", "medimp.cli.main", "--version"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.startswith("medimp ")
