"""Figures that let a user look at what the simulator made.

* ``montage.png``: the middle slice of every phase (rows) × exam (columns) for a few patients;
  each exam shares one grey scale across its phases, so enhancement is visible.
* ``enhancement_curves.png``: the model concentration curves (arterial input, cortex, medulla,
  fibrotic cortex) of the same patients' exams, with the phase acquisition times marked.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medimp._io import atomic_write_bytes
from medimp.study import Study

__all__ = ["write_figures"]


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    # no "Software"/date metadata: the same cohort gives the same bytes
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def write_figures(folder: Path, results: Sequence[Any], study: Study) -> list[Path]:
    """Write the montage and the enhancement curves; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")

    shown = [r for r in results if r.slices or r.curves]
    if not shown:
        return []
    return [_montage(folder / "montage.png", shown, study),
            _curves(folder / "enhancement_curves.png", shown, study)]


def _montage(path: Path, shown: Sequence[Any], study: Study) -> Path:
    """Middle slice of every phase (rows) of every exam (columns) of the shown patients."""
    import matplotlib.pyplot as plt

    exams, phases = study.exam_names, study.phase_names
    rows = len(shown) * len(phases)
    fig, axes = plt.subplots(rows, len(exams), figsize=(1.6 * len(exams), 1.6 * rows),
                             squeeze=False)
    for pi, r in enumerate(shown):
        pid = r.manifest[0]["patient_id"] if r.manifest else f"#{r.index}"
        for ei, ex in enumerate(exams):
            vals = [r.slices[f"{ex}/{ph}"] for ph in phases if f"{ex}/{ph}" in r.slices]
            vmax = float(np.percentile(np.concatenate([v.ravel() for v in vals]), 99.5)) \
                if vals else 1.0
            for fi, ph in enumerate(phases):
                ax = axes[pi * len(phases) + fi, ei]
                ax.set_xticks([])
                ax.set_yticks([])
                sl = r.slices.get(f"{ex}/{ph}")
                if sl is None:
                    ax.text(0.5, 0.5, "missing", ha="center", va="center", fontsize=7,
                            transform=ax.transAxes)
                else:
                    ax.imshow(sl.T, cmap="gray", origin="lower", vmin=0, vmax=vmax)
                if pi == 0 and fi == 0:
                    ax.set_title(ex, fontsize=8)
                if ei == 0:
                    ax.set_ylabel(f"{pid}\n{ph}", fontsize=7)
    fig.suptitle("Simulated DCE-MRI: phases (rows) x exams (columns), middle slice", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _curves(path: Path, shown: Sequence[Any], study: Study) -> Path:
    """Tracer concentration curves (blood, cortex, medulla) of every exam of the shown
    patients, with the phase times."""
    import matplotlib.pyplot as plt

    exams = study.exam_names
    fig, axes = plt.subplots(len(shown), len(exams), figsize=(3 * len(exams), 2.4 * len(shown)),
                             squeeze=False, sharey=True)
    for pi, r in enumerate(shown):
        by_exam = {c["exam"]: c for c in r.curves}
        for ei, ex in enumerate(exams):
            ax = axes[pi, ei]
            c = by_exam.get(ex)
            if c is None:
                ax.text(0.5, 0.5, "exam missing", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            for key, colour in (("blood", "tab:red"), ("cortex", "tab:blue"),
                                ("medulla", "tab:green"), ("cortex_fibrotic", "tab:purple")):
                ax.plot(c["t"], 1000 * c[key], color=colour, label=key, lw=1.2)
            for tp in c["phase_times"]:
                ax.axvline(tp, color="grey", ls=":", lw=0.8)
            ax.set_title(f"{c['patient_id']} {ex}: GFR {c['gfr']:.0f}", fontsize=8)
            ax.set_xlabel("s after bolus arrival", fontsize=7)
            if ei == 0:
                ax.set_ylabel("concentration (mM)", fontsize=7)
    for ax in axes.ravel():
        if ax.get_lines():
            ax.legend(fontsize=6)
            break
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
