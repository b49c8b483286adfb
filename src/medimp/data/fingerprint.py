"""A short fingerprint of a cohort folder: which patients, exams and phases it holds.

``pretrain`` stores it in ``model.json`` and ``evaluate`` compares it with the cohort it
evaluates, to warn when a run was trained on another cohort (legitimate for an external
validation, a mistake when runs of one method were meant to be replicates on one cohort).
It reads only ``patients.csv`` and ``manifest.csv``: cheap, and independent of file order.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

__all__ = ["cohort_fingerprint"]


def cohort_fingerprint(root: str | os.PathLike[str]) -> str | None:
    """16 hex digits identifying the patients and imaged exams/phases of a cohort folder.

    Returns ``None`` when the folder has no readable ``patients.csv``.
    """
    root = Path(root)
    try:
        pats = pd.read_csv(root / "patients.csv", usecols=["patient_id"], dtype=str)
    except (OSError, ValueError):
        return None
    lines = sorted(f"P\t{p}" for p in pats["patient_id"].astype(str))
    try:
        man = pd.read_csv(root / "manifest.csv", usecols=["patient_id", "exam", "phase"],
                          dtype=str)
        lines += sorted("\t".join(("M", *map(str, row)))
                        for row in man.itertuples(index=False))
    except (OSError, ValueError):
        pass
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]
