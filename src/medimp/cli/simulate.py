"""CLI commands of the simulate stage: ``medimp simulate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimp.cli._common import (
    THREADS_HELP,
    apply_threads,
    console,
    deprecated,
    fail,
    is_interactive,
    jobs_value,
    path_option,
)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("simulate")(simulate)


def simulate(
    old_out: Annotated[Path | None, typer.Argument(
        hidden=True, help="Deprecated: the positional OUT; use --out.", show_default=False)
    ] = None,
    *,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Cohort folder to create (absent or empty).", show_default=False)] = None,
    patients: Annotated[int, typer.Option(
        "--patients", "-n", help="Number of patients (>= 10).")] = 40,
    shape: Annotated[tuple[int, int, int], typer.Option(
        "--shape", help="Volume shape D H W in voxels (axis W is the slice axis).")] = (32, 32, 32),
    seed: Annotated[int, typer.Option(
        "--seed", help="Random seed: the same seed gives the same bytes.")] = 0,
    fmt: Annotated[str, typer.Option(
        "--format", help="Image format: nifti (.nii.gz per phase) or dicom (a series folder "
        "per phase).")] = "nifti",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace OUT if it is not empty (only once the new one is done).")
    ] = False,
    jobs: Annotated[int | None, typer.Option(
        "--jobs", help="Processes writing patients at once; 0: one per CPU core (default: up "
        "to 4, by CPU count).", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", hidden=True, help="Deprecated: use --jobs.")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
    site: Annotated[int, typer.Option(
        "--site", help="Acquisition profile: 0 is the default scanner; another number is a "
        "reproducible other site (gain, noise, bias field, field of view, phase timing; the "
        "patients are the same for the same seed). See docs/simulate.md.")] = 0,
) -> None:
    """Simulate a renal-transplant DCE-MRI cohort with known ground truth."""
    from medimp.simulate import simulate_cohort

    target = path_option(out, old_out, option="--out", old_name="OUT")
    if workers is not None:
        if jobs is not None:
            fail("give --jobs only (--workers is its deprecated spelling)")
        deprecated("--workers", f"--jobs {workers}")
        jobs = workers
    apply_threads(threads)
    root = simulate_cohort(target, patients, shape=shape, seed=seed, fmt=fmt.lower(),
                           overwrite=overwrite, workers=jobs_value(jobs),
                           progress=is_interactive(), site=site)
    console.print(f"cohort written to {root} ({patients} patients, {fmt.lower()}, shape "
                  f"{'x'.join(map(str, shape))})", highlight=False, soft_wrap=True, markup=False)
    if site:
        from medimp.simulate.site import site_profile

        prof = site_profile(site).describe()
        console.print("site " + str(site) + ": " + ", ".join(
            f"{k} {v}" for k, v in prof.items() if k != "site"), highlight=False,
            soft_wrap=True, markup=False)
    for name in ("montage.png", "enhancement_curves.png"):
        console.print(f"figure: {root / 'figures' / name}", highlight=False, soft_wrap=True,
                      markup=False)
