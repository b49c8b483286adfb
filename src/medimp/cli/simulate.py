"""CLI commands of the simulate stage: ``medimp simulate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medimp.cli._common import console, is_interactive


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("simulate")(simulate)


def simulate(
    out: Annotated[Path, typer.Argument(help="Cohort folder to create (absent or empty).")],
    *,
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
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Worker processes (default: up to 4, by CPU count).")] = None,
    site: Annotated[int, typer.Option(
        "--site", help="Acquisition profile: 0 is the default scanner; another number is a "
        "reproducible other site (gain, noise, bias field, field of view, phase timing; the "
        "patients are the same for the same seed). See docs/simulate.md.")] = 0,
) -> None:
    """Simulate a renal-transplant DCE-MRI cohort with known ground truth."""
    from medimp.simulate import simulate_cohort

    root = simulate_cohort(out, patients, shape=shape, seed=seed, fmt=fmt.lower(),
                           overwrite=overwrite, workers=workers, progress=is_interactive(),
                           site=site)
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
