"""CLI commands of the data stage: ``medimp validate`` and ``medimp import-medimp``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from medimp.cli._common import console, err_console, fail


@contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), console=err_console,
                  transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _problem_table(title: str, problems: Sequence[object], style: str) -> Table:
    table = Table(title=title, title_style=style, show_lines=False, expand=False)
    for col in ("severity", "file", "patient", "exam", "phase", "problem", "fix"):
        table.add_column(col, overflow="fold")
    for p in problems:
        d = p.to_dict()  # type: ignore[attr-defined]
        table.add_row(*[str(d[c] or "") for c in ("severity", "file", "patient", "exam",
                                                   "phase", "problem", "fix")])
    return table


def validate(
    cohort: Annotated[Path, typer.Argument(
        help="Cohort folder (holds manifest.csv, exams.csv, patients.csv, study.yaml).")],
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the report as JSON instead of tables.")] = False,
    tables_only: Annotated[bool, typer.Option(
        "--tables-only", help="Check the tables and paths but do not open the images.")] = False,
    strict_paths: Annotated[bool, typer.Option(
        "--strict-paths", help="Make manifest paths that lead outside the cohort folder an "
        "error (default: a warning, or study.yaml's strict_paths).")] = False,
) -> None:
    """Check a cohort: every table, path and image. Exit code 1 when errors are found."""
    from medimp.data.validate import validate_cohort

    if not cohort.is_dir():
        fail(f"{cohort}: not a folder; give the cohort folder that holds manifest.csv")
    with _progress("reading images", enabled=not json_out) as update:
        report = validate_cohort(cohort, read_images=not tables_only, progress=update,
                                 strict_paths=True if strict_paths else None)
    if json_out:
        typer.echo(report.to_json())
    else:
        if report.errors:
            console.print(_problem_table(f"{len(report.errors)} error(s)", report.errors,
                                         "bold red"))
        if report.warnings:
            console.print(_problem_table(f"{len(report.warnings)} warning(s)",
                                         report.warnings, "bold yellow"))
        s = report.summary
        if s:
            summary = Table(title="summary", show_header=False)
            summary.add_column("what")
            summary.add_column("value", overflow="fold")
            for key in ("patients", "patients_with_images", "exams", "exam_rows", "volumes",
                        "files"):
                summary.add_row(key, str(s.get(key, "")))
            summary.add_row("exams per label", ", ".join(
                f"{k}: {v}" for k, v in s.get("exams_per_label", {}).items()))
            summary.add_row("volumes per phase", ", ".join(
                f"{k}: {v}" for k, v in s.get("volumes_per_phase", {}).items()))
            summary.add_row("exams by number of phases", ", ".join(
                f"{k} phases: {v}" for k, v in s.get("phases_per_exam", {}).items()))
            for col, counts in s.get("outcomes", {}).items():
                summary.add_row(f"outcome {col}", ", ".join(f"{k} {v}"
                                                            for k, v in counts.items()))
            console.print(summary)
        verdict = ("[bold green]OK[/]" if report.ok
                   else f"[bold red]{len(report.errors)} error(s)[/]")
        console.print(f"{cohort}: {verdict}, {len(report.warnings)} warning(s)")
    if not report.ok:
        raise typer.Exit(1)


def import_medimp(
    root: Annotated[Path, typer.Argument(
        help="Image root of the original layout (patient/exam/sequence folders, e.g. "
             "dummy_mri_dataset).")],
    *,
    clinical: Annotated[Path, typer.Option(
        "--clinical", help="The original wide clinical CSV (df_clinicobiological_data.csv).")],
    out: Annotated[Path, typer.Option("--out", help="Cohort folder to create.")],
    augs: Annotated[Path | None, typer.Option(
        "--augs", help="gpt_augs.txt paraphrases, copied to <out>/prompts/gpt_augs.txt.")] = None,
    fallback_volume: Annotated[Path | None, typer.Option(
        "--fallback-volume", help="NIfTI used for every sequence folder without an image (what "
        "the original did with dummy_mri.nii.gz); each use is reported.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a non-empty --out (only once the new cohort is complete)."
    )] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the import report as JSON.")
                        ] = False,
) -> None:
    """Convert the original MEDIMP layout into a cohort folder and report what was not mapped."""
    from medimp.data._errors import MedimpDataError
    from medimp.data.import_medimp import import_medimp as run_import

    try:
        with _progress("copying images", enabled=not json_out) as update:
            report = run_import(root, clinical, out, augs=augs, overwrite=overwrite,
                                fallback_volume=fallback_volume, progress=update)
    except (MedimpDataError, FileExistsError) as exc:
        fail(str(exc))
    if json_out:
        typer.echo(report.to_json())
        return
    if report.notes:
        console.print(_problem_table("import notes", report.notes, "bold"))
    console.print(
        f"wrote {report.out}: {report.patients} patients, {report.exams} exams, "
        f"{report.volumes} volumes ({report.fallback_volumes} from the fallback volume)"
        + (f", paraphrases at {report.augs_path}" if report.augs_path else "")
        + f". Next: medimp validate {report.out}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("validate")(validate)
    app.command("import-medimp")(import_medimp)
