"""Entry point of the ``medimp`` console script.

Each command group lives in its own module with a ``register(app)`` function, so that stages
can add commands without touching each other. Errors are handled here, once, for every command:
a usage error (a missing or unknown option, a bad value) prints one line ending with
``(see 'medimp CMD --help')`` and exits 2; a :class:`~medimp.errors.MedimpError` (bad input
found by medimp) or an ``OSError`` (permission, full disk, missing file) prints one line and exits
1; Ctrl-C exits 130. Anything else is a bug in medimp and keeps its traceback (docs/cli.md).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import typer
from rich.markup import escape
from typer.core import TyperGroup

from medimp import __version__
from medimp.cli._common import err_console, error_line, interrupted, offline_env
from medimp.errors import MedimpError, describe_os_error, validation_problems


class _MedimpGroup(TyperGroup):
    """The root command group: runs a command and turns user errors into one line."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """Typer's ``main``, with a usage error (a missing option, an unknown option or
        command, a bad value) printed as one line instead of typer's multi-line box."""
        self._argv = list(sys.argv[1:] if args is None else args)
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
            self._error(ctx, str(exc), 1)
        except OSError as exc:
            self._error(ctx, describe_os_error(exc) + _cache_hint(exc), 1)
        except KeyboardInterrupt as exc:
            interrupted(str(exc))
        except ValueError as exc:
            from pydantic import ValidationError

            if not isinstance(exc, ValidationError):  # a bug: keep the traceback
                raise
            # an option out of range in a config built from command-line options
            self._error(ctx, "; ".join(validation_problems(exc.errors())), 2)

    def _error(self, ctx: typer.Context, message: str, code: int) -> NoReturn:
        """``error: <message> (see 'medimp CMD --help')`` for the command that raised."""
        err_console.print(f"[bold red]error:[/] {escape(error_line(message, self._path(ctx)))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(code)

    def _path(self, ctx: typer.Context) -> str:
        """``medimp CMD [SUB]`` of the command that failed (its context is gone by now)."""
        name = ctx.invoked_subcommand
        cmd = self.get_command(ctx, name) if name else None
        if cmd is None:
            return ctx.command_path
        words = [ctx.command_path, name]
        argv = getattr(self, "_argv", [])
        if hasattr(cmd, "get_command") and name in argv:  # a group: find its subcommand
            for word in argv[argv.index(name) + 1:]:
                if not word.startswith("-") and cmd.get_command(ctx, word) is not None:
                    words.append(word)
                    break
        return " ".join(words)


def _usage_error(exc: typer.TyperException) -> NoReturn:
    """``error: <what> (see 'medimp CMD --help')`` on stderr, exit with the error's code (2)."""
    code = int(getattr(exc, "exit_code", 2))
    if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already
        sys.exit(code)
    fmt = getattr(exc, "format_message", None)
    message = " ".join((fmt() if callable(fmt) else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message = error_line(message, ctx.command_path)
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
