"""Reference feature tables: ``clinical_only`` and ``oracle``.

Both return the embeddings-table layout (``patient_id``, ``exam``, ``level`` = "exam", features)
so that they go through exactly the same probes and splits as learned embeddings.

* ``clinical_only``: the clinical table at the exam — baseline variables known at transplant
  (``study.baseline_columns`` and text variables with ``known_at: transplant``) and the exam's
  own measurements (``study.exam_columns`` and text variables with ``known_at: exam``), built
  by :class:`medimp.data.pipeline.features.ClinicalFeatures`, as ``tabular_clip``'s input is.
  Nothing measured after the exam, and no outcome column, ever enters.
* ``oracle``: the simulator's latent truth (``truth.csv``) at the exam. This module is the only
  place in medimp that reads it, and only to draw the ceiling row of the comparison.
"""

from __future__ import annotations

import pandas as pd

from medimp.data import Cohort
from medimp.data.pipeline.features import ClinicalFeatures
from medimp.evaluate.errors import EvaluationError

__all__ = ["clinical_features", "oracle_features"]


def clinical_features(tables: Cohort) -> pd.DataFrame:
    """The clinical table at each imaged exam, in the embeddings-table layout.

    The features are :class:`medimp.data.pipeline.features.ClinicalFeatures` (``"all"``): the one
    clinical feature builder, whose known-at rule is :meth:`medimp.data.Cohort.value_at`.
    Missing values are left as NaN: the probe imputes them from its training folds.
    """
    keys = tables.exam_keys()
    builder = ClinicalFeatures("all").fit(tables, keys)
    if not builder.features_:
        raise EvaluationError(
            f"{tables.root / 'study.yaml'}: no clinical columns to use (baseline_columns, "
            "exam_columns and variables are empty or absent from the tables)"
        )
    out = builder.transform(tables, keys)
    out.insert(2, "level", "exam")
    return out


def oracle_features(tables: Cohort) -> pd.DataFrame | None:
    """The latent truth at each exam (``truth.csv``), or ``None`` for a real cohort."""
    truth = tables.truth
    if truth is None or truth.empty:
        return None
    cols = [c for c in truth.columns if c not in ("patient_id", "exam", "level")]
    num = truth[cols].apply(pd.to_numeric, errors="coerce")
    num = num.loc[:, num.notna().any() & (num.std(skipna=True) > 0)]
    if num.empty:
        return None
    keys = truth[["patient_id", "exam"]] if "exam" in truth.columns else truth[["patient_id"]]
    out = pd.concat([keys.reset_index(drop=True), num.reset_index(drop=True)], axis=1)
    if "exam" not in out.columns:  # per-patient truth: the same values at every imaged exam
        out = tables.imaged_exams()[["patient_id", "exam"]].merge(out, on="patient_id")
    out = out.merge(tables.imaged_exams()[["patient_id", "exam"]], on=["patient_id", "exam"])
    out.insert(2, "level", "exam")
    return out
