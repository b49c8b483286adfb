"""``medimp evaluate --cohort DEV --external EXT``: the cross-validated evaluation of DEV plus
the external validation on EXT, in one output folder.

The folder is that of :func:`medimp.evaluate.evaluate` (same files, same ``--overwrite`` rule,
written beside and swapped in on success); ``metrics.json`` gains ``external`` records
(:class:`medimp.evaluate.metrics.ExternalRecord`, ``split: "external"``) and the header names
the external cohort. The figures come from :mod:`medimp.prognosis.external`, i.e. from the
models ``fit-prognosis`` writes, applied as ``predict`` applies them.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimp._io import output_dir
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.evaluate import EvalConfig, EvalResult, evaluate
from medimp.evaluate.metrics import ExternalRecord, write_metrics
from medimp.evaluate.result import EVAL_OUTPUTS
from medimp.prognosis.external import external_notes
from medimp.prognosis.fit import FitConfig, PrognosisError
from medimp.prognosis.run import evaluate_external

__all__ = ["evaluate_with_external", "external_records", "fit_config"]


def fit_config(cfg: EvalConfig) -> FitConfig:
    """The fitting options that match an evaluation protocol (same grids, seed, horizons)."""
    return FitConfig(horizons=tuple(cfg.horizons), threshold=cfg.threshold, Cs=tuple(cfg.Cs),
                     ridge_alphas=tuple(cfg.ridge_alphas), pca_ks=tuple(cfg.pca_ks),
                     inner_splits=cfg.inner_splits, seed=cfg.seed,
                     continuous=cfg.continuous, survival_event=cfg.survival_event)


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


def evaluate_with_external(  # noqa: PLR0917 - the order of medimp.evaluate.evaluate
        cohort_path: str | os.PathLike[str], external_path: str | os.PathLike[str],
        methods: Mapping[str, Any], out_dir: str | os.PathLike[str],
        config: EvalConfig | None = None, progress: bool = False, *,
        overwrite: bool = False) -> EvalResult:
    """Cross-validate on DEV and validate externally on EXT (see the module docstring).

    Raises:
        PrognosisError: EXT is DEV, or a run was pretrained on EXT (leakage), before any work.
    """

    cfg = config or EvalConfig()
    dev, ext = Path(cohort_path), Path(external_path)
    if not (ext / "study.yaml").is_file():
        raise PrognosisError(f"--external {ext}: not a cohort directory (no study.yaml)")
    notes = external_notes(dev, ext, methods)  # refuses leakage before any work
    final = Path(out_dir)
    sources = [s for m in methods.values() for s in (m if isinstance(m, list | tuple) else [m])]
    keep = [dev, ext, *(s for s in sources if isinstance(s, str | os.PathLike))]
    with output_dir(final, overwrite=overwrite, what="evaluation folder", error=PrognosisError,
                    keep=keep, ours=EVAL_OUTPUTS) as tmp:
        res = evaluate(dev, methods, tmp / "_cv", cfg, progress)
        for entry in (tmp / "_cv").iterdir():
            shutil.move(str(entry), str(tmp / entry.name))
        (tmp / "_cv").rmdir()
        _, scores, _ = evaluate_external(dev, ext, methods, fit_config(cfg))
        header = res.metrics.header.model_copy(update={
            "external_cohort": str(ext.resolve()),
            "external_fingerprint": cohort_fingerprint(ext),
            "notes": [*res.metrics.header.notes, *notes]})
        metrics = res.metrics.model_copy(update={"header": header,
                                                 "external": external_records(scores)})
        write_metrics(metrics, tmp / "metrics.json")
    return replace(res, out_dir=final, metrics_path=final / "metrics.json", metrics=metrics)
