"""Frozen embeddings of every exam of a cohort, from a run's exported image encoder.

Rows: one per exam (``level="exam"``), one per patient as the mean of its exams
(``level="patient"``, ``exam="mean"``), and one per patient from its latest exam
(``level="patient_latest"``, ``exam`` = that exam, by :meth:`medimp.data.Cohort.sort_exams`:
days after transplant, then the study's exam order). Columns: patient_id, exam, level,
e0..e{D-1}. By default the encoder's features (before the projection head) are embedded, as
is usual for linear probes; ``projected=True`` gives the shared-space embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from medimp._io import atomic_path, output_dir
from medimp.data import ExamDataset, read_cohort
from medimp.data.pipeline.phases import encoder_input
from medimp.train.checkpoint import load_image_encoder, load_image_tower
from medimp.train.config import TrainError
from medimp.train.datamodule import collate

__all__ = ["embed", "write_projector"]


@torch.no_grad()
def embed(run_dir: str | os.PathLike[str], cohort_path: str | os.PathLike[str],
          out: str | os.PathLike[str] | None = None, *, batch_size: int = 8,
          projected: bool = False, num_workers: int = 0,
          cache_dir: str | os.PathLike[str] | None = None, progress: bool = False,
          tensorboard: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Embed every exam of ``cohort_path`` with the image encoder of ``run_dir``.

    Args:
        run_dir: a finished ``pretrain`` run folder (``model.safetensors`` + ``model.json``).
        cohort_path: any cohort with the same phases (it need not be the training cohort).
        out: parquet file to write (atomically); None: only return the table.
        batch_size: exams per forward pass.
        projected: embed in the shared (projected, L2-normalised) space instead of features.
        num_workers: DataLoader workers.
        cache_dir: preprocessed-volume cache folder (shared with training if the same).
            None: the run's own ``cache_dir`` when it was set as an absolute path and is
            still a medimp cache folder this process can write (the volumes pretraining
            preprocessed are not preprocessed again; another cohort's are added to it), else
            the cohort's default cache (:func:`run_cache_dir`).
        progress: show a rich progress bar.
        tensorboard: also write the embeddings to this folder (new or empty) for
            TensorBoard's projector, labelled by patient, exam and level
            (:func:`write_projector`).

    Raises:
        TrainError: run folder incomplete, the cohort's phases differ from the run's, or the
            ``tensorboard`` folder is not empty.
    """
    import json


    run_dir = Path(run_dir)
    if tensorboard is not None:  # refused before the embedding, not after minutes of it
        _check_projector_dir(Path(tensorboard))
    if projected:
        model, prep = load_image_tower(run_dir)
    else:
        model, prep = load_image_encoder(run_dir)
    info = json.loads((run_dir / "model.json").read_text(encoding="utf-8"))
    cohort = read_cohort(cohort_path)
    phases = list(cohort.study.phase_names)
    if info.get("phases") and phases != info["phases"]:
        raise TrainError(f"{cohort_path}: phases {phases} differ from the run's {info['phases']} "
                         f"({run_dir}); embed a cohort acquired with the same phases")
    keys = [(str(p), str(e)) for p, e in cohort.exam_keys()]
    if not keys:
        raise TrainError(f"{cohort_path}: no exam with images to embed")
    if cache_dir is None:
        cache_dir = run_cache_dir(info)
    ds = ExamDataset(cohort, prep, cache_dir=cache_dir, augment=None, seed=0, keys=keys)
    mask_mode = str((info.get("config") or {}).get("phase_mask", "zero"))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers)
    x, rows_id = _forward(model, loader, len(ds), progress, mask_mode)
    if not np.all(np.isfinite(x)):
        bad = sorted({rows_id[i] for i in np.where(~np.isfinite(x).all(1))[0]})[:3]
        raise TrainError(f"{run_dir}: non-finite embeddings for {bad}; the model is broken")
    df = _levels(cohort, x, rows_id)
    df["patient_id"] = df["patient_id"].astype(str)
    if out is not None:
        with atomic_path(out) as tmp:
            df.to_parquet(tmp, index=False)
    if tensorboard is not None:
        write_projector(df, tensorboard, tag=f"{run_dir.name}{'_projected' if projected else ''}")
    return df


