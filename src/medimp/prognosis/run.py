"""Fit a prognosis model folder on one cohort (``fit_prognosis``) and apply it (``predict``).

``fit_prognosis(DEV, {"medimp": "runs/medimp"}, "model/")`` fits every model of
:mod:`medimp.prognosis.fit` on all labelled patients of DEV, once per pretraining run, and
writes the folder of :mod:`medimp.prognosis.folder`. ``predict("model/", NEW)`` embeds NEW with
each run the folder references (after checking its files' hashes), applies every model and
returns one row per patient × model × task: ``patient_id, model, task, estimate, low, high,
flags`` (docs/prognosis.md). :func:`build_folder` and :func:`apply_folder` are what
``evaluate --external`` uses too, so its figures are those of ``predict``.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from medimp import __version__
from medimp._io import output_dir
from medimp.data import Cohort, read_cohort
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.data.pipeline.features import ClinicalFeatures
from medimp.evaluate.embeddings import read_embeddings
from medimp.evaluate.replicates import check_replicates, expand_methods
from medimp.prognosis.card import model_card
from medimp.prognosis.external import Z95, external_notes, external_records, external_scores
from medimp.prognosis.fit import (
    FitConfig,
    FittedModel,
    PrognosisError,
    apply_model,
    combine_tables,
    fit_all,
    patient_matrix,
)
from medimp.prognosis.folder import (
    MODEL_FILES,
    ModelFolder,
    RunRef,
    check_runs,
    read_model,
    run_files,
    write_model,
)

__all__ = ["PREDICTION_COLUMNS", "apply_folder", "build_folder", "clinical_table",
           "evaluate_external", "fit_prognosis", "predict"]

PREDICTION_COLUMNS = ["patient_id", "model", "task", "estimate", "low", "high", "flags"]
OUTLIER_PERCENTILE = 99.0


def clinical_table(builder: ClinicalFeatures, cohort: Cohort) -> pd.DataFrame:
    """The clinical features of ``cohort`` with a fitted builder (exam rows)."""
    try:
        out = builder.transform(cohort, cohort.exam_keys())
    except KeyError as exc:
        raise PrognosisError(
            f"{cohort.root / 'study.yaml'}: the model's clinical preprocessing needs {exc}, "
            "which this cohort's study.yaml does not define; use the fitting cohort's "
            "baseline_columns, exam_columns and variables") from exc
    out.insert(2, "level", "exam")
    return out


def _embed(path: Path, cohort_path: Path) -> pd.DataFrame:
    from medimp.train import embed

    return read_embeddings(embed(path, cohort_path))


def _run_info(path: Path) -> dict[str, Any]:
    from medimp.train import load_run_info

    info = load_run_info(path)
    return {k: info.get(k) for k in ("method", "image_encoder", "preprocess", "embed_dim",
                                     "phases", "cohort_fingerprint")}


def _embedding_stats(ref: RunRef, emb: pd.DataFrame, cohort: Cohort) -> None:
    from sklearn.covariance import LedoitWolf

    pats = np.array(sorted(set(emb["patient_id"])))
    X = patient_matrix(emb, cohort, pats)
    lw = LedoitWolf().fit(X)
    ref.emb_mean = lw.location_.astype(np.float64)
    ref.emb_precision = lw.precision_.astype(np.float64)
    # DEV's reference distances are out-of-sample (5-fold): in-sample distances are shrunk by
    # the fit, and a new patient of the same population would look far from DEV
    held = np.empty(len(X))
    folds = np.arange(len(X)) % 5
    np.random.default_rng(0).shuffle(folds)
    for f in range(5):
        te = folds == f
        if te.any() and (~te).sum() > 1:
            cv = LedoitWolf().fit(X[~te])
            held[te] = _mahalanobis(X[te], cv.location_, cv.precision_)
    ref.dev_distances = np.sort(held)


def _mahalanobis(X: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    d = np.asarray(X, float) - mean
    return np.sqrt(np.clip(np.einsum("ij,jk,ik->i", d, precision, d), 0.0, None))


def _clinical_ranges(table: pd.DataFrame, builder: ClinicalFeatures) -> dict[str, list[float]]:
    out = {}
    for f in builder.features_:
        if f.kind == "numeric" and table[f.name].notna().any():
            out[f.name] = [float(table[f.name].min()), float(table[f.name].max())]
    return out


def build_folder(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],
                 cfg: FitConfig | None = None, progress: bool = False) -> ModelFolder:
    """Fit every model on all labelled patients of ``cohort_path`` (in memory)."""
    cfg = cfg or FitConfig()
    cohort_path = Path(cohort_path)
    cohort = read_cohort(cohort_path)
    members = expand_methods(methods)
    check_replicates(members)
    fp = cohort_fingerprint(cohort_path)
    runs: list[RunRef] = []
    embeddings: dict[tuple[str, str | None], pd.DataFrame] = {}
    for m in members:
        path = Path(m.source)
        if not (path / "model.json").is_file():
            raise PrognosisError(f"--runs {m.method}={path}: not a pretraining run folder "
                                 "(no model.json); give the folder written by medimp pretrain")
        ref = RunRef(m.method, m.run, str(path.resolve()), run_files(path), _run_info(path))
        emb = _embed(path, cohort_path)
        _embedding_stats(ref, emb, cohort)
        runs.append(ref)
        embeddings[(m.method, m.run)] = emb
    builder = ClinicalFeatures("all").fit(cohort, cohort.exam_keys())
    clinical = clinical_table(builder, cohort) if builder.columns_ else None
    say = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True)

        def say(text: str) -> None:
            console.print(f"fitting {text}", highlight=False, markup=False)
    models = fit_all(cohort, clinical, embeddings, cfg, say)
    tasks = {m.task: (m.n, m.n_pos) for m in models}
    dev = {"cohort": str(cohort_path.resolve()), "fingerprint": fp,
           "n_patients": len(cohort.patients), "n_exams": len(cohort.exam_keys()),
           "phases": list(cohort.study.phase_names), "exams": list(cohort.study.exam_names),
           "tasks": [{"task": t, "n": n, "n_pos": p} for t, (n, p) in tasks.items()],
           "clinical_ranges": _clinical_ranges(clinical, builder) if clinical is not None
           else {}}
    meta = {"medimp_version": __version__, "sklearn_version": sklearn.__version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    config = {"horizons": list(cfg.horizons), "threshold": cfg.threshold, "Cs": list(cfg.Cs),
              "ridge_alphas": list(cfg.ridge_alphas), "pca_ks": list(cfg.pca_ks),
              "inner_splits": cfg.inner_splits, "seed": cfg.seed, "level": "patient_mean"}
    return ModelFolder(models=models, runs=runs, clinical=builder if clinical is not None
                       else None, dev=dev, config=config, meta=meta)


def fit_prognosis(cohort_path: str | os.PathLike[str], methods: Mapping[str, Any],
                  out: str | os.PathLike[str], cfg: FitConfig | None = None, *,
                  overwrite: bool = False, progress: bool = False,
                  external: str | os.PathLike[str] | None = None) -> Path:
    """Fit on all labelled patients of ``cohort_path`` and write the model folder ``out``.

    Args:
        cohort_path: the development cohort.
        methods: name -> run folder, list of run folders or folder of seed runs.
        out: the model folder (absent or empty unless ``overwrite``; written beside and
            swapped in once complete).
        cfg: horizons, threshold, inner-CV grids.
        overwrite: replace an earlier model folder.
        progress: print each fit.
        external: an external cohort: the fitted models are applied to it and scored
            (:mod:`medimp.prognosis.external`) and the figures go into the model card and
            ``model.json`` (``external``). Runs pretrained on it are refused (leakage).
    """

    final = Path(out)
    sources = [s for m in methods.values() for s in (m if isinstance(m, list | tuple) else [m])]
    with output_dir(final, overwrite=overwrite, what="model folder", error=PrognosisError,
                    keep=[cohort_path, *sources], ours=MODEL_FILES) as tmp:
        if external is not None:
            external_notes(Path(cohort_path), Path(external), methods)  # refuses leakage
        folder = build_folder(cohort_path, methods, cfg, progress)
        if external is not None:
            folder.meta["external"] = _external_summary(folder, Path(external), cfg)
        write_model(folder, tmp, model_card(folder))
    return final


def _external_summary(folder: ModelFolder, ext: Path, cfg: FitConfig | None) -> dict[str, Any]:
    """The external figures of the folder's models (mean over runs), for the model card."""
    _, applied = apply_folder(folder, ext)
    rows = []
    # the figures of evaluate --external's records (undefined ones null: "–" in the card)
    for r in external_records(external_scores(folder, ext, applied, cfg or FitConfig())):
        if r.run is not None:
            continue
        rec: dict[str, Any] = {"method": r.method, "task": r.task, "n": r.n}
        figures = ((("auc", "auc_text"), ("brier", "brier_text"),
                    ("calibration_intercept", "cal_int_text"),
                    ("calibration_slope", "cal_slope_text")) if r.n_pos is not None
                   else (("r2", "r2_text"),))  # binary tasks, else continuous ones
        for name, key in figures:
            est, lo, hi = (getattr(r, f) for f in (name, f"{name}_ci_low", f"{name}_ci_high"))
            rec[name] = [est, lo, hi]
            rec[key] = ("–" if est is None else f"{est:.3f}" if lo is None or hi is None
                        else f"{est:.3f} [{lo:.3f}, {hi:.3f}]")
        rows.append(rec)
    return {"cohort": str(ext.resolve()), "fingerprint": cohort_fingerprint(ext),
            "n_patients": len(read_cohort(ext).patients), "records": rows}


