"""External validation: fit on all of DEV, test once on EXT (``evaluate --external``).

``medimp.prognosis.run.evaluate_external(DEV, EXT, methods)`` writes the usual cross-validated
evaluation of DEV (records ``split: "cv"``) and adds, for every model of
:mod:`medimp.prognosis.fit` fitted on all labelled patients of DEV
(:func:`medimp.prognosis.run.build_folder`, the code behind ``fit-prognosis``) and applied to
EXT (:func:`medimp.prognosis.run.apply_folder`, the code behind ``predict``), records with
``split: "external"``:

* binary tasks: AUC, balanced accuracy and F1 (at the threshold chosen on DEV), Brier score,
  calibration intercept and slope (logistic recalibration on EXT);
* continuous tasks: R², MAE and Spearman's ρ;
* a survival C-index of the longest horizon's risk against EXT's time to event.

Intervals: a percentile bootstrap over EXT's patients for one run; with several runs the mean
over runs, with the bootstrap variance of that mean plus the between-run variance divided by
the number of runs (normal interval). Calibration uses the Wald variance of the recalibration
fit (:func:`medimp.evaluate.calibration.calibration_summary`).

A run trained on EXT (its ``cohort_fingerprint`` is EXT's) is refused: the external figures
would be leaked. A run trained on neither cohort gets a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.data import read_cohort
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.evaluate.calibration import brier
from medimp.evaluate.labels import survival_table
from medimp.evaluate.metrics import ExternalRecord
from medimp.evaluate.replicates import expand_methods
from medimp.evaluate.scoring import auc, balanced_accuracy, f1
from medimp.prognosis.fit import FitConfig, FittedModel, PrognosisError, model_targets

__all__ = ["ExternalScore", "external_notes", "external_records", "score_external"]

Z95 = 1.959963984540054
N_BOOT = 1000
_BOUNDS = {"auc": (0.0, 1.0), "brier": (0.0, 1.0), "balanced_accuracy": (0.0, 1.0),
           "f1": (0.0, 1.0), "r2": (-np.inf, 1.0), "mae": (0.0, np.inf),
           "spearman": (-1.0, 1.0)}


def external_notes(dev: Path, ext: Path, methods: Mapping[str, Any]) -> list[str]:
    """Refuse leakage (a run trained on EXT, or DEV = EXT); notes for third-cohort runs."""
    from medimp.train import load_run_info

    fp_dev, fp_ext = cohort_fingerprint(dev), cohort_fingerprint(ext)
    if fp_ext is not None and fp_ext == fp_dev:
        raise PrognosisError(f"{ext}: the external cohort has the same patients and exams as "
                             f"{dev} (fingerprint {fp_ext}); an external validation needs "
                             "other patients")
    notes = []
    for m in expand_methods(methods):
        path = Path(m.source)
        if not (path / "model.json").is_file():
            continue
        trained = load_run_info(path).get("cohort_fingerprint")
        if trained and trained == fp_ext:
            raise PrognosisError(
                f"run {m.key} ({path}) was pretrained on the external cohort {ext} "
                f"(fingerprint {fp_ext}): its external figures would be leaked; pretrain on "
                "the development cohort or another one")
        if trained and trained != fp_dev:
            notes.append(f"{m.key}: run {path} was pretrained on a third cohort (fingerprint "
                         f"{trained}), neither the development nor the external one")
    return notes


def _boot_idx(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(N_BOOT, n))


def _r2(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    ss_res = np.sum((y - p) ** 2, axis=-1)
    ss_tot = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - ss_res / ss_tot


def _metrics(kind: str, y: np.ndarray, p: np.ndarray, threshold: float | None
             ) -> dict[str, np.ndarray]:
    """Metric name -> value along the last axis (works on [B, n] bootstrap draws too)."""
    if kind == "binary":
        return {"auc": auc(y, p), "brier": brier(y, p),
                "balanced_accuracy": balanced_accuracy(y, p >= threshold),
                "f1": f1(y, p >= threshold)}
    from scipy.stats import rankdata

    ry, rp = rankdata(y, axis=-1), rankdata(p, axis=-1)
    rho = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(np.atleast_2d(ry),
                                                             np.atleast_2d(rp), strict=True)])
    return {"r2": _r2(y, p), "mae": np.mean(np.abs(y - p), axis=-1),
            "spearman": rho if np.ndim(y) > 1 else rho[0]}


class ExternalScore(dict):
    """metric -> (estimate, low, high); plus ``n``, ``n_pos``, ``n_runs``, ``sd``."""


def score_external(kind: str, y: np.ndarray, runs: list[np.ndarray],
                   thresholds: list[float | None], seed: int = 0) -> ExternalScore:
    """Metrics of one model (its runs' estimates ``runs``) on EXT's patients with outcome y."""
    y = np.asarray(y, dtype=float)
    idx = _boot_idx(len(y), seed)
    per_run = [_metrics(kind, y, p, t) for p, t in zip(runs, thresholds, strict=True)]
    boots = [_metrics(kind, y[idx], p[idx], t) for p, t in zip(runs, thresholds, strict=True)]
    out = ExternalScore(n=len(y), n_runs=len(runs),
                        n_pos=int(y.sum()) if kind == "binary" else None)
    for name in per_run[0]:
        vals = np.array([float(r[name]) for r in per_run])
        est = float(vals.mean())
        draws = np.mean([b[name] for b in boots], axis=0)
        draws = draws[np.isfinite(draws)]
        if len(runs) == 1:
            lo, hi = np.percentile(draws, [2.5, 97.5]) if draws.size else (np.nan, np.nan)
        else:
            var = float(draws.var(ddof=1)) + float(vals.var(ddof=1)) / len(runs)
            lo, hi = est - Z95 * np.sqrt(var), est + Z95 * np.sqrt(var)
        lo_b, hi_b = _BOUNDS.get(name, (-np.inf, np.inf))  # normal intervals stay in range
        out[name] = (est, float(max(lo, lo_b)), float(min(hi, hi_b)))
        out[f"{name}_sd"] = float(vals.std(ddof=1)) if len(runs) > 1 else None
    if kind == "binary":
        from medimp.evaluate.calibration import calibration_summary

        cal = calibration_summary(y, [np.asarray(p)[None, :] for p in runs])
        out["calibration_intercept"] = (cal.intercept, cal.intercept_low, cal.intercept_high)
        out["calibration_slope"] = (cal.slope, cal.slope_low, cal.slope_high)
    return out


def _survival(ext: Any, cfg: FitConfig) -> pd.DataFrame | None:

    try:
        surv = survival_table(ext, cfg.survival_event, cfg.threshold)
    except ValueError:  # EvaluationError: no follow-up columns
        return None
    return surv if 0 < surv["event"].sum() < len(surv) else None


def _c_index(surv: pd.DataFrame, patients: np.ndarray, runs: list[np.ndarray],
             seed: int) -> tuple[float, float, float]:
    """Harrell's C of the risk (mean over runs) against time to event, bootstrap CI."""
    from lifelines.utils import concordance_index

    pos = {p: i for i, p in enumerate(patients)}
    s = surv[surv["patient_id"].isin(pos)]
    sel = np.array([pos[p] for p in s["patient_id"]])
    t, e = s["time_days"].to_numpy(float), s["event"].to_numpy(int)
    vals = [concordance_index(t, -r[sel], e) for r in runs]
    risk = np.mean([r[sel] for r in runs], axis=0)
    draws = []
    for idx in _boot_idx(len(t), seed)[:200]:
        if 0 < e[idx].sum() < len(idx):
            draws.append(concordance_index(t[idx], -risk[idx], e[idx]))
    est = float(np.mean(vals))
    if len(runs) > 1:
        half = Z95 * np.sqrt(np.var(draws, ddof=1) + np.var(vals, ddof=1) / len(runs))
        return est, max(0.0, est - half), min(1.0, est + half)
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return est, float(lo), float(hi)


def _groups(models: list[FittedModel]) -> dict[tuple[str, str], list[FittedModel]]:
    groups: dict[tuple[str, str], list[FittedModel]] = {}
    for fm in models:
        groups.setdefault((fm.model, fm.task), []).append(fm)
    return groups


def external_scores(folder: Any, ext_path: Path, applied: Mapping[str, Any],
                    cfg: FitConfig) -> list[dict[str, Any]]:
    """One score per model × task (aggregate over runs) and per run (several runs)."""
    ext = read_cohort(ext_path)
    rows: list[dict[str, Any]] = []
    targets = {}
    for kind in ("binary", "continuous"):
        for h in cfg.horizons:
            task, tg = model_targets(ext, h, kind, cfg.threshold)
            targets[task] = tg
    surv = _survival(ext, cfg)
    for (model, task), fms in _groups(folder.models).items():
        tg = targets[task]
        a0 = applied[fms[0].key]
        pos = {p: i for i, p in enumerate(a0.patients)}
        keep = [p for p in tg["patient_id"] if p in pos]
        if len(keep) < 2:
            continue
        sel = np.array([pos[p] for p in keep])
        y = tg.set_index("patient_id").loc[keep, "y"].to_numpy(float)
        if fms[0].kind == "binary" and len(np.unique(y)) < 2:
            continue
        ests = [applied[f.key].estimate[sel] for f in fms]
        thr = [f.threshold for f in fms]
        variants = [(None, fms, ests, thr)]
        if len(fms) > 1:
            variants += [(f.run, [f], [e], [t]) for f, e, t in zip(fms, ests, thr, strict=True)]
        longest = task == f"status_y{max(cfg.horizons)}"
        for run, members, e, t in variants:
            score = score_external(fms[0].kind, y, e, t, seed=cfg.seed)
            if longest and surv is not None:
                score["c_index"] = _c_index(surv, a0.patients, [applied[f.key].estimate
                                                               for f in members], cfg.seed)
            rows.append({"model": model, "method": members[0].method, "run": run,
                         "task": task, "kind": fms[0].kind, "score": score,
                         "patients": keep, "estimates": e})
    return rows


def scores_frame(scores: list[dict[str, Any]]) -> pd.DataFrame:
    """A printable table: model, run, task, n, then "est [lo, hi]" per metric."""
    rows = []
    for s in scores:
        row = {"model": s["model"], "run": s["run"] or "", "task": s["task"],
               "n": s["score"]["n"]}
        for name in ("auc", "brier", "calibration_slope", "r2", "mae"):
            if name in s["score"]:
                est, lo, hi = s["score"][name]
                row[name] = f"{est:.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _triple(score: Mapping[str, Any], name: str, fields: tuple[str, str, str]
            ) -> dict[str, float | None]:
    if name not in score:
        return {}
    est, lo, hi = score[name]
    return {f: _finite(v) for f, v in zip(fields, (est, lo, hi), strict=True)}


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def external_records(scores: list[dict[str, Any]]) -> list[ExternalRecord]:
    """One :class:`ExternalRecord` per row of
    :func:`medimp.prognosis.external.external_scores`."""
    out = []
    for s in scores:
        sc = s["score"]
        rec: dict[str, Any] = {"task": s["task"], "method": s["model"], "run": s["run"],
                               "n_runs": sc["n_runs"], "n": sc["n"], "n_pos": sc["n_pos"]}
        rec |= _triple(sc, "auc", ("auc", "auc_ci_low", "auc_ci_high"))
        rec |= _triple(sc, "brier", ("brier", "brier_ci_low", "brier_ci_high"))
        rec |= _triple(sc, "calibration_intercept", ("calibration_intercept",
                                                     "calibration_intercept_ci_low",
                                                     "calibration_intercept_ci_high"))
        rec |= _triple(sc, "calibration_slope", ("calibration_slope",
                                                 "calibration_slope_ci_low",
                                                 "calibration_slope_ci_high"))
        rec |= _triple(sc, "r2", ("r2", "r2_ci_low", "r2_ci_high"))
        rec |= _triple(sc, "c_index", ("c_index", "c_index_ci_low", "c_index_ci_high"))
        for name in ("balanced_accuracy", "f1", "mae", "spearman"):
            if name in sc:
                rec[name] = _finite(sc[name][0])
        if sc.get("auc_sd") is not None:
            rec["auc_sd"] = sc["auc_sd"]
        for name, lo, hi in (("auc", 0.0, 1.0), ("c_index", 0.0, 1.0), ("r2", None, 1.0)):
            if rec.get(name) is not None and rec.get(f"{name}_ci_low") is not None:
                if lo is not None:  # normal intervals stay inside the metric's range
                    rec[f"{name}_ci_low"] = max(lo, rec[f"{name}_ci_low"])
                rec[f"{name}_ci_high"] = min(hi, rec[f"{name}_ci_high"])
        out.append(ExternalRecord(**rec))
    return out
