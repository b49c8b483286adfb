"""Image→text retrieval and zero-shot GFR-bin classification (runs with a text tower).

Both use the run's own text tower (``medimp.train.load_text_tower``) and its projected image
embeddings (the shared space), on the patients the run held out from pretraining
(``val_patients`` of ``model.json``); a run without held-out patients is evaluated on all
patients and flagged ``heldout: false``.

* Retrieval: each exam's image embedding ranks the distinct prompts (variant 0) of all
  evaluated exams by cosine similarity; a hit at k means the exam's own prompt text is among
  the k best. Exams whose prompts read the same share one candidate text.
* Zero-shot: for each exam, one prompt per GFR bin of the study ("The patient's GFR was found to
  be {bin} at the {date} check-up."); the most similar bin is the prediction, compared with
  the bin of the exam's measured eGFR.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data import Cohort
from medimp.evaluate.embeddings import feature_columns
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.metrics import RetrievalRecord, Skipped
from medimp.prompts import build_prompts

__all__ = ["gfr_bin_prompts", "heldout_patients", "image_text_recall", "recall_chance",
           "retrieval_for_runs", "zero_shot_gfr"]

TextTower = Callable[[list[str]], Any]


def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=float)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def recall_chance(k: int, n_candidates: int) -> float:
    """R@k of a random ranking of ``n_candidates`` texts (one of them right): ``k / n``."""
    return min(k, n_candidates) / max(n_candidates, 1)


def image_text_recall(images: np.ndarray, texts: Sequence[str], text_tower: TextTower,
                      ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@k of each image's own text among the distinct candidate texts."""
    images = _normalise(np.asarray(images, dtype=float))
    uniq = list(dict.fromkeys(texts))
    t = _normalise(_to_numpy(text_tower(uniq)))
    if t.shape[1] != images.shape[1]:
        raise EvaluationError(f"image embeddings have {images.shape[1]} dims but the text tower "
                              f"gives {t.shape[1]}: the embeddings are not in the joint space")
    sim = images @ t.T
    own = np.array([uniq.index(s) for s in texts])
    own_sim = sim[np.arange(len(texts)), own]
    rank = (sim > own_sim[:, None]).sum(axis=1)  # 0 = best
    return {k: float((rank < k).mean()) for k in ks}


def _gfr_variable(study):
    for var in study.variables:
        if var.name == "gfr" or var.column == "egfr":
            return var
    raise EvaluationError("study.yaml has no GFR variable (name 'gfr' or column 'egfr'); "
                          "zero-shot classification needs one")


def gfr_bin_prompts(study, exam: str) -> tuple[list[str], list[str]]:
    """(bin labels, one prompt per bin) for the exam's check-up phrase."""
    var = _gfr_variable(study)
    phrase = study.exam(exam).phrase
    labels = [b.label for b in var.bins]
    return labels, [var.template.format(**{var.slot: lab, "date": phrase}) for lab in labels]


def _bin_of(value: float, bins) -> str | None:
    if not np.isfinite(value):
        return None
    for b in bins:
        if b.upper is None or value < b.upper:
            return b.label
    return None


def zero_shot_gfr(images: np.ndarray, exams: pd.DataFrame, study,
                  text_tower: TextTower) -> tuple[float, float, float, int]:
    """Zero-shot GFR bin of each exam; returns (accuracy, balanced accuracy, chance, n)."""
    var = _gfr_variable(study)
    images = _normalise(np.asarray(images, dtype=float))
    truth, pred = [], []
    # the bin prompts depend on the exam's check-up only: embed each set once, not per exam
    texts: dict[tuple[str, ...], np.ndarray] = {}
    if var.column not in exams.columns:
        raise EvaluationError(f"exams.csv has no column {var.column!r} (the {var.name!r} "
                              "variable of study.yaml): no zero-shot eGFR classification")
    # columns are read by name: a clinic's names ("eGFR (mL/min/1.73m2)") are no identifiers
    values = pd.to_numeric(exams[var.column], errors="coerce").to_numpy(dtype=float)
    for i, (value, exam) in enumerate(zip(values, exams["exam"].astype(str), strict=True)):
        label = _bin_of(float(value), var.bins)
        if label is None:
            continue
        labels, prompts = gfr_bin_prompts(study, exam)
        if tuple(prompts) not in texts:
            texts[tuple(prompts)] = _normalise(_to_numpy(text_tower(prompts)))
        t = texts[tuple(prompts)]
        pred.append(labels[int(np.argmax(t @ images[i]))])
        truth.append(label)
    if not truth:
        raise EvaluationError("no exam with a measured eGFR for zero-shot classification")
    truth_a, pred_a = np.array(truth), np.array(pred)
    present = sorted(set(truth))
    bacc = float(np.mean([(pred_a[truth_a == c] == c).mean() for c in present]))
    return float((truth_a == pred_a).mean()), bacc, 1.0 / len(var.bins), len(truth)


