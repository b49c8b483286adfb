"""``medimp evaluate --cohort DEV --external EXT``: the cross-validated evaluation of DEV plus
the external validation on EXT, in one output folder.

The folder is that of :func:`medimp.evaluate.evaluate` (same files, same ``--overwrite`` rule,
written beside and swapped in on success); ``metrics.json`` gains ``external`` records
(:class:`medimp.evaluate.metrics.ExternalRecord`, ``split: "external"``) and the header names
the external cohort. The figures come from :mod:`medimp.prognosis.external`, i.e. from the
models ``fit-prognosis`` writes, applied as ``predict`` applies them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from medimp._io import output_dir
from medimp.data.cohort.fingerprint import cohort_fingerprint
from medimp.evaluate import EvalConfig, EvalResult, evaluate
from medimp.evaluate.metrics import write_metrics
from medimp.evaluate.result import EVAL_OUTPUTS
from medimp.prognosis.external import external_notes, external_records
from medimp.prognosis.fit import FitConfig, PrognosisError
from medimp.prognosis.run import evaluate_external

__all__ = ["evaluate_with_external", "external_records", "fit_config"]


def fit_config(cfg: EvalConfig) -> FitConfig:
    """The fitting options that match an evaluation protocol (same grids, seed, horizons)."""
    return FitConfig(horizons=tuple(cfg.horizons), threshold=cfg.threshold, Cs=tuple(cfg.Cs),
                     ridge_alphas=tuple(cfg.ridge_alphas), pca_ks=tuple(cfg.pca_ks),
                     inner_splits=cfg.inner_splits, seed=cfg.seed,
                     continuous=cfg.continuous, survival_event=cfg.survival_event)


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