def _check_projector_dir(path: Path) -> None:
    """The rule :func:`write_projector`'s ``output_dir`` applies, checked before any work."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TrainError(f"{path} is not an empty folder; give a new folder for the TensorBoard "
                         "projector (a second set of embeddings there would be listed beside the "
                         "first)")


def write_projector(df: pd.DataFrame, log_dir: str | os.PathLike[str],
                    tag: str = "embeddings") -> Path:
    """Write an ``embed`` table to ``log_dir`` (a new or empty folder) for TensorBoard's
    projector (``tensorboard --logdir DIR``, "Projector" tab): one point per row, labelled by
    ``patient_id``, ``exam`` and ``level`` (colour or search by patient). Written by torch's
    ``SummaryWriter.add_embedding`` into a temporary folder that replaces ``log_dir`` when
    complete.

    Raises:
        TrainError: ``log_dir`` exists and is not an empty folder.
    """
    from torch.utils.tensorboard import SummaryWriter


    cols = [c for c in df.columns if c.startswith("e") and c[1:].isdigit()]
    labels = [[str(p), str(e), str(lv)] for p, e, lv in
              zip(df["patient_id"], df["exam"], df["level"], strict=True)]
    with output_dir(log_dir, what="TensorBoard projector folder", error=TrainError) as tmp:
        writer = SummaryWriter(log_dir=str(tmp))
        try:
            writer.add_embedding(torch.from_numpy(df[cols].to_numpy(np.float32)),
                                 metadata=labels, metadata_header=["patient_id", "exam", "level"],
                                 tag=tag)
        finally:
            writer.close()
    return Path(log_dir)


def _forward(model: torch.nn.Module, loader: DataLoader, total: int, progress: bool,
             mask_mode: str = "zero") -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Features of every exam the loader serves, and its (patient_id, exam)."""

    rows_id: list[tuple[str, str]] = []
    feats: list[np.ndarray] = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("embedding exams", total=total)
    try:
        for batch in loader:
            # a missing phase is presented exactly as in training (medimp.data.pipeline.phases)
            x = encoder_input(batch["image"].float(), batch["phase_mask"], mask_mode)
            z = model(x)
            feats.append(z.float().cpu().numpy())
            rows_id.extend(zip(batch["patient_id"], batch["exam"], strict=True))
            if bar is not None:
                bar.advance(task, len(batch["patient_id"]))
    finally:
        if bar is not None:
            bar.stop()
    return np.concatenate(feats).astype(np.float32), rows_id


def _levels(cohort, x: np.ndarray, rows_id: list[tuple[str, str]]) -> pd.DataFrame:
    """The exam rows, the patient means and each patient's latest exam, in one table."""
    cols = [f"e{i}" for i in range(x.shape[1])]
    exam_df = pd.DataFrame(x, columns=cols)
    exam_df.insert(0, "level", "exam")
    exam_df.insert(0, "exam", [e for _, e in rows_id])
    exam_df.insert(0, "patient_id", [p for p, _ in rows_id])

    pat = exam_df.groupby("patient_id", sort=True)[cols].mean().reset_index()
    pat.insert(1, "exam", "mean")
    pat.insert(2, "level", "patient")
    # the cohort's one exam order (days after transplant, then study order)
    latest_keys = set(cohort.latest_exams(rows_id).items())
    is_latest = [k in latest_keys for k in rows_id]
    latest = (exam_df[is_latest].sort_values("patient_id", kind="stable")
              .assign(level="patient_latest"))
    return pd.concat([exam_df, pat, latest], ignore_index=True)[["patient_id", "exam", "level",
                                                                  *cols]]


def run_cache_dir(info: dict[str, Any]) -> Path | None:
    """The ``cache_dir`` a run was trained with (``info``: its model.json), when it is an
    absolute path to a medimp cache folder that this process can write on this machine, else
    None (the cohort's default cache is used): a cluster job's node-local folder that is gone,
    a relative path, another user's cache."""
    from medimp.data.pipeline.cache import PreprocessCache
    from medimp.data.pipeline.cache_dir import cache_write_problem

    raw = (info.get("config") or {}).get("cache_dir")
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw).expanduser()
    try:
        usable = (path.is_absolute() and PreprocessCache(path).is_cache_dir()
                  and cache_write_problem(path) is None)
    except OSError:  # a folder this user may not enter
        return None
    return path if usable else None
