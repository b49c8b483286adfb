"""CLI commands of the train stage: ``medimp pretrain`` and ``medimp embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medimp.cli._common import (
    THREADS_HELP,
    apply_threads,
    console,
    fail,
    is_interactive,
    jobs_value,
    parse_seeds,
    path_option,
    threads_value,
)


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
        "--precision", help="auto (bf16 on a bf16 GPU or an AMX CPU, else 32) | 32 | "
        "bf16-mixed | 16-mixed (GPU).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Start afresh even if --out holds a run.")] = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Show a progress bar.")] = True,
    seeds: Annotated[list[str] | None, typer.Option(
        "--seeds", help="Pretraining replicates: one run per seed in OUT/seed<S>, e.g. "
        "--seeds 0 1 2 (or 0,1,2); evaluate them together with --runs NAME=OUT.")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", help="With --seeds: runs trained at once, each in its own process; 0: one "
        "per CPU core (default: 1, one after the other in this process).", show_default=False)
    ] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
    more_seeds: Annotated[list[str] | None, typer.Argument(
        hidden=True, help="The further seeds of --seeds 0 1 2.")] = None,
) -> None:
    """Pretrain a 3D image encoder (MEDIMP or a baseline) and export it into a run folder."""
    from medimp.train import load_config
    from medimp.train.replicates import RunJob, seed_runs, train_runs

    seed_list = parse_seeds(seeds, more_seeds)
    if seed_list is not None and seed is not None:
        fail("give either --seed or --seeds, not both")
    n_jobs = jobs_value(jobs) or 1
    if n_jobs > 1 and seed_list is None:
        fail("--jobs trains several --seeds at once; give --seeds too (one run: drop --jobs)")
    n_threads = threads_value(threads)
    if n_jobs == 1:
        apply_threads(n_threads)

    overrides = list(set_ or [])
    for key, value in (("method", method), ("image_encoder.name", encoder), ("epochs", epochs),
                       ("batch_size", batch_size), ("optim.lr", lr), ("seed", seed),
                       ("precision", precision)):
        if value is not None:
            overrides.append(f"{key}={value}" if key != "precision" else f"{key}='{value}'")
    runs: list[RunJob] = []
    for s, run_out in ([(None, out)] if seed_list is None else
                       zip(seed_list, seed_runs(out, seed_list), strict=True)):
        extra = [] if s is None else [f"seed={s}"]
        if config is None and resume and not overrides and (run_out / "config.yaml").is_file():
            cfg = load_config(run_out / "config.yaml", extra or None)
        elif config is None and resume and (run_out / "config.yaml").is_file():
            cfg = load_config(run_out / "config.yaml", overrides + extra)
        else:
            cfg = load_config(config, overrides + extra)
        runs.append(RunJob(str(run_out) if s is None else f"seed {s}", cohort, run_out, cfg,
                           resume=resume, overwrite=overwrite))
    train_runs(runs, jobs=n_jobs, threads=n_threads if n_jobs > 1 else None,
               progress=progress and is_interactive(),
               log=(lambda m: None) if seed_list is None else
               (lambda m: console.print(m, highlight=False, markup=False)))
    for job in runs:
        console.print(f"run written to [bold]{escape(str(job.out))}[/] (model.safetensors, "
                      "model.json, history.csv)")


def _embed(
    old_run: Annotated[Path | None, typer.Argument(
        hidden=True, help="Deprecated: the positional RUN; use --run.", show_default=False)
    ] = None,
    old_cohort: Annotated[Path | None, typer.Argument(
        hidden=True, help="Deprecated: the positional COHORT; use --cohort.",
        show_default=False)] = None,
    *,
    run: Annotated[Path | None, typer.Option(
        "--run", help="Run folder written by `medimp pretrain`.", show_default=False)] = None,
    cohort: Annotated[Path | None, typer.Option(
        "--cohort", help="Cohort folder to embed.", show_default=False)] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Parquet file to write (exam and patient rows).")],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Exams per forward pass.")] = 8,
    projected: Annotated[bool, typer.Option(
        "--projected", help="Embed in the shared projected space instead of the encoder's "
        "features.")] = False,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="Preprocessed-volume cache folder (default: <COHORT>/.medimp_cache; "
        "give one for a read-only cohort).", show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
    tensorboard: Annotated[Path | None, typer.Option(
        "--tensorboard", help="Also write the embeddings, labelled by patient, exam and level, "
        "to this new folder for TensorBoard's projector (tensorboard --logdir DIR).",
        show_default=False)] = None,
) -> None:
    """Write per-exam and per-patient embeddings of a cohort with a pretrained encoder."""
    from medimp.train import embed

    run_dir = path_option(run, old_run, option="--run", old_name="RUN")
    cohort_dir = path_option(cohort, old_cohort, option="--cohort", old_name="COHORT")
    apply_threads(threads)
    df = embed(run_dir, cohort_dir, out=out, batch_size=batch_size, projected=projected,
               cache_dir=cache, progress=is_interactive(), tensorboard=tensorboard)
    n_exam = int((df["level"] == "exam").sum())
    n_pat = int((df["level"] == "patient").sum())
    dim = sum(c.startswith("e") and c[1:].isdigit() for c in df.columns)
    console.print(f"{n_exam} exams, {n_pat} patients, {dim}-d embeddings -> "
                  f"[bold]{escape(str(out))}[/]")
    if tensorboard is not None:
        console.print(f"TensorBoard projector: tensorboard --logdir {escape(str(tensorboard))}",
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("pretrain")(_pretrain)
    app.command("embed")(_embed)
