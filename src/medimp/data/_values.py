"""Checks of the values in a cohort's tables that pydantic's row types cannot make alone.

* Missing values: only the spellings of ``study.yaml``'s ``missing_values`` (default: the empty
  cell) mean "unknown", never pandas' long default list (``NA``, ``None``, ``null``, ``n/a``,
  ``nan`` ...), and never in the id columns: a patient named ``NA`` stays a patient, and ``n/a``
  in a numeric column is an error unless it is declared missing.
* Plausible ranges (``study.yaml`` ``ranges`` over :data:`medimp.study.DEFAULT_RANGES`): a donor
  aged -5 or an eGFR of 9999 is an error (or a warning, ``out_of_range: warning``).
* Manifest paths that lead outside the cohort folder (``../``, an absolute path, a symlink
  out): a warning, or an error under ``strict_paths``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data._errors import Problem
from medimp.study import Study

__all__ = ["CohortWarning", "apply_missing_values", "check_paths_inside", "check_ranges",
           "emit_warnings", "read_raw_csv"]

#: Columns that are names, never values: never read as missing.
ID_COLUMNS = ("patient_id", "exam", "phase", "path", "series_uid")


class CohortWarning(UserWarning):
    """A cohort is usable but holds something worth checking (shown by ``read_cohort``)."""


def read_raw_csv(path: Path) -> pd.DataFrame:
    """Every cell as written (a string; no NA parsing), header included."""
    return pd.read_csv(path, dtype=str, skipinitialspace=True, encoding="utf-8-sig",
                       index_col=False, keep_default_na=False, na_filter=False)


def apply_missing_values(df: pd.DataFrame, study: Study | None) -> None:
    """Turn the declared missing spellings of the value columns into NaN, in place (cells are
    already stripped); the id columns keep every spelling."""
    missing = set(study.missing_values) if study is not None else {""}
    missing.add("")
    for c in df.columns:
        if c in ID_COLUMNS:
            continue
        df[c] = df[c].where(~df[c].isin(missing), np.nan)


def check_ranges(study: Study, tables: dict[str, pd.DataFrame | None],
                 report: Callable[..., None],
                 where: Callable[[pd.DataFrame, int, str], dict[str, Any]]) -> None:
    """Report each value outside its column's plausible range (``report(severity, problem,
    fix, **where)``)."""
    ranges = study.column_ranges()
    for name in ("exams", "patients"):
        df = tables.get(name)
        if df is None:
            continue
        for c, rng in ranges.items():
            if c not in df.columns:
                continue
            values = pd.to_numeric(df[c], errors="coerce")
            for i, v in enumerate(values):
                if v is None or not math.isfinite(v) or v in rng:
                    continue  # unknown, or not a finite number (an error of its own)
                report(study.out_of_range,
                       f"column {c!r}: {float(v):g} is outside the plausible range {rng}",
                       f"correct the value (a typo, or another unit?), leave it empty when "
                       f"unknown, or set ranges: {{{c}: {{min: .., max: ..}}}} in study.yaml",
                       **where(df, i, f"{name}.csv"))


def check_paths_inside(root: Path, manifest: pd.DataFrame, strict: bool,
                       report: Callable[..., None],
                       where: Callable[[pd.DataFrame, int, str], dict[str, Any]]) -> None:
    """Report manifest paths that lead outside ``root`` (after following symlinks)."""
    base = root.resolve()
    for i, p in enumerate(manifest["path"]):
        if not isinstance(p, str) or not p:
            continue
        full = Path(p) if Path(p).is_absolute() else root / p
        if not full.exists():
            continue  # reported as missing elsewhere
        target = full.resolve()
        if target == base or base in target.parents:
            continue
        how = "a symlink" if _through_symlink(root, p) else "the path"
        report("error" if strict else "warning",
               f"image path {p!r} leads outside the cohort folder ({how} points to {target})",
               "copy the image into the cohort folder (a cohort must hold its images to be "
               "moved or shared)" + ("" if strict else "; `--strict-paths` or strict_paths: "
                                     "true in study.yaml refuses such paths"),
               **where(manifest, i, "manifest.csv"))


def _through_symlink(root: Path, rel: str) -> bool:
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        return False
    cur = root
    for part in Path(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            return True
    return False


def emit_warnings(problems: list[Problem]) -> None:
    """Show a cohort's warnings as Python warnings: ``read_cohort``'s callers (``pretrain``,
    ``prompts``) then print them before any work."""
    for p in problems:
        warnings.warn(str(p), CohortWarning, stacklevel=3)
