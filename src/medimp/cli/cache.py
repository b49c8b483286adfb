"""CLI commands for the preprocessing cache (`medimp cache info|clear`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medimp.cli._common import console, fail, path_option

_COHORT_HELP = "Cohort folder whose default cache (<COHORT>/.medimp_cache) to use."
_CACHE_HELP = "Cache folder to use instead of the cohort's default one."
_OLD_HELP = "Deprecated: the positional COHORT; use --cohort."


def _resolve(cohort: Path | None, old: Path | None, cache: Path | None) -> Path:
    from medimp.data.pipeline.cache import default_cache_dir

    cohort = path_option(cohort, old, option="--cohort", old_name="COHORT", required=False)
    if cache is not None:
        return cache
    if cohort is None:
        fail("give --cohort COHORT or --cache DIR")
    if not cohort.is_dir():
        fail(f"{cohort} is not a folder; give a cohort folder or --cache DIR")
    return default_cache_dir(cohort)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def info(
    old_cohort: Annotated[
        Path | None, typer.Argument(hidden=True, help=_OLD_HELP, show_default=False)
    ] = None,
    *,
    cohort: Annotated[
        Path | None, typer.Option("--cohort", help=_COHORT_HELP, show_default=False)
    ] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help=_CACHE_HELP, show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Show how many preprocessed exams a cache holds, its size and its hit counts."""
    from medimp.data.pipeline.cache import PreprocessCache

    root = _resolve(cohort, old_cohort, cache)
    store = PreprocessCache(root)
    if not root.exists():
        if cache is not None:
            fail(f"{root}: no such cache folder; check the path given to --cache")
        fail(f"{cohort or old_cohort} has no preprocessing cache yet ({root} does not exist): "
             "pretrain or "
             "embed creates it; give --cache DIR for a cache kept elsewhere")
    if not store.is_cache_dir():
        fail(f"{root} is not a medimp cache folder")
    rec = store.info()
    if as_json:
        typer.echo(json.dumps(rec.to_dict(), indent=2))
        return
    from rich.table import Table
    from rich.text import Text

    lookups = rec.hits + rec.misses
    rate = f"{100 * rec.hits / lookups:.1f} %" if lookups else "-"
    table = Table(title=Text(f"medimp cache {root}"), show_header=False)
    for name, value in (
        ("entries", str(rec.entries)),
        ("size", _human(rec.bytes)),
        ("hits", str(rec.hits)),
        ("misses (computed)", str(rec.misses)),
        ("rebuilt (corrupt/stale)", str(rec.rebuilt)),
        ("hit rate", rate),
        ("source files hashed", str(rec.hashed_sources)),
    ):
        table.add_row(name, value)
    console.print(table)


def clear(
    old_cohort: Annotated[
        Path | None, typer.Argument(hidden=True, help=_OLD_HELP, show_default=False)
    ] = None,
    *,
    cohort: Annotated[
        Path | None, typer.Option("--cohort", help=_COHORT_HELP, show_default=False)
    ] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help=_CACHE_HELP, show_default=False)
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Really delete (required).")] = False,
) -> None:
    """Delete a cache folder (preprocessed exams are recomputed on next use)."""
    from medimp.data.pipeline.cache import PreprocessCache

    root = _resolve(cohort, old_cohort, cache)
    store = PreprocessCache(root)
    if not root.exists():
        console.print(f"nothing to clear: {root} does not exist", markup=False)
        return
    if not store.is_cache_dir():
        fail(f"{root} is not a medimp cache folder; nothing was deleted")
    if not yes:
        rec = store.info()
        fail(
            f"this would delete {rec.entries} entries ({_human(rec.bytes)}) in {root}; "
            "add --yes to confirm"
        )
    n = store.clear()
    console.print(f"deleted {n} cached exams and {root}", markup=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    group = typer.Typer(
        help="Inspect or clear the cache of preprocessed exams.", no_args_is_help=True
    )
    group.command("info")(info)
    group.command("clear")(clear)
    app.add_typer(group, name="cache")
