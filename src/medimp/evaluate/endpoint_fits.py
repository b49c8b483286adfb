"""The fits the clinic's endpoints add to an evaluation (docs/evaluate.md, "Continuous
endpoints", "Added value over the clinical table"): the ``clinical+NAME`` feature tables, their
cross-validation on the binary tasks, and the ``egfr_yK`` regression task of every method and
``clinical+NAME`` model on the binary task's folds. Records, comparisons and calibration of
their results are :mod:`medimp.evaluate.endpoints`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from medimp.evaluate.added import (
    PREFIX,
    CombinedLogisticProbe,
    added_name,
    combined_features,
)
from medimp.evaluate.config import REFERENCE_METHODS, EvalConfig
from medimp.evaluate.cv import TaskCV, cross_validate
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.inputs import Inputs, before_horizon, task_features
from medimp.evaluate.metrics import Skipped
from medimp.evaluate.probes import ProbeError
from medimp.evaluate.regression import (
    RegressionCVResult,
    RegressionTaskCV,
    RidgeProbe,
    cross_validate_regression,
    make_targets,
    regression_task_name,
)
from medimp.evaluate.replicates import Member

__all__ = ["Combined", "combined_members", "run_added_binary", "run_regression"]


# --- clinical+NAME members -----------------------------------------------------------------

@dataclass(frozen=True)
class Combined:
    """One ``clinical+NAME`` feature table (one per run of NAME)."""

    member: Member
    table: pd.DataFrame
    n_clinical: int


def combined_members(inp: Inputs) -> dict[str, Combined]:
    """``clinical+NAME`` tables for every image method's runs (none without clinical_only)."""
    clinical = inp.features.get("clinical_only")
    if clinical is None:
        return {}
    out: dict[str, Combined] = {}
    for key, m in list(inp.members.items()):
        if m.method in REFERENCE_METHODS or m.method.startswith(PREFIX):
            continue
        try:
            table, n_clin = combined_features(clinical, inp.features[key], m.key)
        except EvaluationError as exc:
            inp.skipped.append(Skipped(task="*", method=added_name(m.method), run=m.run,
                                       reason=str(exc)))
            continue
        member = Member(added_name(m.method), m.run, f"clinical table + {m.key}")
        out[member.key] = Combined(member, table, n_clin)
    return out


def _binary_job(c: Combined, tcv: TaskCV, cfg: EvalConfig, tables: Any):
    def probe() -> CombinedLogisticProbe:
        return CombinedLogisticProbe(c.n_clinical, ks=tuple(cfg.pca_ks), Cs=tuple(cfg.Cs),
                                     inner_splits=cfg.inner_splits, seed=cfg.seed)
    try:
        table = before_horizon(tables, c.table, tcv.horizon)  # no exam shows the outcome
        with threadpool_limits(1, user_api="blas"):
            return cross_validate(table, tcv.patients, tcv.y, level=cfg.endpoint_level,
                                  tables=tables, splits=tcv.splits, make_probe=probe)
    except (EvaluationError, ProbeError, KeyError) as exc:
        return str(exc)


def run_added_binary(cfg: EvalConfig, inp: Inputs, tcv: TaskCV,
                     combined: dict[str, Combined]) -> None:
    """Cross-validate every ``clinical+NAME`` model on a binary task (into ``tcv.results``,
    probe "logistic", level ``cfg.endpoint_level``; the members join ``inp.members``)."""
    if "logistic" not in cfg.probes:  # compared with clinical_only's logistic probe
        return
    keys = list(combined)
    outcomes = Parallel(n_jobs=cfg.n_jobs)(
        delayed(_binary_job)(combined[k], tcv, cfg, inp.tables) for k in keys)
    for key, res in zip(keys, outcomes, strict=True):
        m = combined[key].member
        if isinstance(res, str):
            inp.skipped.append(Skipped(task=tcv.task, method=m.method, run=m.run,
                                       reason=f"{tcv.task} {key}: {res}"))
            continue
        inp.members[key] = m
        tcv.results[(key, cfg.endpoint_level, "logistic")] = res


# --- continuous tasks ----------------------------------------------------------------------

def _regression_job(table: pd.DataFrame, rtcv: RegressionTaskCV, level: str, tables: Any,
                    probe: dict[str, Any]) -> RegressionCVResult | str:
    try:
        with threadpool_limits(1, user_api="blas"):
            return cross_validate_regression(table, rtcv.patients, rtcv.y, level=level,
                                             tables=tables, splits=rtcv.splits,
                                             make_probe=lambda: RidgeProbe(**probe))
    except (EvaluationError, ProbeError, KeyError) as exc:
        return str(exc)


def run_regression(cfg: EvalConfig, inp: Inputs, tcv: TaskCV,
                   combined: dict[str, Combined]) -> RegressionTaskCV | None:
    """The ``egfr_yK`` task of a binary task ``status_yK``: every method and each
    ``clinical+NAME`` at ``cfg.endpoint_level``, on the binary task's folds."""
    task = regression_task_name(tcv.horizon)
    try:
        tg = make_targets(inp.tables, tcv.horizon, inp.threshold).set_index("patient_id")
    except EvaluationError as exc:
        inp.skipped.append(Skipped(task=task, reason=f"task {task}: {exc}"))
        return None
    rows = tg.loc[tcv.patients]
    rtcv = RegressionTaskCV(task=task, horizon=tcv.horizon, patients=tcv.patients,
                            y=rows["target"].to_numpy(float), splits=tcv.splits,
                            n_graft_loss=int(rows["reason"].str.startswith("graft_loss").sum()))
    common = {"alphas": tuple(cfg.ridge_alphas), "inner_splits": cfg.inner_splits,
              "seed": cfg.seed}
    features = task_features(inp, tcv.horizon)  # exams before the horizon and the loss
    jobs = [(key, level, features[key],
             {**common, "method_kind": "clinical" if inp.impute[key] else "embedding"})
            for key in features for level in [cfg.endpoint_level]]
    jobs += [(key, cfg.endpoint_level, before_horizon(inp.tables, c.table, tcv.horizon),
              {**common, "method_kind": "combined", "n_clinical": c.n_clinical,
               "ks": tuple(cfg.pca_ks)}) for key, c in combined.items()]
    outcomes = Parallel(n_jobs=cfg.n_jobs)(
        delayed(_regression_job)(table, rtcv, level, inp.tables, probe)
        for _, level, table, probe in jobs)
    for (key, level, _, _), res in zip(jobs, outcomes, strict=True):
        if isinstance(res, str):
            m = combined[key].member if key in combined else inp.members[key]
            inp.skipped.append(Skipped(task=task, method=m.method, run=m.run,
                                       reason=f"{task} {key} level={level}: {res}"))
            continue
        if key in combined:
            inp.members[key] = combined[key].member
        rtcv.results[(key, level)] = res
    return rtcv
