"""Is the predicted risk right and useful? The report's calibration, decision-curve and
absolute-risk sections.

They show three models: the clinical table, the image method with the best mean headline AUC,
and that method's ``clinical+`` model when the evaluation has one. Calibration plots and
decision curves come from the evaluation's ``calibration.parquet`` / ``decision_curves.parquet``
when it wrote them; an evaluation without them gets both computed here from the out-of-fold
predictions (calibration: :func:`medimp.report.risks.risk_groups`; net benefit:
:func:`medimp.evaluate.calibration.decision_curve`), and the caption says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimp.evaluate.calibration import decision_curve
from medimp.evaluate.metrics import MetricsFile
from medimp.report import figures, risks
from medimp.report.answer import CLINICAL

__all__ = ["focus_methods", "sections"]

HEADLINE = ("patient_mean", "logistic")


def _attr(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def _ci(v: float | None, lo: float | None, hi: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if lo is None or hi is None else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def _own_records(metrics: MetricsFile) -> dict[tuple[str, str], Any]:
    return {(r.task, r.method): r for r in metrics.records
            if (r.level, r.probe) == HEADLINE and r.run is None}


def focus_methods(metrics: MetricsFile) -> list[str]:
    """The clinical table, the best image method (mean headline AUC) and its combined model."""
    auc: dict[str, list[float]] = {}
    for (_, method), r in _own_records(metrics).items():
        auc.setdefault(method, []).append(r.auc)
    images = {m: float(np.mean(v)) for m, v in auc.items()
              if m not in (CLINICAL, "oracle") and not m.startswith("clinical+")}
    best = max(images, key=images.__getitem__) if images else None
    picks = [CLINICAL, best, f"clinical+{best}" if best else None]
    return [m for m in picks if m is not None and m in auc]


def _read(path: Path, focus: list[str]) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    table = pd.read_parquet(path)
    return table[table["method"].isin(focus)] if "method" in table.columns else None


def _calibration(eval_dir: Path, metrics: MetricsFile, per_patient: dict, focus: list[str],
                 labels: dict[str, str]) -> dict[str, Any] | None:
    table = _read(eval_dir / "calibration.parquet", focus)
    source = "the evaluation's calibration table (groups of equal size)"
    if table is None:
        rows = [risks.risk_groups(r).rename(columns={"mean_risk": "mean_predicted"})
                .assign(task=task, method=m) for (task, m), r in per_patient.items()]
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        source = "the out-of-fold predictions, in fixed predicted-risk groups"
    if table.empty:
        return None
    recs = _own_records(metrics)
    fits = {(t, m): (r.calibration_intercept, r.calibration_slope) for (t, m), r in recs.items()
            if _attr(r, "calibration_slope") is not None
            and _attr(r, "calibration_intercept") is not None}
    tasks = list(dict.fromkeys(table["task"]))
    table = table.assign(task=table["task"].map(lambda t: labels.get(t, t)))
    png = figures.calibration_plot(table, [labels.get(t, t) for t in tasks],
                                   {(labels.get(t, t), m): v for (t, m), v in fits.items()})
    fields = [("brier", "Brier score"), ("calibration_intercept", "calibration intercept"),
              ("calibration_slope", "calibration slope")]
    rows = [{"horizon": labels.get(t, t), "method": m,
             **{label: _ci(_attr(r, f), _attr(r, f + "_ci_low"), _attr(r, f + "_ci_high"))
                for f, label in fields}}
            for (t, m), r in sorted(recs.items()) if _attr(r, "brier") is not None]
    summary = pd.DataFrame([r for r in rows if r["method"] in focus]) if rows else None
    more = pd.DataFrame([r for r in rows if r["method"] not in focus])
    return {"png": png, "source": source, "summary": summary,
            "more": more if not more.empty else None}


def _decision(eval_dir: Path, per_patient: dict, focus: list[str],
              labels: dict[str, str]) -> dict[str, Any] | None:

    table = _read(eval_dir / "decision_curves.parquet", focus)
    source = "the evaluation's decision-curve table (net benefit averaged over CV repeats)"
    if table is None:
        rows = [decision_curve(r["label"].to_numpy(int), [r["risk"].to_numpy(float)])
                .assign(task=task, method=m) for (task, m), r in per_patient.items()]
        table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
        source = ("the out-of-fold predictions (each patient's risk averaged over the CV "
                  "repeats)")
    if table.empty:
        return None
    tasks = list(dict.fromkeys(table["task"]))
    table = table.assign(task=table["task"].map(lambda t: labels.get(t, t)))
    return {"png": figures.decision_curve_plot(table, [labels.get(t, t) for t in tasks]),
            "source": source}


def _risk_tables(per_patient: dict, labels: dict[str, str]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, list]] = {}
    for (task, m), pr in per_patient.items():
        entry = out.setdefault(task, {"groups": [], "thresholds": []})
        entry["groups"] += [{
            "method": m, "predicted risk": g.group, "patients": g.n,
            "mean predicted": f"{g.mean_risk:.0%}",
            "observed poor status": f"{g.events}/{g.n} = {g.observed:.0%} "
            f"[{g.observed_low:.0%}, {g.observed_high:.0%}]"}
            for g in risks.risk_groups(pr).itertuples()]
        entry["thresholds"] += [{
            "method": m, "risk ≥": f"{t.threshold:.0%}", "called high risk": t.positives,
            "sensitivity": _pct(t.sensitivity), "specificity": _pct(t.specificity),
            "PPV": _pct(t.ppv), "NPV": _pct(t.npv)}
            for t in risks.threshold_table(pr).itertuples()]
    return [{"task": labels.get(task, task), "groups": pd.DataFrame(v["groups"]),
             "thresholds": pd.DataFrame(v["thresholds"])} for task, v in out.items()]


def sections(eval_dir: Path, metrics: MetricsFile, predictions: pd.DataFrame | None
             ) -> dict[str, Any]:
    """``calibration``, ``decision``, ``risks`` (None where there is nothing to show) and
    ``focus`` (the methods they show). Tables are DataFrames; the caller renders them."""
    focus = focus_methods(metrics)
    labels = {t.task: f"{t.horizon_years} years" for t in metrics.header.tasks}
    per_patient = {}
    if predictions is not None and not predictions.empty:
        for task in sorted(predictions["task"].unique()):
            for m in focus:
                pr = risks.patient_risks(predictions, task, m)
                if not pr.empty:
                    per_patient[(task, m)] = pr
    tables = _risk_tables(per_patient, labels)
    return {
        "calibration": _calibration(eval_dir, metrics, per_patient, focus, labels),
        "decision": _decision(eval_dir, per_patient, focus, labels),
        "risks": {"tasks": tables, "thresholds": [f"{t:.0%}" for t in risks.THRESHOLDS]}
        if tables else None,
        "focus": focus,
    }
