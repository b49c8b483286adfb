"""Shared test fixtures.

Tests run offline, on 2 CPU cores, on tiny data: the simulator at 16³–32³ and the fixtures of
the original MEDIMP layout in ``tests/fixtures`` (copied from the public MEDIMP repository,
MIT License; see ``tests/fixtures/medimp_original/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:  # keep the 2-core machine responsive: one intra-op thread per test process
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parents[1]


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/fixtures`` (the original MEDIMP layout), read-only; inside the repository so a
    clone of the project alone passes its tests."""
    return FIXTURES


@pytest.fixture(scope="session")
def medimp_original(fixtures_dir: Path) -> Path:
    return fixtures_dir / "medimp_original"


# --- simulated cohorts (owned by the simulate stage) -------------------------------------------
# Cohorts are made once per test session and per argument set; treat them as read-only (copy
# one with shutil.copytree before changing it).


@pytest.fixture(scope="session")
def make_cohort(tmp_path_factory: pytest.TempPathFactory):
    """Factory ``make_cohort(n_patients=16, shape=(24, 24, 24), seed=0, fmt="nifti") -> Path``.

    Simulates a cohort directory with :func:`medimp.simulate.simulate_cohort` (one process, no
    progress bar) the first time it is asked for, and returns the same folder afterwards.
    """
    from medimp.simulate import simulate_cohort

    cache: dict[tuple, Path] = {}

    def make(n_patients: int = 16, shape: tuple[int, int, int] = (24, 24, 24), seed: int = 0,
             fmt: str = "nifti") -> Path:
        key = (int(n_patients), tuple(int(s) for s in shape), int(seed), fmt)
        if key not in cache:
            name = f"cohort_{key[0]}p_{'x'.join(map(str, key[1]))}_s{key[2]}_{fmt}"
            out = tmp_path_factory.mktemp(name) / "cohort"
            cache[key] = simulate_cohort(out, key[0], shape=key[1], seed=key[2], fmt=fmt,
                                         workers=1, progress=False)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def simulated_cohort(make_cohort) -> Path:
    """A tiny simulated cohort: 16 patients, 24³ NIfTI volumes, seed 0 (about 3 s, once)."""
    return make_cohort(16, (24, 24, 24), 0, "nifti")
