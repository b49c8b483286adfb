"""CLI commands of the prognosis stage: ``medimp fit-prognosis`` and ``medimp predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimp.cli._common import THREADS_HELP, apply_threads, console, fail, is_interactive


def _methods(runs: list[str] | None) -> dict[str, Path | list[Path]]:
    from medimp.cli.evaluate import _pairs

    by_run = _pairs(runs or [], "--runs")
    return {name: paths[0] if len(paths) == 1 else paths for name, paths in by_run.items()}


def fit_prognosis_command(
    *,
    cohort: Annotated[Path, typer.Option("--cohort", help="Development cohort (labelled).")],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    runs: Annotated[list[str] | None, typer.Option(
        "--runs", help="NAME=RUN_DIR of a pretraining run (repeatable; a name given several "
        "times, a glob or a folder of seed runs gives several runs of one method).")] = None,
    horizons: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Horizon in years; repeatable (default 2, 3, 4).")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="eGFR cut-off of poor status; default from study.yaml.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the inner CV.")] = 0,
    external: Annotated[Path | None, typer.Option(
        "--external", help="External cohort: the fitted models are tested on it and the "
        "figures go into the model card.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier model folder (only once the new one is "
        "complete).")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Fit the prognosis models on all labelled patients of a cohort and save them (no pickles)."""
    from medimp.prognosis import FitConfig, fit_prognosis
    from medimp.prognosis.folder import read_model

    apply_threads(threads)
    if not (cohort / "study.yaml").is_file():
        fail(f"{cohort}: not a cohort directory (no study.yaml)")
    cfg = FitConfig(horizons=tuple(horizons or (2, 3, 4)), threshold=threshold, seed=seed)
    if external is not None and not (external / "study.yaml").is_file():
        fail(f"--external {external}: not a cohort directory (no study.yaml)")
    path = fit_prognosis(cohort, _methods(runs), out, cfg, overwrite=overwrite,
                         progress=is_interactive(), external=external)
    folder = read_model(path)
    console.print(f"model folder: {path} ({len(folder.models)} fitted models, "
                  f"{len(folder.runs)} pretraining run(s), fitted on "
                  f"{folder.dev['n_patients']} patients)", highlight=False, soft_wrap=True,
                  markup=False)
    console.print(f"model card: {path / 'model_card.md'}", highlight=False, soft_wrap=True,
                  markup=False)


def predict_command(
    model: Annotated[Path, typer.Argument(help="Model folder written by fit-prognosis.")],
    *,
    cohort: Annotated[Path, typer.Option(
        "--cohort", help="Cohort to predict (outcome columns may be absent or empty).")],
    out: Annotated[Path, typer.Option("--out", help="predictions.csv to write.")],
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace --out if it exists.")] = False,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
) -> None:
    """Apply a prognosis model folder: one row per patient x model x task, with flags."""
    from medimp.prognosis import predict

    apply_threads(threads)
    if not (cohort / "study.yaml").is_file():
        fail(f"{cohort}: not a cohort directory (no study.yaml)")
    if out.is_dir():
        fail(f"--out {out} is a folder; give a file name such as predictions.csv")
    table = predict(model, cohort, out, overwrite=overwrite)
    flagged = table.loc[table["flags"].astype(str) != "", "patient_id"].nunique()
    console.print(f"predictions: {out} ({table['patient_id'].nunique()} patients, "
                  f"{table['model'].nunique()} models, {table['task'].nunique()} tasks; "
                  f"{flagged} patient(s) flagged)", highlight=False, soft_wrap=True,
                  markup=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("fit-prognosis")(fit_prognosis_command)
    app.command("predict")(predict_command)