# --- apply -------------------------------------------------------------------------------------

def _flags(folder: ModelFolder, cohort: Cohort, clinical: pd.DataFrame | None,
           embeddings: dict[str, pd.DataFrame], patients: np.ndarray) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {p: [] for p in patients}
    # the exams the model was fitted on (a folder written before they were recorded: the
    # cohort's own), so that a cohort without the model's exams is flagged
    exams = list(folder.dev.get("exams") or cohort.study.exam_names)
    phases = list(cohort.study.phase_names)
    have = {(str(p), str(e)) for p, e in cohort.exam_keys()}
    man = cohort.manifest
    got = {(str(p), str(e), str(ph)) for p, e, ph in zip(man["patient_id"], man["exam"],
                                                        man["phase"], strict=True)}
    for p in patients:
        missing_exams = [e for e in exams if (p, e) not in have]
        if missing_exams:
            flags[p].append("missing_exams:" + "+".join(missing_exams))
        gaps = [f"{e}/{ph}" for e in exams if (p, e) in have for ph in phases
                if (p, e, ph) not in got and (p, e, "dynamic") not in got]
        if gaps:
            flags[p].append("missing_phases:" + "+".join(gaps))
    if clinical is not None:
        for col, (lo, hi) in folder.dev.get("clinical_ranges", {}).items():
            if col not in clinical.columns:
                continue
            vals = clinical.groupby("patient_id")[col].agg(["min", "max"])
            out = vals[(vals["min"] < lo) | (vals["max"] > hi)].index
            for p in out:
                if p in flags:
                    flags[p].append(f"clinical_out_of_range:{col}")
    for ref in folder.runs:
        emb = embeddings.get(ref.key)
        if emb is None or ref.emb_mean is None:
            continue
        X = patient_matrix(emb, cohort, patients)
        d = _mahalanobis(X, ref.emb_mean, ref.emb_precision)
        pct = 100.0 * np.searchsorted(ref.dev_distances, d, side="right") / len(
            ref.dev_distances)
        for p, q in zip(patients, pct, strict=True):
            if q >= OUTLIER_PERCENTILE:
                flags[p].append(f"embedding_far_from_dev:{ref.key}")
    return flags