def heldout_patients(run_dir: Path) -> list[str] | None:
    """Patients the run did not train on (``val_patients`` of its ``model.json``), if any."""
    from medimp.train import load_run_info

    val = load_run_info(run_dir).get("val_patients")
    return [str(p) for p in val] if val else None


def retrieval_for_runs(tables: Cohort, methods: Mapping[str, Any], seed: int,
                       skipped: list[Skipped]) -> list[RetrievalRecord]:
    """Retrieval and zero-shot for every medimp (text-prompt) run given as a run dir."""
    out = []
    for name, src in methods.items():
        if not isinstance(src, str | os.PathLike) or not Path(src).is_dir():
            continue
        if not _has_text_tower(Path(src)):
            continue
        try:
            out.append(_one_run(tables, name, Path(src), seed))
        except (ValueError, FileNotFoundError, KeyError) as exc:
            skipped.append(Skipped(task="retrieval", method=name, reason=str(exc)))
        except Exception as exc:  # a late failure must not lose the evaluation written so far
            skipped.append(Skipped(task="retrieval", method=name, reason=(
                f"retrieval failed ({type(exc).__name__}: {exc}); the other results are "
                "written; please report it with the run folder")))
    return out


def _has_text_tower(run_dir: Path) -> bool:
    """True for a run whose objective has a text tower (medimp); others have none to retrieve."""
    from medimp.train import load_run_info
    from medimp.train.objectives import get_objective

    try:
        info = load_run_info(run_dir)
        return get_objective(info.get("method", (info.get("config") or {}).get("method"))
                             ).text_tower
    except ValueError:  # not a run, or its objective is not registered here
        return False


def _one_run(tables: Cohort, name: str, run_dir: Path, seed: int) -> RetrievalRecord:
    from medimp.train import embed, load_text_tower

    try:
        tower = load_text_tower(run_dir)
    except (ValueError, OSError) as exc:  # TrainError: not a medimp run
        raise EvaluationError(f"{run_dir}: no text tower ({exc}); retrieval needs a medimp "
                              "(text-prompt) run") from exc
    held = heldout_patients(run_dir)
    feats = embed(run_dir, tables.root, projected=True)  # the shared image-text space
    prompts = build_prompts(tables, seed=seed)
    prompts = prompts.sort_values("variant").drop_duplicates(["patient_id", "exam"])
    rows = feats[feats["level"] == "exam"].merge(
        prompts[["patient_id", "exam", "prompt"]], on=["patient_id", "exam"])
    rows = rows.merge(tables.exams, on=["patient_id", "exam"], how="left")
    if held is not None:
        rows = rows[rows["patient_id"].isin(set(held))]
    if rows.empty:
        raise EvaluationError(f"{run_dir}: no exam with both an embedding and a prompt")
    X = rows[feature_columns(feats)].to_numpy(float)
    rec = image_text_recall(X, rows["prompt"].tolist(), tower)
    n_cand = rows["prompt"].nunique()
    acc, bacc, chance, _ = zero_shot_gfr(X, rows, tables.study, tower)
    return RetrievalRecord(method=name, n_exams=len(rows),
                           n_patients=rows["patient_id"].nunique(), heldout=held is not None,
                           n_candidates=n_cand, r_at_1=rec[1], r_at_5=rec[5], r_at_10=rec[10],
                           chance_at_1=recall_chance(1, n_cand),
                           chance_at_5=recall_chance(5, n_cand),
                           chance_at_10=recall_chance(10, n_cand),
                           zero_shot_accuracy=acc, zero_shot_balanced_accuracy=bacc,
                           zero_shot_chance=chance)
