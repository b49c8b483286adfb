"""Entry point of the ``medimp`` console script.

Each command group lives in its own module with a ``register(app)`` function, so that stages
can add commands without touching each other. Errors are handled here, once, for every command:
a :class:`~medimp.errors.MedimpError` (bad input) or an ``OSError`` (permission, full disk,
missing file) prints one line and exits 2; Ctrl-C exits 130. Anything else is a bug in medimp
and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import typer
from rich.markup import escape
from typer.core import TyperGroup

from medimp import __version__
from medimp.cli._common import err_console, fail, interrupted, offline_env
from medimp.errors import MedimpError, describe_os_error, validation_problems


class _MedimpGroup(TyperGroup):
    """The root command group: runs a command and turns user errors into one line."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """Typer's ``main``, with a usage error (a missing option, an unknown option or
        command, a bad value) printed as one line instead of typer's multi-line box."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            # not standalone: click exceptions reach us, typer.Exit comes back as its code
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # the base of typer's (vendored) click exceptions
            _usage_error(exc)
        except typer.Abort:
            err_console.print("aborted", highlight=False, markup=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MedimpError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(describe_os_error(exc) + _cache_hint(exc))
        except KeyboardInterrupt as exc:
            interrupted(str(exc))
        except ValueError as exc:
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):  # a bug: keep the traceback
                raise
            # an option out of range in a config built from command-line options
            fail("; ".join(validation_problems(exc.errors())))


def _usage_error(exc: typer.TyperException) -> NoReturn:
    """``error: <what>; see 'medimp CMD --help'`` on stderr, exit with the error's code (2)."""
    code = int(getattr(exc, "exit_code", 2))
    if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already
        sys.exit(code)
    fmt = getattr(exc, "format_message", None)
    message = " ".join((fmt() if callable(fmt) else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message = message.rstrip(".") + f"; see '{ctx.command_path} --help'"
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _cache_hint(exc: OSError) -> str:
    """How to move a cohort's default cache when it cannot be written (read-only cohort)."""
    if ".medimp_cache" not in str(exc.filename or ""):
        return ""
    return ("; the cohort's default cache cannot be written there: give another cache folder "
            "(pretrain: --set cache_dir=DIR; embed: --cache DIR)")


app = typer.Typer(
    name="medimp",
    cls=_MedimpGroup,
    help="MEDIMP: 3D medical image representations learned from clinical text prompts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# Modules under medimp.cli that define register(app); one per pipeline stage.
_COMMAND_MODULES = ("simulate", "data", "cache", "prompts", "train", "export", "evaluate",
                    "prognosis", "demo")


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
