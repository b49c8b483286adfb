"""Every command's --help names the same idea the same way (docs/cli.md).

The commands are enumerated from the typer app, so a command added later is checked too.
"""

from __future__ import annotations

import os
import re

import pytest
import typer
from typer.testing import CliRunner

from medimp.cli.main import app
from tests.test_cli_errors import _COMMANDS

#: The one spelling of each idea, and the spellings a command must not show for it.
SYNONYMS = {
    "--cohort": ("--cohort-dir", "--data", "--dataset", "--input"),
    "--out": ("--output", "--out-dir", "--outdir", "--output-dir"),
    "--overwrite": ("--force", "--replace"),
    "--jobs": ("--workers", "--n-jobs", "--processes", "--procs", "--num-workers"),
    "--threads": ("--num-threads", "--n-threads", "--torch-threads"),
    "--seeds": ("--n-seeds", "--num-seeds", "--replicates"),
    "--runs": ("--run-dirs", "--pretrained"),
}
#: Commands that compute (torch or BLAS work): each takes --threads.
COMPUTING = {("simulate",), ("pretrain",), ("embed",), ("export",), ("evaluate",), ("demo",),
             ("fit-prognosis",), ("predict",)}
#: The positionals the vocabulary keeps (a source that is neither a cohort nor a run).
POSITIONALS = {("import-medimp",): ["ROOT"], ("prompts", "check"): ["BANK"],
               ("prompts", "augment"): ["TEMPLATES"], ("predict",): ["MODEL"]}


def _help(words: tuple[str, ...]) -> str:
    res = CliRunner().invoke(app, [*words, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def _options(words: tuple[str, ...]) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", _help(words)))


def _click_command(words: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for w in words:
        cmd = cmd.commands[w]
    return cmd


@pytest.mark.parametrize("words", [w for w, _ in _COMMANDS], ids=" ".join)
def test_one_name_per_idea(words: tuple[str, ...]) -> None:
    shown = _options(words)
    for name, others in SYNONYMS.items():
        clash = shown & set(others)
        assert not clash, f"medimp {' '.join(words)} --help shows {clash}; use {name}"
    if words in COMPUTING:
        assert "--threads" in shown, f"medimp {' '.join(words)} computes: it takes --threads"
    visible = [p.name.upper() for p in _click_command(words).params
               if p.param_type_name == "argument" and not p.hidden]
    assert visible == POSITIONALS.get(words, []), (
        f"medimp {' '.join(words)} shows positional {visible}: the cohort is --cohort, the "
        "output --out, a run --run (docs/cli.md)")


def test_every_shared_option_reads_the_same_everywhere() -> None:
    """--jobs counts processes and --threads threads, in every command that has them."""
    seen = {"--jobs": 0, "--threads": 0, "--cohort": 0, "--out": 0}
    for words, _ in _COMMANDS:
        cmd = _click_command(words)
        for p in cmd.params:
            if p.param_type_name != "option" or p.hidden:
                continue
            help_text = (p.help or "").lower()
            for opt in p.opts:
                if opt == "--jobs":
                    assert "process" in help_text, (words, help_text)
                elif opt == "--threads":
                    assert "threads" in help_text and "MEDIMP_THREADS" in (p.help or ""), words
                if opt in seen:
                    seen[opt] += 1
    assert seen["--jobs"] >= 4 and seen["--threads"] >= 8 and seen["--cohort"] >= 8, seen


@pytest.mark.parametrize("command", ["fit-prognosis", "predict"])
def test_prognosis_commands_apply_threads(command, tmp_path, monkeypatch) -> None:
    """fit-prognosis and predict read --threads (else $MEDIMP_THREADS) and limit the threads
    before they read anything; a bad value is a usage error naming the option."""
    import torch

    args = {"fit-prognosis": ["fit-prognosis", "--runs", f"ssl={tmp_path / 'run'}"],
            "predict": ["predict", str(tmp_path / "model")]}[command]
    args += ["--cohort", str(tmp_path / "no_cohort"), "--out", str(tmp_path / "out")]
    runner = CliRunner()
    bad = runner.invoke(app, [*args, "--threads", "0"])
    assert bad.exit_code == 2, bad.output
    assert bad.stderr.strip() == (f"error: --threads 0: give a number of threads >= 1 "
                                  f"(see 'medimp {command} --help')")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("MEDIMP_THREADS", "abc")
    env_bad = runner.invoke(app, args)
    assert env_bad.exit_code == 2 and "$MEDIMP_THREADS='abc'" in env_bad.stderr
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        res = runner.invoke(app, [*args, "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    # the threads are set, then the missing cohort is refused
    assert res.exit_code == 2 and "not a cohort directory" in res.stderr, res.output
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert not (tmp_path / "out").exists()


def test_old_spellings_warn_once_and_still_work(simulated_cohort, tmp_path) -> None:
    """The positional cohort of the old CLI still validates, with one deprecation line."""
    runner = CliRunner()
    new = runner.invoke(app, ["validate", "--cohort", str(simulated_cohort), "--tables-only"])
    old = runner.invoke(app, ["validate", str(simulated_cohort), "--tables-only"])
    assert new.exit_code == old.exit_code == 0, old.output
    assert "deprecated" not in new.output
    warnings = [line for line in old.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--cohort" in warnings[0] and "deprecated" in warnings[0]
    both = runner.invoke(app, ["validate", str(simulated_cohort), "--cohort", str(tmp_path)])
    assert both.exit_code == 2 and "disagree" in both.stderr
    assert both.stderr.strip().endswith("(see 'medimp validate --help')")


def test_simulate_workers_is_jobs(tmp_path) -> None:
    """`simulate --workers N` is `--jobs N`, with a warning; both together are refused."""
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "c"), "--workers", "0",
                                   "--jobs", "1"])
    assert res.exit_code == 2 and "--jobs only" in res.stderr, res.output
    assert not (tmp_path / "c").exists()
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "c"), "--patients", "3",
                                   "--workers", "1"])
    assert "--workers is deprecated" in res.stderr and "use --jobs 1" in res.stderr
    assert res.exit_code == 1 and ">= 10" in res.stderr  # the run itself then goes on


def test_error_lines_end_with_the_help_hint(tmp_path) -> None:
    """Usage errors (exit 2) and errors medimp finds (exit 1) both say where help is."""
    runner = CliRunner()
    usage = runner.invoke(app, ["cache", "clear"])
    assert usage.exit_code == 2
    assert usage.stderr.strip() == ("error: give --cohort COHORT or --cache DIR "
                                    "(see 'medimp cache clear --help')")
    found = runner.invoke(app, ["prompts", "build", "--cohort", str(tmp_path / "none"),
                                "--out", str(tmp_path / "p.parquet")])
    assert found.exit_code == 1, found.output
    line = found.stderr.strip()
    assert "\n" not in line and line.startswith("error: ") and str(tmp_path / "none") in line
    assert line.endswith("(see 'medimp prompts build --help')")