def _combine(rows: list[Any], kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean estimate over runs; interval from the within-run SE and the between-run spread."""
    est = np.mean([a.estimate for a in rows], axis=0)
    eta = np.stack([a.eta for a in rows])
    within = np.mean(np.stack([a.se for a in rows]) ** 2, axis=0)
    r = len(rows)
    between = eta.var(axis=0, ddof=1) * (1 + 1 / r) if r > 1 else 0.0
    se = np.sqrt(within + between)
    mid = eta.mean(axis=0)
    lo, hi = mid - Z95 * se, mid + Z95 * se
    if kind == "binary":
        lo, hi = 1 / (1 + np.exp(-lo)), 1 / (1 + np.exp(-hi))
    return est, np.minimum(lo, est), np.maximum(hi, est)


def apply_folder(folder: ModelFolder, cohort_path: str | os.PathLike[str],
                 embeddings: Mapping[str, pd.DataFrame] | None = None
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every model of ``folder`` applied to every patient of ``cohort_path``.

    Returns:
        ``(table, applied)``: the prediction table (:data:`PREDICTION_COLUMNS`) and, per
        :attr:`FittedModel.key`, the raw :class:`medimp.prognosis.fit.Applied` estimates.
    """
    cohort_path = Path(cohort_path)
    cohort = read_cohort(cohort_path)
    phases = list(cohort.study.phase_names)
    if phases != list(folder.dev["phases"]):
        raise PrognosisError(f"{cohort_path}: phases {phases} differ from the model's "
                             f"{folder.dev['phases']}; apply the model to a cohort acquired "
                             "with the same phases")
    check_runs(folder.runs)
    patients = np.array(sorted({str(p) for p, _ in cohort.exam_keys()}))
    if len(patients) == 0:
        raise PrognosisError(f"{cohort_path}: no patient with an imaged exam")
    embs = dict(embeddings or {})
    for ref in folder.runs:
        if ref.key not in embs:
            embs[ref.key] = _embed(Path(ref.path), cohort_path)
    clinical = clinical_table(folder.clinical, cohort) if folder.clinical is not None else None
    tables: dict[str, pd.DataFrame] = {}
    applied: dict[str, Any] = {}
    for fm in folder.models:
        table = _table_for(fm, clinical, embs, tables)
        X = patient_matrix(table, cohort, patients, fm.columns)
        applied[fm.key] = apply_model(fm, X, patients)
    flags = _flags(folder, cohort, clinical, embs, patients)
    return _prediction_rows(folder.models, applied, patients, flags), applied


def _table_for(fm: FittedModel, clinical: pd.DataFrame | None,
               embs: Mapping[str, pd.DataFrame], cache: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if fm.features == "clinical":
        if clinical is None:
            raise PrognosisError(f"{fm.key}: the model folder has no clinical preprocessing")
        return clinical
    key = fm.method if fm.run is None else f"{fm.method}#{fm.run}"
    emb = embs[key]
    if fm.features == "embedding":
        return emb
    if key not in cache:
        cache[key] = combine_tables(clinical, emb)[0]
    return cache[key]


def _prediction_rows(models: list[FittedModel], applied: Mapping[str, Any],
                     patients: np.ndarray, flags: Mapping[str, list[str]]) -> pd.DataFrame:
    groups: dict[tuple[str, str], list[FittedModel]] = {}
    for fm in models:
        groups.setdefault((fm.model, fm.task), []).append(fm)
    flag_text = np.array([";".join(flags.get(p, [])) for p in patients], dtype=object)
    parts = []
    for (model, task), fms in groups.items():
        est, lo, hi = _combine([applied[f.key] for f in fms], fms[0].kind)
        parts.append(pd.DataFrame({"patient_id": patients, "model": model, "task": task,
                                   "estimate": est, "low": lo, "high": hi,
                                   "flags": flag_text}))
        if len(fms) > 1:
            for f in fms:
                e, lo_r, hi_r = _combine([applied[f.key]], f.kind)
                parts.append(pd.DataFrame({"patient_id": patients, "model": f"{model}#{f.run}",
                                           "task": task, "estimate": e, "low": lo_r,
                                           "high": hi_r, "flags": flag_text}))
    return pd.concat(parts, ignore_index=True)[PREDICTION_COLUMNS]


def predict(model_dir: str | os.PathLike[str], cohort: str | os.PathLike[str],
            out: str | os.PathLike[str] | None = None, *, overwrite: bool = False
            ) -> pd.DataFrame:
    """Apply a model folder to a cohort (outcome columns may be absent or empty).

    Returns:
        One row per patient × model × task (:data:`PREDICTION_COLUMNS`); with several runs of
        a method, its row is the mean over runs and ``NAME#RUN`` rows give each run. ``out``:
        also written as CSV (atomically; an existing file only with ``overwrite``).

    Raises:
        PrognosisError: a model folder holding unexpected files, a run whose files changed,
            a cohort whose phases or clinical columns differ from the model's.
    """

    if out is not None and Path(model_dir).resolve() in Path(out).resolve().parents:
        raise PrognosisError(f"--out {out} is inside the model folder {model_dir}, which may "
                             "hold only its own files (the next predict would refuse it); "
                             "write the predictions elsewhere")
    if out is not None and Path(out).exists() and not overwrite:
        raise PrognosisError(f"{out} exists; pass --overwrite to replace it or choose another "
                             "--out")
    folder = read_model(model_dir)
    table, _ = apply_folder(folder, cohort)
    if out is not None:
        from medimp._io import atomic_write_text

        atomic_write_text(out, table.to_csv(index=False, lineterminator="\n"))
    return table


def evaluate_external(cohort_path: str | os.PathLike[str],
                      external_path: str | os.PathLike[str], methods: Mapping[str, Any],
                      cfg: FitConfig | None = None) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """Fit every model on DEV, apply to EXT and score it (no files written).

    Returns:
        ``(folder, scores, notes)``: the fitted :class:`medimp.prognosis.folder.ModelFolder`,
        :func:`external_scores`' rows and the notes (third-cohort runs).
    """
    cfg = cfg or FitConfig()
    dev, ext = Path(cohort_path), Path(external_path)
    notes = external_notes(dev, ext, methods)
    folder = build_folder(dev, methods, cfg)
    _, applied = apply_folder(folder, ext)
    return folder, external_scores(folder, ext, applied, cfg), notes
