"""``medimp demo``: the whole pipeline on a simulated cohort, offline, on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimp.cli._common import console, is_interactive, warn_deprecated


def demo_command(
    *,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo_out"),
    patients: Annotated[int | None, typer.Option(
        "--patients", min=10, help="Simulated patients (default 80).")] = None,
    shape: Annotated[tuple[int, int, int] | None, typer.Option(
        "--shape", help="Volume shape D H W (default 32 32 32).")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", min=1, help="Pretraining epochs per method (default 30).")] = None,
    repeats: Annotated[int | None, typer.Option(
        "--repeats", min=1, help="Outer CV repeats of the evaluation (default 3).")] = None,
    bootstrap: Annotated[int | None, typer.Option(
        "--bootstrap", min=20, help="Deprecated and ignored (the CIs use the corrected "
        "resampled t); accepted so that older scripts still run.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every stage.")] = 0,
    seeds: Annotated[int | None, typer.Option(
        "--seeds", min=1, help="Pretraining runs (seeds) per method (default 3).")] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", min=1, help="Pretraining runs trained at once, in separate processes "
        "(default: one per CPU core, at most 4).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier demo in --out (a folder holding other files is "
        "refused).")] = False,
) -> None:
    """Simulate a cohort, build prompts, pretrain medimp and its baselines, evaluate, report."""
    from medimp.cli.evaluate import print_added_value_answer, print_endpoints
    from medimp.demo import DemoConfig, run_demo

    if bootstrap is not None:
        warn_deprecated("--bootstrap", "the CIs use the corrected resampled t")
    given = {"n_patients": patients, "shape": shape, "epochs": epochs, "repeats": repeats,
             "bootstrap": bootstrap, "seeds": seeds, "jobs": jobs}
    cfg = DemoConfig(seed=seed, **{k: v for k, v in given.items() if v is not None})
    result = run_demo(out, cfg, overwrite=overwrite, progress=is_interactive(),
                      log=lambda m: console.print(m, highlight=False, markup=False))
    console.print("")
    print_added_value_answer(result.added_value_answers)
    console.print(f"AUC [95% CI] of a logistic probe on patient-mean embeddings (poor graft "
                  "status = eGFR < threshold or graft loss); pretrained methods: mean over "
                  f"{cfg.seeds} pretraining seeds, CI with the seed variance, sd between seeds:",
                  markup=False)
    console.print(result.headline.to_string(), highlight=False, markup=False,
                  soft_wrap=True)  # a table: never wrapped at 80 columns in a log
    if result.regression is not None and result.added_value is not None:
        print_endpoints(result.regression, result.added_value)
    if result.comparisons is not None and not result.comparisons.empty:
        console.print("\nmedimp minus each method, ΔAUC [95% CI] (seed-aware paired test):",
                      markup=False)
        console.print(result.comparisons.to_string(index=False), highlight=False,
                      markup=False)
    total = sum(result.timings.values())
    console.print(f"\ntotal {total / 60:.1f} min; report: {result.report}", highlight=False,
                  markup=False)


def register(app: typer.Typer) -> None:
    """Add ``medimp demo``."""
    app.command("demo")(demo_command)
