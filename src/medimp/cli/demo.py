"""``medimp demo``: the whole pipeline on a simulated cohort, offline, on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimp.cli._common import (
    THREADS_HELP,
    console,
    deprecated,
    is_interactive,
    jobs_value,
    parse_seeds,
    threads_value,
    warn_deprecated,
)


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
    seeds: Annotated[list[str] | None, typer.Option(
        "--seeds", help="Pretraining seeds of each method, e.g. --seeds 0 1 2 (or 0,1,2) "
        "(default: 3 seeds from --seed). A single number alone is still read as a count of "
        "seeds in this release (deprecated); one seed S is --seeds S,", show_default=False)
    ] = None,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", help="Processes at once: pretraining runs, then cross-validations of the "
        "evaluation; 0: one per CPU core (default: one per CPU core, at most 4).",
        show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP.replace("else the library's default", "else 1"),
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an earlier demo in --out (a folder holding other files is "
        "refused).")] = False,
    more_seeds: Annotated[list[str] | None, typer.Argument(
        hidden=True, help="The further seeds of --seeds 0 1 2.")] = None,
) -> None:
    """Simulate a cohort, build prompts, pretrain medimp and its baselines, evaluate, report."""
    from medimp.cli.evaluate import print_added_value_answer, print_endpoints
    from medimp.demo import DemoConfig, run_demo

    if bootstrap is not None:
        warn_deprecated("--bootstrap", "the CIs use the corrected resampled t")
    given = {"n_patients": patients, "shape": shape, "epochs": epochs, "repeats": repeats,
             "bootstrap": bootstrap, "seeds": _seeds(seeds, more_seeds),
             "jobs": jobs_value(jobs), "threads": threads_value(threads)}
    cfg = DemoConfig(seed=seed, **{k: v for k, v in given.items() if v is not None})
    result = run_demo(out, cfg, overwrite=overwrite, progress=is_interactive(),
                      log=lambda m: console.print(m, highlight=False, markup=False))
    console.print("")
    print_added_value_answer(result.added_value_answers)
    console.print(f"AUC [95% CI] of a logistic probe on patient-mean embeddings (poor graft "
                  "status = eGFR < threshold or graft loss); pretrained methods: mean over "
                  f"{len(cfg.seed_list())} pretraining seeds, CI with the seed variance, sd "
                  "between seeds:",
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
        for sentence in result.decided:  # Holm over the table; one pretraining run: none
            console.print(f"  {sentence}", highlight=False, soft_wrap=True, markup=False)
    total = sum(result.timings.values())
    console.print(f"\ntotal {total / 60:.1f} min; report: {result.report}", highlight=False,
                  markup=False)


def _seeds(seeds: list[str] | None, more: list[str] | None) -> int | list[int] | None:
    """``--seeds 0 1 2``; a lone ``--seeds N`` (no comma) is the old count, with a warning."""
    if seeds and len(seeds) == 1 and not more and seeds[0].strip().isdigit() and int(seeds[0]):
        deprecated(f"--seeds {seeds[0]} as a count of seeds",
                   f"a list of seeds (e.g. --seeds {' '.join(map(str, range(int(seeds[0]))))}; "
                   f"one seed: --seeds {seeds[0]},)")
        return int(seeds[0])
    return parse_seeds(seeds, more)


def register(app: typer.Typer) -> None:
    """Add ``medimp demo``."""
    app.command("demo")(demo_command)
