"""Shared test fixtures.

Tests run offline, on 2 CPU cores, on tiny data: the simulator at 16³–32³ and the fixtures of
the original MEDIMP layout in ``../shared/fixtures``.
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


def _find_fixtures() -> Path:
    for cand in (REPO / "shared" / "fixtures", REPO.parent / "shared" / "fixtures"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("shared/fixtures not found beside the repository")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``shared/fixtures`` (the original MEDIMP layout), read-only."""
    return _find_fixtures()


@pytest.fixture(scope="session")
def medimp_original(fixtures_dir: Path) -> Path:
    return fixtures_dir / "medimp_original"
