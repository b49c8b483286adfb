"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=False)
err_console = Console(stderr=True)


def offline_env() -> None:
    """medimp never downloads models or data at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit with ``code`` (2: bad usage/input, 1: found errors).

    ``message`` is plain text (paths, cell values): it is printed verbatim, never as markup.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


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
