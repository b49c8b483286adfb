"""Every command of the CLI answers bad input with one line on stderr, never a traceback.

The commands are enumerated from the typer app, so a new command is covered without editing
this file.
"""

from __future__ import annotations

import enum
import inspect
import json
import types
import typing
from pathlib import Path

import pytest
import typer
from typer.models import OptionInfo
from typer.testing import CliRunner

from medimp.cli.main import app

#: Rich markup in a path must be printed verbatim, never interpreted (nor crash the printer).
_MARKUP_NAME = "[bold]x[/x]"


def _commands(tapp: typer.Typer, prefix: tuple[str, ...] = ()):
    """(command words, callback) of every command and subcommand registered on ``tapp``."""
    for info in tapp.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        yield (*prefix, name), info.callback
    for group in tapp.registered_groups:
        sub = group.typer_instance
        yield from _commands(sub, (*prefix, group.name or sub.info.name))


_COMMANDS = sorted(_commands(app))


def _value(kind: object, required: bool, bad: Path) -> str | None:
    """The bad path for every path parameter, a plain value for other required ones."""
    kinds = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    if Path in kinds:
        return str(bad)
    if not required or bool in kinds:
        return None
    first = kinds[0]
    if isinstance(first, type) and issubclass(first, enum.Enum):
        return str(next(iter(first)).value)
    if first in (int, float):
        return "1"
    return "P001"


#: Options that a command needs although their parameter has a default (its deprecated
#: positional spelling is the other way to give it; docs/cli.md).
_INPUTS = ("--cohort", "--run")


def _decls(info: object) -> list[str]:
    """The option's names (typer keeps the first one of ``Option("--name")`` as its default)."""
    decls = list(getattr(info, "param_decls", None) or ())
    first = getattr(info, "default", None)
    if isinstance(first, str) and first.startswith("--"):
        decls.insert(0, first)
    return [d for d in decls if d.startswith("--")]


def _required(param: inspect.Parameter, info: object) -> bool:
    return param.default is inspect.Parameter.empty or any(d in _INPUTS for d in _decls(info))


def _args(callback, bad: Path) -> list[str]:
    """Command-line words giving ``bad`` to every required path parameter (or, when there is
    none, to the first optional one) and a plain value to every other required parameter.
    Hidden parameters (deprecated spellings) are left out."""
    args: list[str] = []
    hints = typing.get_type_hints(callback, include_extras=True)
    params = [(n, p) for n, p in inspect.signature(callback).parameters.items()
              if not getattr(typing.get_args(hints[n])[1], "hidden", False)]
    required_path = any(_required(p, typing.get_args(hints[n])[1]) and _value(
        typing.get_args(hints[n])[0], False, bad) for n, p in params)
    given_path = False
    for name, param in params:
        kind, info = typing.get_args(hints[name])[:2]
        required = _required(param, info)
        value = _value(kind, required, bad)
        if value == str(bad) and not required:
            if required_path or given_path:
                continue
            given_path = True
        if value is None:
            continue
        if isinstance(info, OptionInfo):
            decls = _decls(info)
            args += [decls[0] if decls else "--" + name.replace("_", "-"), value]
        else:
            args.append(value)
    return args


def test_every_command_is_walked() -> None:
    names = {" ".join(path) for path, _ in _COMMANDS}
    assert {"validate", "pretrain", "evaluate", "prompts build", "cache info", "demo"} <= names


@pytest.mark.parametrize("path,callback", _COMMANDS, ids=[" ".join(p) for p, _ in _COMMANDS])
def test_bad_path_gives_one_line(path: tuple[str, ...], callback, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file.txt"  # a file where a folder is expected: reads and writes fail
    blocker.write_text("not a folder\n")
    bad = blocker / _MARKUP_NAME
    args = [*path, *_args(callback, bad)]
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"medimp {' '.join(args)} raised {result.exception!r}")
    assert result.exit_code != 0, f"medimp {' '.join(args)} accepted {bad}"
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"medimp {' '.join(args)}:\n{result.stderr}"
    assert lines[0].startswith("error: ")
    assert _MARKUP_NAME in lines[0] or "a_file.txt" in lines[0], lines[0]


