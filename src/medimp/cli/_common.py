"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console

console = Console(stderr=False)
err_console = Console(stderr=True)


def offline_env() -> None:
    """medimp never downloads models or data at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit with ``code`` (2: bad usage/input, 1: found errors)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def is_interactive() -> bool:
    return sys.stderr.isatty()
