"""A short fingerprint of a cohort folder: which patients, exams and phases it holds.

``pretrain`` stores it in ``model.json`` and ``evaluate`` compares it with the cohort it
evaluates, to warn when a run was trained on another cohort (legitimate for an external
validation, a mistake when runs of one method were meant to be replicates on one cohort).
It reads only ``patients.csv`` and ``manifest.csv``: cheap, and independent of file order;
a clinic's export is read as the cohort is (its separator, study.yaml's ``columns:``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from medimp.data.cohort._mapping import delimiter_of
from medimp.errors import MedimpError
from medimp.study import load_study

__all__ = ["cohort_fingerprint"]


def cohort_fingerprint(root: str | os.PathLike[str]) -> str | None:
    """16 hex digits identifying the patients and imaged exams/phases of a cohort folder.

    Returns ``None`` when the folder has no readable ``patients.csv``.
    """
    root = Path(root)
    try:
        renamed = load_study(root / "study.yaml").columns
    except (MedimpError, OSError):
        renamed = {}
    try:
        pats = _read(root / "patients.csv", ["patient_id"], renamed)
    except (OSError, ValueError):
        return None
    lines = sorted(f"P\t{p}" for p in pats["patient_id"].astype(str))
    try:
        man = _read(root / "manifest.csv", ["patient_id", "exam", "phase"], renamed)
        lines += sorted("\t".join(("M", *map(str, row)))
                        for row in man.itertuples(index=False))
    except (OSError, ValueError):
        pass
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]


def _read(path: Path, columns: list[str], renamed: dict[str, str]) -> pd.DataFrame:
    """``columns`` of one table, by their medimp names (a KeyError is a ValueError here)."""
    df = pd.read_csv(path, dtype=str, sep=delimiter_of(path), encoding="utf-8-sig")
    df.columns = [str(c).strip() for c in df.columns]
    df = df.rename(columns={k: v for k, v in renamed.items() if k in df.columns})
    if not set(columns) <= set(df.columns):
        raise ValueError(f"{path.name}: no column(s) {columns}")
    return df[columns].apply(lambda s: s.str.strip())
