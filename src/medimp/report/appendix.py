"""The report's appendix: pretraining runs, retrieval, training curves, embedding map, examples.

These describe the image encoders rather than the prediction a clinician would use, so the page
keeps them after the answer. Each helper returns plain data (text, tables, base64 PNGs) for the
template, or says why there is none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data import Cohort
from medimp.evaluate.embeddings import feature_columns, level_data
from medimp.evaluate.labels import make_labels
from medimp.evaluate.metrics import MetricsFile
from medimp.prompts import build_prompts
from medimp.report import figures

__all__ = ["embedding_map", "example_prompts", "example_volumes", "histories", "strip_png"]


def strip_png(metrics: MetricsFile) -> str | None:
    """Each run's AUC beside its method's mean and CI (only when some method has runs)."""
    rows = [r for r in metrics.records if r.level == "patient_mean" and r.probe == "logistic"]
    if not any(r.run for r in rows):
        return None
    df = pd.DataFrame([r.model_dump() for r in rows])
    return figures.run_strip_plot(df, list(dict.fromkeys(df["task"])))


def histories(metrics: MetricsFile) -> dict[str, pd.DataFrame]:
    """Each pretrained method's ``history.csv`` (its first run's)."""
    out = {}
    for name, src in metrics.header.methods.items():
        runs = metrics.header.runs.get(name)
        f = Path(next(iter(runs.values())) if runs else src) / "history.csv"
        if f.is_file():
            try:
                h = pd.read_csv(f)
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if not h.empty and "epoch" in h.columns:  # random_init runs have no epochs
                out[name] = h
    return out


def example_volumes(cohort: Cohort, n_exams: int = 2) -> list[dict[str, str]]:
    """Middle slices of every phase of the first patient's first exams (read by medimp.data)."""
    if cohort.manifest.empty:
        return []
    out = []
    pid = sorted(cohort.manifest["patient_id"].unique())[0]
    for exam in [e for p, e in cohort.exam_keys() if p == pid][:n_exams]:
        vols = {}
        for phase in cohort.phases_of(pid, exam):
            try:
                vol = cohort.read_volume(pid, exam, phase)
            except ValueError:  # a broken file must not stop the report
                continue
            if vol is not None and vol.array.ndim == 3:
                vols[phase] = vol.array
        if vols:
            out.append({"png": figures.volume_slices(vols, f"patient {pid}, exam {exam}"),
                        "alt": f"{pid} {exam}"})
        try:
            sel = cohort.dynamic_selection(pid, exam)
        except ValueError:  # its error is in `medimp validate`; the report goes on
            sel = None
        if sel is not None:
            out.append({"png": figures.dynamic_curve(sel.to_dict(),
                                                     f"patient {pid}, exam {exam}"),
                        "alt": f"{pid} {exam} dynamic curve"})
    return out


def example_prompts(cohort: Cohort, n: int = 6) -> pd.DataFrame | None:
    """The first prompt of the first exams (what image–text pretraining read)."""

    try:
        prompts = build_prompts(cohort)
    except (ValueError, KeyError):  # cohort whose tables cannot make prompts
        return None
    if prompts.empty:
        return None
    first = prompts.drop_duplicates(["patient_id", "exam"]).head(n)
    return first[["patient_id", "exam", "variant", "prompt"]]


def embedding_map(eval_dir: Path, cohort: Cohort | None,
                  metrics: MetricsFile) -> dict[str, Any]:
    """The 2D map's PNG, or why there is none."""
    if cohort is None:
        return {"map_png": None, "map_horizon": None, "map_missing": "Cohort not found."}
    emb_dir = eval_dir / "embeddings"
    if not emb_dir.is_dir() or not metrics.header.horizons:
        return {"map_png": None, "map_horizon": None, "map_missing": "No embeddings saved."}
    k = metrics.header.horizons[0]
    lab = make_labels(cohort, k, metrics.header.threshold).set_index("patient_id")["label"]
    panels = {}
    for f in sorted(emb_dir.glob("*.parquet")):
        if "#" in f.stem:  # a further pretraining run of a method: its first run is mapped
            continue
        df = pd.read_parquet(f)
        df["patient_id"] = df["patient_id"].astype(str)
        patients = np.array(sorted(set(df["patient_id"]) & set(lab.index)))
        if len(patients) < 3 or not feature_columns(df):
            continue
        try:
            data = level_data(df, "patient_mean", cohort, patients)
        except KeyError:
            continue
        panels[f.stem] = (data.X, lab.loc[data.patient_id].to_numpy())
    if not panels:
        return {"map_png": None, "map_horizon": k, "map_missing": "No embeddings to map."}
    return {"map_png": figures.embedding_map(panels, f"status at {k} y"), "map_horizon": k,
            "map_missing": None}
