"""CLI commands of the train stage: ``medimp pretrain`` and ``medimp embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medimp.cli._common import console, is_interactive


def _pretrain(  # noqa: PLR0917 - one parameter per CLI option
    cohort: Annotated[Path, typer.Option(
        "--cohort", help="Cohort folder (manifest.csv, exams.csv, patients.csv, study.yaml).")],
    out: Annotated[Path, typer.Option("--out", help="Run folder to create (or to resume).")],
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML file of PretrainConfig options (see docs/train.md).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override one option, e.g. --set optim.lr=1e-4 --set "
        "image_encoder.name=tiny_cnn_3d (repeatable; values parsed as YAML).")] = None,
    method: Annotated[str | None, typer.Option(
        "--method", help="Pretraining objective: medimp | image_ssl | tabular_clip | "
        "random_init, or another registered in medimp.train.objectives.")] = None,
    encoder: Annotated[str | None, typer.Option("--encoder", help="Image encoder name.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Exams per step.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed.")] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="auto (bf16 where native) | 32 | bf16-mixed | 16-mixed (GPU).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start afresh even if --out holds a run.")] = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Pretrain a 3D image encoder (MEDIMP or a baseline) and export it into a run folder."""
    from medimp.train import load_config, pretrain

    overrides = list(set_ or [])
    for key, value in (("method", method), ("image_encoder.name", encoder), ("epochs", epochs),
                       ("batch_size", batch_size), ("optim.lr", lr), ("seed", seed),
                       ("precision", precision)):
        if value is not None:
            overrides.append(f"{key}={value}" if key != "precision" else f"{key}='{value}'")
    if config is None and resume and not overrides and (out / "config.yaml").is_file():
        cfg = load_config(out / "config.yaml")
    elif config is None and resume and (out / "config.yaml").is_file():
        cfg = load_config(out / "config.yaml", overrides)
    else:
        cfg = load_config(config, overrides)
    run = pretrain(cohort, out, cfg, resume=resume, progress=progress and is_interactive(),
                   overwrite=overwrite)
    console.print(f"run written to [bold]{escape(str(run))}[/] (model.safetensors, model.json, "
                  "history.csv)")


def _embed(
    run: Annotated[Path, typer.Argument(help="Run folder written by `medimp pretrain`.")],
    cohort: Annotated[Path, typer.Argument(help="Cohort folder to embed.")],
    *,
    out: Annotated[Path, typer.Option(
        "--out", help="Parquet file to write (exam and patient rows).")],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Exams per forward pass.")] = 8,
    projected: Annotated[bool, typer.Option(
        "--projected", help="Embed in the shared projected space instead of the encoder's "
        "features.")] = False,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Preprocessed-volume cache folder (default: <COHORT>/.medimp_cache; "
        "give one for a read-only cohort).", show_default=False)] = None,
) -> None:
    """Write per-exam and per-patient embeddings of a cohort with a pretrained encoder."""
    from medimp.train import embed

    df = embed(run, cohort, out=out, batch_size=batch_size, projected=projected,
               cache_dir=cache, progress=is_interactive())
    n_exam = int((df["level"] == "exam").sum())
    n_pat = int((df["level"] == "patient").sum())
    dim = sum(c.startswith("e") and c[1:].isdigit() for c in df.columns)
    console.print(f"{n_exam} exams, {n_pat} patients, {dim}-d embeddings -> "
                  f"[bold]{escape(str(out))}[/]")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("pretrain")(_pretrain)
    app.command("embed")(_embed)
