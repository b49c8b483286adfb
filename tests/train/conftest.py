"""Fixtures of the train stage: a tiny, fast pretraining config and small derived cohorts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from medimp.train import PretrainConfig, load_config

# 16³ volumes, a 3-block CNN of width 4-16, 2 epochs: a run takes a few seconds on one core.
TINY: dict[str, Any] = {
    "image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
    "embed_dim": 16,
    "epochs": 2,
    "batch_size": 4,
    "val_fraction": 0.25,
    "preprocess": {"shape": [16, 16, 16]},
    "augment": None,
    "optim": {"lr": 1e-3, "warmup_epochs": 1},
    "log_every_n_steps": 1,
}


def _tiny(*overrides: str, cache: Path | None = None) -> PretrainConfig:
    from medimp.train.config import apply_overrides

    raw = dict(TINY)
    if cache is not None:
        raw["cache_dir"] = str(cache)
    return load_config(None, apply_overrides(raw, list(overrides)))


@pytest.fixture(scope="session")
def tiny_config(train_cache: Path):
    """Factory ``tiny_config("epochs=1", "method=image_ssl", ...) -> PretrainConfig``."""

    def make(*overrides: str) -> PretrainConfig:
        return _tiny(*overrides, cache=train_cache)

    return make


@pytest.fixture(scope="session")
def train_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Preprocessed-volume cache shared by the runs of this stage's tests."""
    return tmp_path_factory.mktemp("train_cache")


@pytest.fixture(scope="session")
def one_patient_cohort(simulated_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated cohort cut down to its first patient."""
    first = sorted(pd.read_csv(simulated_cohort / "patients.csv",
                               dtype={"patient_id": str})["patient_id"])[0]
    return subset_cohort(simulated_cohort, tmp_path_factory.mktemp("one") / "cohort", [first])


def subset_cohort(src: Path, dst: Path, patients: list[str]) -> Path:
    """Copy a cohort keeping only ``patients`` (in every table that has patient_id)."""
    shutil.copytree(src, dst)
    for csv in dst.glob("*.csv"):
        df = pd.read_csv(csv, dtype={"patient_id": str})
        if "patient_id" in df.columns:
            df[df["patient_id"].isin(patients)].to_csv(csv, index=False)
    return dst
