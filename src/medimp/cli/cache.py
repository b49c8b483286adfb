"""CLI commands for the preprocessing cache (`medimp cache info|clear`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
