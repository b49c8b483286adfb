"""CLI commands of the data stage: ``medimp validate`` and ``medimp import-medimp``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from medimp.cli._common import console, err_console, fail, path_option


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


def _show(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
          style: str = "", header: bool = True) -> None:
    """A table on a terminal; plain lines (one per row, never wrapped) when the output is
    piped or redirected, so that a log or ``grep`` gets whole findings."""
    if not console.is_terminal:
        console.print(title, markup=False, highlight=False, soft_wrap=True)
        for row in rows:
            cells = [c for c in row if c]
            if header and columns and columns[-1] == "fix" and row[-1]:
                cells[-1] = f"| fix: {row[-1]}"
            console.print("  " + "  ".join(cells), markup=False, highlight=False,
                          soft_wrap=True)
        return
    table = Table(title=title, title_style=style, show_lines=False, expand=False,
                  show_header=header)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[escape(c) for c in row])
    console.print(table)


_PROBLEM_COLUMNS = ("severity", "file", "patient", "exam", "phase", "problem", "fix")


def _problem_rows(problems: Sequence[object]) -> list[list[str]]:
    return [[str(p.to_dict()[c] or "") for c in _PROBLEM_COLUMNS]  # type: ignore[attr-defined]
            for p in problems]


def validate(
    old_cohort: Annotated[Path | None, typer.Argument(
        hidden=True, help="Deprecated: the positional COHORT; use --cohort.",
        show_default=False)] = None,
    *,
    cohort_opt: Annotated[Path | None, typer.Option(
        "--cohort", help="Cohort folder (holds manifest.csv, exams.csv, patients.csv, "
        "study.yaml).", show_default=False)] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print the report as JSON instead of tables.")] = False,
    tables_only: Annotated[bool, typer.Option(
        "--tables-only", help="Check the tables and paths but do not open the images.")] = False,
    strict_paths: Annotated[bool, typer.Option(
        "--strict-paths", help="Make manifest paths that lead outside the cohort folder an "
        "error (default: a warning, or study.yaml's strict_paths).")] = False,
    suggest_preprocess: Annotated[bool, typer.Option(
        "--suggest-preprocess", help="Propose a preprocessing spacing and shape that fit the "
        "cohort's fields of view (for a CPU, max 32 voxels a side, and a GPU, max 96).")
    ] = False,
) -> None:
    """Check a cohort: every table, path and image. Exit code 1 when errors are found.

    Also prints, per exam, the field of view and how much of it the default preprocessing
    window keeps, and for dynamic (4D) series the frames and times chosen for each phase.
    """
    from medimp.data.cohort.validate import validate_cohort

    cohort = path_option(cohort_opt, old_cohort, option="--cohort", old_name="COHORT")
    if not cohort.is_dir():
        fail(f"{cohort}: not a folder; give the cohort folder that holds manifest.csv")
    with _progress("reading images", enabled=not json_out) as update:
        report = validate_cohort(cohort, read_images=not tables_only, progress=update,
                                 strict_paths=True if strict_paths else None)
    if json_out:
        typer.echo(report.to_json())
    else:
        if report.errors:
            _show(f"{len(report.errors)} error(s)", _PROBLEM_COLUMNS,
                  _problem_rows(report.errors), "bold red")
        if report.warnings:
            _show(f"{len(report.warnings)} warning(s)", _PROBLEM_COLUMNS,
                  _problem_rows(report.warnings), "bold yellow")
        s = report.summary
        if s:
            rows = [[f"{key}:", str(s.get(key, ""))] for key in (
                "patients", "patients_with_images", "exams", "exam_rows", "volumes",
                "dynamic_series", "files")]
            rows.append(["exams per label:", ", ".join(
                f"{k}: {v}" for k, v in s.get("exams_per_label", {}).items())])
            rows.append(["volumes per phase:", ", ".join(
                f"{k}: {v}" for k, v in s.get("volumes_per_phase", {}).items())])
            rows.append(["exams by number of phases:", ", ".join(
                f"{k} phases: {v}" for k, v in s.get("phases_per_exam", {}).items())])
            for col, counts in s.get("outcomes", {}).items():
                rows.append([f"outcome {col}:", ", ".join(f"{k} {v}"
                                                         for k, v in counts.items())])
            _show("summary", ("what", "value"), rows, header=False)
            _print_dynamic(s.get("dynamic", {}))
            _print_geometry(s.get("geometry", {}), suggest_preprocess)
        verdict = ("[bold green]OK[/]" if report.ok
                   else f"[bold red]{len(report.errors)} error(s)[/]")
        console.print(f"{escape(str(cohort))}: {verdict}, {len(report.warnings)} warning(s)")
    if not report.ok:
        raise typer.Exit(1)


def _print_dynamic(dynamic: dict[str, dict]) -> None:
    if not dynamic:
        return
    rows = []
    for key, d in dynamic.items():
        arrival = "" if d["arrival_s"] is None else f"{d['arrival_s']:g} s"
        chosen = ", ".join(
            f"{ph}: {f}" + ("" if d["times"][ph] is None else f" @ {d['times'][ph]:g} s")
            for ph, f in d["frames"].items())
        rows.append([key, d["file"], d["method"], f"{d['n_frames']} frames", arrival, chosen])
    _show("dynamic series: frames chosen per phase",
          ("exam", "file", "method", "frames", "arrival", "phase: frame @ time"), rows)


def _print_geometry(geometry: dict[str, dict], suggest: bool) -> None:
    if not geometry:
        return
    from medimp.data.io.geometry import suggest_preprocess, window_coverage
    from medimp.data.pipeline.preprocess import PreprocessConfig

    cfg = PreprocessConfig()
    spacing = cfg.spacing
    window = "file spacing" if spacing is None else "x".join(f"{s:g}" for s in spacing) + " mm"
    rows = []
    for key, g in geometry.items():
        cov = window_coverage(g["fov_mm"], spacing, cfg.shape, g["spacing_ras"])
        rows.append([key, "x".join(map(str, g["shape"])),
                     " x ".join(f"{v:g}" for v in g["spacing_ras"]) + " mm",
                     " x ".join(f"{v:g}" for v in g["fov_mm"]) + " mm FOV",
                     "window keeps " + ", ".join(f"{100 * c:.0f}%" for c in cov)])
    _show(f"field of view and the default preprocessing window ({window}, shape "
          f"{'x'.join(map(str, cfg.shape))}): share of the FOV kept per axis",
          ("exam", "voxels", "spacing (mm, RAS)", "FOV (mm, RAS)", "window keeps"), rows)
    if suggest:
        for side, where in ((32, "CPU"), (96, "GPU")):
            sug = suggest_preprocess(geometry.values(), max_side=side)
            console.print(
                f"suggested preprocessing ({where}): spacing: {sug['spacing']} shape: "
                f"{sug['shape']}  (whole FOV kept for {100 * sug['covered']:.0f}% of the exams; "
                f"median voxel {sug['native_spacing']} mm); set it with --set "
                f"preprocess.spacing=... in medimp pretrain")


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
    from medimp.data.cohort.import_medimp import import_medimp as run_import

    with _progress("copying images", enabled=not json_out) as update:
        report = run_import(root, clinical, out, augs=augs, overwrite=overwrite,
                            fallback_volume=fallback_volume, progress=update)
    if json_out:
        typer.echo(report.to_json())
        return
    if report.notes:
        _show("import notes", _PROBLEM_COLUMNS, _problem_rows(report.notes), "bold")
    console.print(
        f"wrote {report.out}: {report.patients} patients, {report.exams} exams, "
        f"{report.volumes} volumes ({report.fallback_volumes} from the fallback volume)"
        + (f", paraphrases at {report.augs_path}" if report.augs_path else "")
        + f". Next: medimp validate --cohort {report.out}", markup=False)


def init(
    old_folder: Annotated[Path | None, typer.Argument(
        hidden=True, help="Deprecated: the positional FOLDER; use --cohort.",
        show_default=False)] = None,
    *,
    cohort: Annotated[Path | None, typer.Option(
        "--cohort", help="Folder of a clinic's export, the cohort to be: patients.csv (one row "
        "per patient), exams.csv (one row per exam) and the image tree, as exported.",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing study.yaml and manifest.csv.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was found as JSON.")
                        ] = False,
) -> None:
    """Write a commented study.yaml and a manifest.csv for a clinic's export (each guess is
    marked '# review'), then run `medimp validate --cohort FOLDER`."""
    import json

    from medimp.data.cohort.init import init_cohort, layout_summary

    folder = path_option(cohort, old_folder, option="--cohort", old_name="FOLDER")
    if not folder.is_dir():
        fail(f"{folder}: not a folder; give the folder that holds the exported tables")
    result = init_cohort(folder, overwrite=overwrite)
    if json_out:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    out = console.print
    out("guesses (each marked '# review' in study.yaml):", markup=False)
    for line in result.guesses:
        out(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    layout = result.layout
    if not layout.rows:
        out(f"images: none found under {folder} (NIfTI files or DICOM series folders whose "
            "path names a patient, an exam and a phase); put the image tree inside the folder "
            "and run init --overwrite, or write manifest.csv by hand (docs/data.md)",
            markup=False, highlight=False, soft_wrap=True)
    else:
        out(f"images: {len(layout.rows)} found, by path pattern (confirm them):", markup=False)
    for line in layout_summary(layout):
        out(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if layout.unmatched:
        out(f"not in the manifest ({len(layout.unmatched)}):", markup=False)
        for path, why in layout.unmatched[:10]:
            out(f"  {path}: {why}", markup=False, highlight=False, soft_wrap=True)
        if len(layout.unmatched) > 10:
            out(f"  ... and {len(layout.unmatched) - 10} more (--json lists them)", markup=False)
    out(f"wrote {result.study_path} and {result.manifest_path} ({len(layout.rows)} images). "
        f"Next: medimp validate --cohort {folder}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("init")(init)
    app.command("validate")(validate)
    app.command("import-medimp")(import_medimp)
