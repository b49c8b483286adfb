"""Entry point of the ``medimp`` console script.

Each command group lives in its own module with a ``register(app)`` function, so that stages
can add commands without touching each other.
"""

from __future__ import annotations

import importlib

import typer

from medimp import __version__
from medimp.cli._common import offline_env

app = typer.Typer(
    name="medimp",
    help="MEDIMP: 3D medical image representations learned from clinical text prompts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Modules under medimp.cli that define register(app); one per pipeline stage.
_COMMAND_MODULES = ("simulate", "data", "cache", "prompts", "train", "evaluate", "demo")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medimp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """MEDIMP: 3D medical image representations learned from clinical text prompts."""
    offline_env()


for _name in _COMMAND_MODULES:
    importlib.import_module(f"medimp.cli.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
