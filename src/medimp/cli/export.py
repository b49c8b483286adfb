"""CLI command of the model export: ``medimp export --run RUN --format F --out DIR``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medimp.cli._common import THREADS_HELP, apply_threads, console


class ExportFormat(StrEnum):
    """The formats of ``medimp.train.export.EXPORT_FORMATS``."""

    torchscript = "torchscript"
    onnx = "onnx"
    bundle = "bundle"


def _export(
    *,
    run: Annotated[Path, typer.Option("--run", help="Run folder written by `medimp pretrain`.")],
    fmt: Annotated[ExportFormat, typer.Option(
        "--format", help="torchscript (model.ts) | onnx (model.onnx; pip install "
        "'medimp[onnx]') | bundle (a MONAI bundle).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (new or empty).")],
    cohort: Annotated[Path | None, typer.Option(
        "--cohort", help="Check the export on every exam of this cohort (default: random "
        "inputs).", show_default=False)] = None,
    projected: Annotated[bool, typer.Option(
        "--projected", help="Export the shared-space embeddings instead of the encoder's "
        "features.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier export in --out.")] = False,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Preprocessed-volume cache folder of the check (default: "
        "<COHORT>/.medimp_cache).", show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Export a run's image encoder (TorchScript, ONNX or a MONAI bundle) with a model card,
    checked against medimp's own embeddings."""
    from medimp.train.export import export_run

    apply_threads(threads)
    record = export_run(run, out, fmt.value, cohort=cohort, projected=projected,
                        overwrite=overwrite, cache_dir=cache)
    check = record["check"]
    dim = record["output"]["embedding"]["shape"][1]
    console.print(f"{fmt.value} export of {escape(str(run))} -> [bold]{escape(str(out))}[/] "
                  f"({', '.join(record['files'])}, medimp_export.json, MODEL_CARD.md); "
                  f"{dim}-d embeddings equal medimp's on {check['exams']} exams "
                  f"({escape(check['on'])}): max |diff| {check['max_abs_diff']:.2e}",
                  highlight=False)


def register(app: typer.Typer) -> None:
    """Add this command to ``app``."""
    app.command("export")(_export)