def test_markup_in_a_cohort_path_is_printed_verbatim(simulated_cohort: Path,
                                                      tmp_path: Path) -> None:
    import shutil

    cohort = tmp_path / _MARKUP_NAME
    shutil.copytree(simulated_cohort, cohort)
    result = CliRunner().invoke(app, ["validate", "--cohort", str(cohort), "--tables-only"])
    assert result.exit_code == 0, result.output
    assert f"{cohort}: OK" in result.output


def test_stage_errors_share_one_root() -> None:
    import medimp
    from medimp.data import CohortError
    from medimp.evaluate import EvaluationError
    from medimp.models import ModelError
    from medimp.prompts import PromptError
    from medimp.simulate import SimulationError
    from medimp.study import StudyError
    from medimp.train import ConfigError

    for cls in (CohortError, EvaluationError, ModelError, PromptError, SimulationError,
                StudyError, ConfigError):
        assert issubclass(cls, medimp.MedimpError) and issubclass(cls, ValueError), cls


def test_permission_denied_names_the_file(simulated_cohort: Path) -> None:
    import shutil
    import tempfile

    from tests._fs import run_cli_unprivileged

    base = Path(tempfile.mkdtemp(prefix="medimp-perm-"))  # others may enter, unlike tmp_path
    try:
        base.chmod(0o755)
        cohort = base / "cohort"
        shutil.copytree(simulated_cohort, cohort)
        for p in [cohort, *cohort.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (cohort / "patients.csv").chmod(0)
        res = run_cli_unprivileged(["prompts", "build", "--cohort", str(cohort), "--out",
                                    str(base / "prompts.parquet")], home=base)
        assert res.returncode == 1, res.stderr
        assert "Traceback" not in res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith(f"error: {cohort / 'patients.csv'}: permission denied")
        assert "permission problem" in line
        res = run_cli_unprivileged(["validate", "--cohort", str(cohort), "--tables-only", "--json"],
                                   home=base)
        assert res.returncode == 1, res.stderr
        (problem,) = json.loads(res.stdout)["errors"]
        assert problem["file"] == "patients.csv" and "permission denied" in problem["problem"]
        (cohort / "patients.csv").chmod(0o644)
        cohort.chmod(0o555)  # a folder the user may not write into
        res = run_cli_unprivileged(["prompts", "build", "--cohort", str(cohort), "--out",
                                    str(cohort / "prompts.parquet")], home=base)
        assert res.returncode == 1, res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert str(cohort / "prompts.parquet") in line and "permission denied" in line
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(base)


@pytest.mark.parametrize(("args", "says"), [
    (["pretrain", "--out", "x"], "Missing option '--cohort' (see 'medimp pretrain --help')"),
    (["evaluate", "--bogus"], "No such option: --bogus"),
    (["simulate"], "Missing option '--out' (see 'medimp simulate --help')"),
    (["simulate", "--out", "x", "--patients", "many"], "Invalid value for '--patients'"),
    (["no-such-command"], "No such command 'no-such-command' (see 'medimp --help')"),
])
def test_usage_errors_are_one_line(args: list[str], says: str) -> None:
    """A missing or unknown option (typer's usage errors) is one line naming what to do, exit
    2, instead of typer's multi-line box."""
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1, res.output
    assert res.output.startswith("error: ") and says in res.output, res.output
    assert "╭" not in res.output and "Usage:" not in res.output


def test_usage_error_from_the_console_script(tmp_path: Path) -> None:
    """The installed entry point too (typer's standalone mode, not only the test runner)."""
    import subprocess
    import sys

    medimp = str(Path(sys.executable).with_name("medimp"))
    res = subprocess.run([medimp, "cache", "info", "--bogus"], capture_output=True, text=True,
                         check=False, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "error: No such option: --bogus (see 'medimp cache info --help')"], res.stderr
    ok = subprocess.run([medimp, "cache", "--help"], capture_output=True, text=True,
                        check=False, cwd=tmp_path)
    assert ok.returncode == 0 and "info" in ok.stdout
