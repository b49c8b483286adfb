"""Checks of the values in a cohort's tables that pydantic's row types cannot make alone.

* Missing values: only the spellings of ``study.yaml``'s ``missing_values`` (default: the empty
  cell) mean "unknown", never pandas' long default list (``NA``, ``None``, ``null``, ``n/a``,
  ``nan`` ...), and never in the id columns: a patient named ``NA`` stays a patient, and ``n/a``
  in a numeric column is an error unless it is declared missing.
* Plausible ranges live in :mod:`medimp.data.cohort._roles` (by a column's role and unit, from
  :data:`medimp._units.QUANTITIES` and ``study.yaml``'s ``ranges``).
* Manifest paths that lead outside the cohort folder (``../``, an absolute path, a symlink
  out): a warning, or an error under ``strict_paths``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data._errors import Problem
from medimp.data.cohort._findings import RowFindings
from medimp.study import Study

__all__ = ["CohortWarning", "apply_missing_values", "check_paths_inside", "emit_warnings",
           "read_raw_csv"]

#: Columns that are names, never values: never read as missing.
ID_COLUMNS = ("patient_id", "exam", "phase", "path", "series_uid")


class CohortWarning(UserWarning):
    """A cohort is usable but holds something worth checking (shown by ``read_cohort``)."""


def read_raw_csv(path: Path, sep: str = ",") -> pd.DataFrame:
    """Every cell as written (a string; no NA parsing), header included."""
    return pd.read_csv(path, dtype=str, skipinitialspace=True, encoding="utf-8-sig",
                       index_col=False, keep_default_na=False, na_filter=False, sep=sep)


def apply_missing_values(df: pd.DataFrame, study: Study | None) -> None:
    """Turn the declared missing spellings of the value columns into NaN, in place (cells are
    already stripped); the id columns keep every spelling."""
    missing = set(study.missing_values) if study is not None else {""}
    missing.add("")
    for c in df.columns:
        if c in ID_COLUMNS:
            continue
        df[c] = df[c].where(~df[c].isin(missing), np.nan)


def check_paths_inside(root: Path, manifest: pd.DataFrame, strict: bool,
                       report: Callable[..., None],
                       where: Callable[[pd.DataFrame, int, str], dict[str, Any]]) -> None:
    """Report manifest paths that lead outside ``root`` (after following symlinks); the
    paths behind one symlink (a linked ``images/`` folder) are one finding."""
    base = root.resolve()
    findings = RowFindings()
    for i, p in enumerate(manifest["path"]):
        if not isinstance(p, str) or not p:
            continue
        full = Path(p) if Path(p).is_absolute() else root / p
        if not full.exists():
            continue  # reported as missing elsewhere
        target = full.resolve()
        if target == base or base in target.parents:
            continue
        link = _through_symlink(root, p)
        how = "a symlink" if link else "the path"
        into = f" {link!r} -> {(root / link).resolve()}" if link else ""
        findings.add(
            ("manifest.csv", link or "", "outside"), where(manifest, i, "manifest.csv"), None,
            severity="error" if strict else "warning",
            one=f"image path {p!r} leads outside the cohort folder ({how} points to {target})",
            many=lambda n, rows, into=into: (
                f"{n} image paths lead outside the cohort folder"
                + (f" through the symlink{into}" if into else "") + f": {rows}"),
            fix="copy the image(s) into the cohort folder (a cohort must hold its images to be "
                "moved or shared)" + ("" if strict else "; `--strict-paths` or strict_paths: "
                                      "true in study.yaml refuses such paths"))
    findings.emit(report)


def _through_symlink(root: Path, rel: str) -> str | None:
    """The first component of ``rel`` that is a symlink (None: none, or not a plain relative
    path)."""
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    cur = root
    for part in Path(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            return cur.relative_to(root).as_posix()
    return None


def emit_warnings(problems: list[Problem]) -> None:
    """Show a cohort's warnings as Python warnings: ``read_cohort``'s callers (``pretrain``,
    ``prompts``) then print them before any work."""
    for p in problems:
        warnings.warn(str(p), CohortWarning, stacklevel=3)
