"""Helpers shared by the CLI command modules: errors, deprecations and the shared options.

Every command speaks the vocabulary of docs/cli.md: ``--cohort PATH``, ``--out PATH``,
``--overwrite``, ``--jobs N`` (processes), ``--threads N`` (torch/BLAS threads per process),
``--seeds 0 1 2``, ``--runs NAME=RUN_DIR``. The helpers below keep the old spellings working
for one release, each with a one-line deprecation warning.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.globals import get_current_context  # typer's own (vendored) click

console = Console(stderr=False)
err_console = Console(stderr=True)

#: The environment variable equivalent of ``--threads N`` (the option wins when both are set).
THREADS_ENV = "MEDIMP_THREADS"

THREADS_HELP = (f"Torch/BLAS threads of each process (default: ${THREADS_ENV}, else the "
                "library's default).")


def offline_env() -> None:
    """medimp never downloads models or data at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")


def command_path() -> str:
    """``medimp CMD`` of the command being run (``medimp`` outside a command)."""
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "medimp"


def help_hint(path: str | None = None) -> str:
    """`` (see 'medimp CMD --help')``: how every error line of the CLI ends."""
    return f" (see '{path or command_path()} --help')"


def error_line(message: str, path: str | None = None) -> str:
    """``message`` on one line (a multi-line problem list keeps its lines) plus the help hint."""
    return message.rstrip().rstrip(".") + help_hint(path)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message> (see 'medimp CMD --help')`` and exit with ``code``.

    ``code`` 2: bad usage or input; 1: medimp found errors (a cohort that does not validate,
    a bank with rejected variants, a :class:`~medimp.errors.MedimpError`). ``message`` is plain
    text (paths, cell values): it is printed verbatim, never as markup.
    """
    err_console.print(f"[bold red]error:[/] {escape(error_line(message))}", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """One line ``warning: <message>`` on stderr."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False,
                      soft_wrap=True)


def deprecated(old: str, new: str) -> None:
    """The one-line warning of an old spelling that still works in this release."""
    warn(f"{old} is deprecated and will be removed in the next release; use {new} "
         "(docs/cli.md)")


def warn_deprecated(option: str, why: str) -> None:
    """One line on stderr: ``option`` is still accepted but ignored, and why."""
    err_console.print(f"[yellow]warning:[/] {escape(option)} is deprecated and ignored ("
                      f"{escape(why)}); it will be removed in a later release",
                      highlight=False, soft_wrap=True)


def interrupted(message: str = "") -> NoReturn:
    """Report a Ctrl-C in one line and exit 130 (128 + SIGINT, the shell's convention)."""
    err_console.print(f"[bold yellow]{escape(message or 'interrupted')}[/]", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(130)


def is_interactive() -> bool:
    return sys.stderr.isatty()


def path_option(new: Path | None, old: Path | None, *, option: str, old_name: str,
                required: bool = True) -> Path | None:
    """The value of ``--cohort``/``--out``/``--run``, or of its deprecated positional form.

    ``old_name`` is the positional's metavar (``COHORT``); giving both forms with different
    values is an error, the positional alone works with a deprecation warning.
    """
    if old is not None:
        if new is not None and new != old:
            fail(f"give {option} once: {option} {new} and the positional {old_name} {old} "
                 "disagree")
        deprecated(f"the positional {old_name} of '{command_path()}'", f"{option} {old}")
        return old
    if new is None and required:
        fail(f"Missing option '{option}'")
    return new


def jobs_value(jobs: int | None, *, option: str = "--jobs") -> int | None:
    """``--jobs N``: N processes at once; 0 one per CPU core; -1 (the old 'all cores') works
    with a deprecation warning."""
    if jobs is None:
        return None
    if jobs == -1:
        deprecated(f"{option} -1", f"{option} 0 (one process per CPU core)")
        jobs = 0
    if jobs < 0:
        fail(f"{option} {jobs}: give a number of processes >= 1, or 0 for one per CPU core")
    return jobs or cpu_count()


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_value(threads: int | None) -> int | None:
    """``--threads N``, else ``$MEDIMP_THREADS``, else None (the libraries' default)."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return None
        try:
            threads = int(raw)
        except ValueError:
            fail(f"${THREADS_ENV}={raw!r}: give a whole number of threads >= 1")
    if threads < 1:
        fail(f"--threads {threads}: give a number of threads >= 1")
    return threads


def apply_threads(threads: int | None) -> int | None:
    """Limit torch and BLAS/OpenMP threads of this process (and of processes it starts)."""
    n = threads_value(threads)
    if n is None:
        return None
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    if "torch" in sys.modules or _torch_available():
        import torch

        torch.set_num_threads(n)
    return n


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def parse_seeds(seeds: list[str] | None, more: list[str] | None = None) -> list[int] | None:
    """The seeds of ``--seeds 0 1 2`` / ``--seeds 0,1,2``; None without ``--seeds``.

    ``more`` are the words after the first seed (a hidden positional of the command: typer
    reads ``--seeds 0 1 2`` as ``--seeds 0`` plus the arguments ``1 2``).
    """
    if not seeds:
        if more:
            fail(f"unexpected argument(s) {' '.join(more)!r}: options take the form --name "
                 "value (several seeds: --seeds 0 1 2)")
        return None
    out: list[int] = []
    for token in [*seeds, *(more or [])]:
        for part in filter(None, token.replace(",", " ").split()):
            try:
                value = int(part)
            except ValueError:
                fail(f"--seeds: {part!r} is not an integer seed (e.g. --seeds 0 1 2)")
            if value in out:
                fail(f"--seeds: seed {value} given twice")
            out.append(value)
    return out
