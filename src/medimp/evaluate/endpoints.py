"""The clinic's questions inside the evaluation (docs/evaluate.md, "Continuous endpoints",
"Added value over the clinical table", "Calibration and decision curves"): records,
comparisons and tables of the fits of :mod:`medimp.evaluate.endpoint_fits`.

* ``egfr_yK`` regression tasks (:mod:`medimp.evaluate.regression`) for every method, on the
  outer folds of the binary task of the same horizon;
* ``clinical+NAME`` models (:mod:`medimp.evaluate.added`) for every image method, at
  ``EvalConfig.endpoint_level``, binary and continuous;
* Brier score and calibration on every binary record, calibration and decision-curve tables
  (:mod:`medimp.evaluate.calibration`);
* the paired comparisons ``clinical+NAME`` vs ``clinical_only`` (ΔAUC, ΔBrier, ΔR²) and the
  answer to "do the images add anything?".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medimp._io import atomic_path
from medimp.evaluate.added import PREFIX, added_value_answers
from medimp.evaluate.calibration import (
    brier,
    calibration_summary,
    calibration_table,
    decision_curve,
)
from medimp.evaluate.compare import PairedComparison, holm_verdicts, paired_comparison
from medimp.evaluate.config import REFERENCE_METHODS, EvalConfig
from medimp.evaluate.cv import TaskCV
from medimp.evaluate.endpoint_fits import (
    Combined,
    combined_members,
    run_added_binary,
    run_regression,
)
from medimp.evaluate.inputs import Inputs
from medimp.evaluate.intervals import corrected_interval, fold_metric
from medimp.evaluate.metrics import Comparison, RegressionRecord, Skipped
from medimp.evaluate.regression import (
    RegressionCVResult,
    RegressionTaskCV,
    fold_scores,
    regression_predictions,
)
from medimp.evaluate.scoring import auc

__all__ = [
    "Combined",
    "RegressionTaskCV",
    "add_calibration",
    "combined_members",
    "curve_tables",
    "learned",
    "paired",
    "regression_records",
    "run_added_binary",
    "run_regression",
    "settle",
]


#: Direction of each metric: a paired difference in favour of the first method is positive
#: for AUC and R², negative for the Brier score.
HIGHER_IS_BETTER = {"auc": True, "r2": True, "brier": False}


def paired(metric: str, values_a: np.ndarray, values_b: np.ndarray, test_train_ratio: float,
           *, learned: tuple[bool, bool] = (True, True)) -> PairedComparison:
    """Metric(a) - metric(b) on the same folds: :func:`medimp.evaluate.compare.paired_comparison`
    (seed-aware corrected resampled t, verdict) with the metric's direction.

    Args:
        metric: "auc", "r2" or "brier".
        values_a: ``[runs, J]`` fold values of method a.
        values_b: ``[runs, J]`` fold values of method b (the same folds).
        test_train_ratio: ``n_test / n_train`` of the outer folds.
        learned: whether each method's features come from a pretraining with a seed (one run
            of such a method is never decided).
    """
    return paired_comparison(values_a, values_b, test_train_ratio, learned=learned,
                             higher_is_better=HIGHER_IS_BETTER[metric])


def learned(cfg: EvalConfig, method: str) -> bool:
    """Whether ``method`` (or the images of ``clinical+NAME``) come from a seeded pretraining."""
    name = method.removeprefix(PREFIX)
    return name not in REFERENCE_METHODS and name not in cfg.fixed_methods



def _fin(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _regression_record(rtcv: RegressionTaskCV, values: dict[str, np.ndarray], *,
                       method: str, run: str | None, level: str,
                       n_samples: int) -> RegressionRecord | None:
    ratio = rtcv.test_train_ratio
    r2 = corrected_interval(values["r2"], ratio, clip=(-np.inf, 1.0))
    mae = corrected_interval(values["mae"], ratio, clip=(0.0, np.inf))
    rho = corrected_interval(values["spearman"], ratio, clip=(-1, 1))
    if not np.isfinite([r2.estimate, r2.low, r2.high, mae.estimate]).all():
        return None
    return RegressionRecord(
        task=rtcv.task, method=method, run=run, n_runs=r2.n_runs, n=len(rtcv.y),
        n_graft_loss=rtcv.n_graft_loss, r2=r2.estimate, r2_ci_low=r2.low, r2_ci_high=r2.high,
        r2_se=r2.se, r2_sd=r2.seed_sd, mae=mae.estimate, mae_ci_low=_fin(mae.low),
        mae_ci_high=_fin(mae.high), spearman=_fin(rho.estimate),
        spearman_ci_low=_fin(rho.low), spearman_ci_high=_fin(rho.high), level=level,
        n_samples=n_samples, horizon_years=rtcv.horizon)


def regression_records(inp: Inputs, rtcv: RegressionTaskCV
                       ) -> tuple[list[RegressionRecord], dict[tuple[str, str], np.ndarray]]:
    """Per-run records, per-method aggregates, and ``(method, level) -> [runs, J]`` R²."""
    records: list[RegressionRecord] = []
    grouped: dict[tuple[str, str], list[tuple[dict, RegressionCVResult]]] = {}
    for (key, level), res in rtcv.results.items():
        m = inp.members[key]
        vals = fold_scores(rtcv.y, res.predictions, rtcv.tests)
        rec = _regression_record(rtcv, vals, method=m.method, run=m.run, level=level,
                                 n_samples=res.n_samples)
        if rec is None:
            inp.skipped.append(Skipped(task=rtcv.task, method=m.method, run=m.run, reason=(
                f"{rtcv.task} {key} level={level}: R² undefined (constant target?)")))
            continue
        records.append(rec)
        grouped.setdefault((m.method, level), []).append((vals, res))
    r2: dict[tuple[str, str], np.ndarray] = {}
    for (method, level), runs in grouped.items():
        stacked = {name: np.stack([v[name] for v, _ in runs]) for name in runs[0][0]}
        r2[(method, level)] = stacked["r2"]
        if len(runs) > 1:
            agg = _regression_record(rtcv, stacked, method=method, run=None, level=level,
                                     n_samples=runs[0][1].n_samples)
            if agg is not None:
                records.append(agg)
        elif records and (rec := next((r for r in records if r.method == method
                                       and r.level == level), None)) and rec.run is not None:
            records.append(rec.model_copy(update={"run": None}))
    return records, r2


Pair = tuple[tuple[str, str, str, int, str, str, str], PairedComparison]
"""((task, level, probe, n, method, other, metric), comparison) before Holm."""


def settle(pairs: Sequence[Pair], family: Any) -> list[Comparison]:
    """Holm within each family (``family(key) -> hashable``), then the ``Comparison``
    records with their verdicts (:func:`medimp.evaluate.compare.holm_verdicts`)."""
    groups: dict[Any, list[int]] = {}
    for i, (key, _) in enumerate(pairs):
        groups.setdefault(family(key), []).append(i)
    done = [pc for _, pc in pairs]
    for idx in groups.values():
        hib = [HIGHER_IS_BETTER[pairs[i][0][6]] for i in idx]
        for i, pc in zip(idx, holm_verdicts([done[i] for i in idx], higher_is_better=hib),
                         strict=True):
            done[i] = pc
    return [Comparison(task=task, method=a, other=b, level=level, probe=probe, n=n,
                       metric=metric, **{f"{metric}_diff": pc.estimate},  # type: ignore[arg-type]
                       ci_low=pc.low, ci_high=pc.high, p_value=pc.p_value, se=pc.se,
                       n_runs=pc.n_runs, other_n_runs=pc.other_n_runs,
                       seed_variance=pc.seed_variance > 0, seed_var=pc.seed_variance,
                       min_detectable_diff=_fin(pc.min_detectable_diff), df=_fin(pc.df),
                       p_holm=pc.p_holm, verdict=pc.verdict)
            for ((task, level, probe, n, a, b, metric), _), pc in zip(pairs, done, strict=True)]


def _finite(pc: PairedComparison) -> bool:
    return bool(np.isfinite([pc.estimate, pc.low, pc.high, pc.p_value]).all())


def regression_comparisons(cfg: EvalConfig, rtcv: RegressionTaskCV,
                           r2: dict[tuple[str, str], np.ndarray]) -> list[Pair]:
    """R²(reference method) - R²(each other method), same task and level (seed-aware)."""
    ref, out = cfg.reference_method, []
    for (name, level), vals in r2.items():
        mine = r2.get((ref, level))
        if name == ref or name.startswith(PREFIX) or mine is None:
            continue
        pc = paired("r2", mine, vals, rtcv.test_train_ratio,
                    learned=(learned(cfg, ref), learned(cfg, name)))
        if _finite(pc):
            out.append(((rtcv.task, level, "ridge", len(rtcv.y), ref, name, "r2"), pc))
    return out


# --- added value ---------------------------------------------------------------------------------

def added_value_comparisons(cfg: EvalConfig, tcv: TaskCV | None,
                            scores: dict[tuple[str, str, str], list[np.ndarray]],
                            rtcv: RegressionTaskCV | None,
                            r2: dict[tuple[str, str], np.ndarray]) -> list[Pair]:
    """``clinical+NAME`` minus ``clinical_only`` at the endpoint level: ΔAUC and ΔBrier on the
    binary task, ΔR² on the continuous one."""
    level, out = cfg.endpoint_level, []
    if tcv is not None and (base := scores.get(("clinical_only", level, "logistic"))):
        for (name, lv, probe), runs in scores.items():
            if not name.startswith(PREFIX) or lv != level or probe != "logistic":
                continue
            for metric, fn in (("auc", auc), ("brier", brier)):
                va = np.stack([fold_metric(tcv.y, s, tcv.tests, fn) for s in runs])
                vb = np.stack([fold_metric(tcv.y, s, tcv.tests, fn) for s in base])
                pc = paired(metric, va, vb, tcv.test_train_ratio,
                            learned=(learned(cfg, name), False))
                if _finite(pc):
                    out.append(((tcv.task, level, "logistic", len(tcv.y), name,
                                 "clinical_only", metric), pc))
    if rtcv is not None and (base_r2 := r2.get(("clinical_only", level))) is not None:
        for (name, lv), vals in r2.items():
            if name.startswith(PREFIX) and lv == level:
                pc = paired("r2", vals, base_r2, rtcv.test_train_ratio,
                            learned=(learned(cfg, name), False))
                if _finite(pc):
                    out.append(((rtcv.task, level, "ridge", len(rtcv.y), name, "clinical_only",
                                 "r2"), pc))
    return out


# --- calibration ---------------------------------------------------------------------------

def _run_scores(inp: Inputs, tcv: TaskCV) -> dict[tuple[str, str | None, str, str], np.ndarray]:
    return {(inp.members[key].method, inp.members[key].run, level, probe): res.scores
            for (key, level, probe), res in tcv.results.items()}


def add_calibration(inp: Inputs, tcv: TaskCV, records: list,
                    scores: dict[tuple[str, str, str], list[np.ndarray]]) -> list:
    """Each binary record of ``tcv`` with its Brier score and calibration (with CIs)."""
    per_run = _run_scores(inp, tcv)
    out = []
    for rec in records:
        if rec.task != tcv.task:
            out.append(rec)
            continue
        runs = scores.get((rec.method, rec.level, rec.probe), []) if rec.run is None else []
        if rec.run is not None or len(runs) <= 1:
            one = per_run.get((rec.method, rec.run, rec.level, rec.probe))
            runs = [one] if one is not None else runs[:1]
        if not runs:
            out.append(rec)
            continue
        vals = np.stack([fold_metric(tcv.y, s, tcv.tests, brier) for s in runs])
        b = corrected_interval(vals, tcv.test_train_ratio, clip=(0, 1))
        cal = calibration_summary(tcv.y, runs)
        out.append(rec.model_copy(update={
            "brier": _fin(b.estimate), "brier_ci_low": _fin(b.low),
            "brier_ci_high": _fin(b.high),
            "calibration_intercept": _fin(cal.intercept),
            "calibration_intercept_ci_low": _fin(cal.intercept_low),
            "calibration_intercept_ci_high": _fin(cal.intercept_high),
            "calibration_slope": _fin(cal.slope),
            "calibration_slope_ci_low": _fin(cal.slope_low),
            "calibration_slope_ci_high": _fin(cal.slope_high)}))
    return out


def curve_tables(cfg: EvalConfig, tcv: TaskCV,
                 scores: dict[tuple[str, str, str], list[np.ndarray]]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Calibration groups and decision curves of every method at the endpoint level
    (logistic probe; runs of a method averaged)."""
    cal, dca = [], []
    for (method, level, probe), runs in scores.items():
        if level != cfg.endpoint_level or probe != "logistic":
            continue
        cal.append(calibration_table(tcv.y, runs).assign(task=tcv.task, method=method))
        dca.append(decision_curve(tcv.y, runs).assign(task=tcv.task, method=method))
    empty = pd.DataFrame()
    return (pd.concat(cal, ignore_index=True) if cal else empty,
            pd.concat(dca, ignore_index=True) if dca else empty)


# --- everything above, for evaluate() ------------------------------------------------------------

@dataclass
class Endpoints:
    """What the clinic's endpoints add to an evaluation."""

    records: list[RegressionRecord] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)  # R², reference method
    added: list[Comparison] = field(default_factory=list)
    answers: list = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # file name -> table

    def write(self, out_dir: Any) -> None:
        """The parquet tables into ``out_dir`` (each atomically)."""

        for name, table in self.tables.items():
            with atomic_path(out_dir / name) as tmp:
                table.to_parquet(tmp, index=False)


def without_combined(scores: dict) -> dict:
    """``scores`` without the ``clinical+NAME`` entries (they are compared with
    ``clinical_only`` only, not with the reference method)."""
    return {k: v for k, v in scores.items() if not k[0].startswith(PREFIX)}


def run_endpoints(cfg: EvalConfig, inp: Inputs, task_cvs: Sequence[TaskCV],
                  scores_by_task: dict[str, dict], combined: dict[str, Combined]) -> Endpoints:
    """Regression tasks, added-value comparisons and answers, calibration and curve tables.

    ``scores_by_task``: task -> ``(method, level, probe) -> [runs' scores]`` of the binary
    tasks (:func:`medimp.evaluate.result.task_records`), ``clinical+NAME`` models included.
    """
    out = Endpoints()
    rtcvs = []
    reg_pairs: list[Pair] = []
    added_pairs: list[Pair] = []
    for tcv in task_cvs:
        scores = scores_by_task.get(tcv.task, {})
        rtcv = run_regression(cfg, inp, tcv, combined) if cfg.continuous else None
        r2: dict[tuple[str, str], np.ndarray] = {}
        if rtcv is not None:
            rtcvs.append(rtcv)
            recs, r2 = regression_records(inp, rtcv)
            out.records += recs
            reg_pairs += regression_comparisons(cfg, rtcv, r2)
        if combined:
            added_pairs += added_value_comparisons(cfg, tcv, scores, rtcv, r2)
        if cfg.calibration:
            cal, dca = curve_tables(cfg, tcv, scores)
            for name, t in (("calibration.parquet", cal), ("decision_curves.parquet", dca)):
                if not t.empty:
                    prev = out.tables.get(name)
                    out.tables[name] = t if prev is None else pd.concat([prev, t],
                                                                         ignore_index=True)
    if rtcvs:
        out.tables["egfr_predictions.parquet"] = regression_predictions(inp.members, rtcvs)
    # Holm families: the R² table of one level (tasks × other methods), as the AUC table's;
    # the added value of one image method (its tasks × metrics), as its answer
    out.comparisons = settle(reg_pairs, lambda k: k[1])
    out.added = settle(added_pairs, lambda k: k[4])
    out.answers = added_value_answers(out.added)
    return out
