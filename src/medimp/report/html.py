"""One self-contained HTML page from an evaluation folder, written for a transplant team.

``write_report(eval_dir)`` reads what :func:`medimp.evaluate.evaluate` wrote (``metrics.json``,
``predictions.parquet``, ``survival.parquet``, ``embeddings/``), the cohort named in the header,
and each run's ``model.json``/``history.csv``, and renders the jinja2 template
``medimp/report/templates/report.html.j2`` into ``report.html``: the answer first (question,
data, time zero, classes, the bottom line against the clinical table), the definition of the
prediction, added value, discrimination, calibration, absolute risks, survival, cohort flow,
protocol and limitations; the encoders' own checks in an appendix; a TRIPOD+AI checklist last.
Every value is escaped by the template (autoescape), every figure is a base64 PNG inside the
page and there is no external stylesheet, script or image, so the file can be mailed. A section
whose input is absent (an older ``metrics.json``, no runs, no images) says so and moves on.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from medimp._io import atomic_write_text
from medimp.data import Cohort, read_cohort
from medimp.evaluate.compare import verdict_sentence
from medimp.evaluate.metrics import MetricsFile, read_metrics
from medimp.report import appendix, figures, prediction, usefulness
from medimp.report.answer import added_value, answers, bottom_line, task_classes
from medimp.report.figures import format_p
from medimp.report.flow import cohort_flow
from medimp.report.tripod import checklist

__all__ = ["render_report", "write_report"]

HEADLINE = ("patient_mean", "logistic")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("medimp.report", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _cell(v: Any) -> str:
    """A table cell as text: missing as "–", floats to 4 decimals."""
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float | np.floating):
        return f"{float(v):.4f}"
    return str(v)


def _table(df: pd.DataFrame) -> dict[str, list]:
    """A DataFrame as the template's table: column names and rows of text cells."""
    return {"columns": [str(c) for c in df.columns],
            "rows": [[_cell(v) for v in row] for row in df.astype(object).itertuples(index=False)]}


def _ci(v: float | None, lo: float | None, hi: float | None, fmt: str = ".3f") -> str:
    if v is None:
        return "–"
    if lo is None or hi is None:
        return f"{v:{fmt}}"
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _attr(obj: Any, name: str) -> Any:
    return getattr(obj, name, None)


def _task_label(metrics: MetricsFile, task: str) -> str:
    t = next((t for t in metrics.header.tasks if t.task == task), None)
    if t is not None:
        return f"{t.horizon_years} years (n={t.n_known}, {t.n_pos} poor)"
    if task.startswith("egfr_y"):
        return f"eGFR at {task.removeprefix('egfr_y')} years"
    return task


def _external(metrics: MetricsFile) -> dict[str, Any] | None:
    """Models fitted on the whole development cohort, tested once on the external cohort."""
    records = list(_attr(metrics, "external") or [])
    if not records:
        return None

    def row(r) -> dict[str, str]:
        out = {"horizon": (f"{r.task.removeprefix('status_y')} years" if r.task.startswith(
            "status_y") else _task_label(metrics, r.task)),
            "method": r.method if r.run is None else f"{r.method} · {r.run}",
            "patients": str(r.n) + (f" ({r.n_pos} poor)" if r.n_pos is not None else "")}
        for field, label in (("auc", "AUC"), ("r2", "R²"), ("brier", "Brier"),
                             ("calibration_intercept", "calibration intercept"),
                             ("calibration_slope", "calibration slope"),
                             ("c_index", "Harrell's C")):
            out[label] = _ci(_attr(r, field), _attr(r, field + "_ci_low"),
                             _attr(r, field + "_ci_high"))
        return out

    own = pd.DataFrame([row(r) for r in records if r.run is None])
    runs = pd.DataFrame([row(r) for r in records if r.run is not None])
    own = own.loc[:, [c for c in own.columns if (own[c] != "–").any()]]
    return {"cohort": metrics.header.external_cohort or "not recorded",
            "table": _table(own), "runs": _table(runs) if not runs.empty else None}


def _method_table(metrics: MetricsFile, records: list, value) -> pd.DataFrame:
    """Methods (rows, in the order given) × tasks (columns) of ``value(record)`` strings."""
    if not records:
        return pd.DataFrame()
    df = pd.DataFrame([{"method": r.method if r.run is None else f"{r.method} · {r.run}",
                        "task": _task_label(metrics, r.task), "cell": value(r)}
                       for r in records])
    table = df.pivot(index="method", columns="task", values="cell")
    order = {m: i for i, m in enumerate(metrics.header.methods)}
    table = table.loc[sorted(table.index, key=lambda m: (order.get(m.split(" · ")[0], 99), m))]
    table.columns.name = None
    n_runs = {r.method: r.n_runs for r in records if r.run is None}
    if any(n > 1 for n in n_runs.values()):
        table.insert(0, "runs", [n_runs.get(m, 1) for m in table.index])
    return table.reset_index()


def _r2_cell(r) -> str:
    cell = _ci(r.r2, r.r2_ci_low, r.r2_ci_high)
    if r.n_runs > 1:
        cell += " †"
    cell += f"; MAE {r.mae:.1f}"
    return cell + (f"; ρ {r.spearman:.2f}" if r.spearman is not None else "")


def _auc_cell(r) -> str:
    cell = _ci(r.auc, r.auc_ci_low, r.auc_ci_high)
    if r.n_runs > 1:
        cell += f" † sd {r.auc_sd:.3f}" if r.auc_sd is not None else " †"
    return cell


def _results(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any]:
    """Discrimination: each method first, its runs folded away, then the paired tests."""
    p = metrics.header.protocol
    head = [r for r in metrics.records if (r.level, r.probe) == HEADLINE]
    own = [r for r in head if r.run is None]
    runs = [r for r in head if r.run is not None]
    interval = prediction.interval_name(metrics)
    caption = (f"ROC AUC: the mean over the {p.get('repeats', '?')} × {p.get('n_splits', '?')} "
               f"test folds of the patient-level AUC, with its 95% CI ({interval}). "
               "† marks a method with several pretraining runs: its value is the mean over "
               "runs, its CI includes the variance between runs, and sd is the spread of the "
               "runs' AUCs; a pretrained method with one run leaves its seed variance out "
               "(the clinical table and the oracle have none). "
               "Features: the mean over each patient's exams; logistic probe.")
    other = [{"title": title, "table": _table(_method_table(metrics, own, value))}
             for title, value in (
                 ("Balanced accuracy at the Youden threshold", lambda r: _ci(
                     r.balanced_accuracy, r.balanced_accuracy_ci_low,
                     r.balanced_accuracy_ci_high)),
                 ("F1 at the Youden threshold", lambda r: _ci(r.f1, r.f1_ci_low, r.f1_ci_high)))
             ] if own else []
    regression = [r for r in (_attr(metrics, "regression") or [])
                  if r.run is None and (r.level, r.probe) == ("patient_mean", "ridge")]
    roc_png = None
    pred = _predictions(eval_dir)
    if pred is not None and not pred.empty:
        roc_png = figures.roc_curves(pred, sorted(pred["task"].unique()))
    return {
        "caption": caption,
        "auc": _table(_method_table(metrics, own, _auc_cell)) if own else None,
        "runs": _table(_method_table(metrics, runs, lambda r: _ci(
            r.auc, r.auc_ci_low, r.auc_ci_high))) if runs else None,
        "other": other,
        "regression": _table(_method_table(metrics, regression, _r2_cell))
        if regression else None,
        "roc_png": roc_png, "decided": _decided(metrics), "notes": metrics.header.notes,
    }


def _decided(metrics: MetricsFile) -> dict[str, Any] | None:
    """The reference method against each other method: what is and is not decided."""
    comps = [c for c in metrics.comparisons if (c.level, c.probe) == HEADLINE
             and _attr(c, "auc_diff") is not None and c.method == metrics.header.reference_method]
    if not comps:
        return None
    ref = metrics.header.reference_method or ""
    sentences = []
    for task in dict.fromkeys(c.task for c in comps):
        rows = [c for c in comps if c.task == task]
        mde = [c.min_detectable_diff for c in rows if c.min_detectable_diff is not None]
        text = verdict_sentence(task, ref, [(c.other, _verdict_of(c)) for c in rows])
        sentences.append({"task": _task_label(metrics, task),
                          "text": text.removeprefix(f"{task}: "),
                          "mde": float(np.median(mde)) if mde else None})
    holm = any(_attr(c, "p_holm") is not None for c in comps)
    table = pd.DataFrame([{
        "task": c.task, "vs": c.other,
        "ΔAUC [95% CI]": f"{c.auc_diff:+.3f} " + (
            "[no CI]" if c.ci_low is None or c.ci_high is None
            else f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}]"),
        "p": format_p(c.p_value),
        **({"p (Holm)": "–" if c.p_holm is None else format_p(c.p_holm)} if holm else {}),
        "runs": f"{c.n_runs} vs {c.other_n_runs}",
        "seed variance in CI": "yes" if c.seed_variance else "no (one run each)",
        "min. detectable ΔAUC": _cell(c.min_detectable_diff),
        "verdict": _verdict_of(c)} for c in comps])
    return {"sentences": sentences, "table": _table(table), "holm": holm}


#: The verdict of a comparison that has neither a verdict nor an interval (an older file).
NO_CI_VERDICT = "not decided: metrics.json gives no 95% CI"


def _verdict_of(c: Any) -> str:
    """The comparison's verdict; a file written before verdicts existed: from its CI, and
    "not decided" when it has none."""
    given = _attr(c, "verdict")
    if given:
        return str(given)
    low, high = _attr(c, "ci_low"), _attr(c, "ci_high")
    if low is None or high is None:
        return NO_CI_VERDICT
    return ("better" if low > 0 else "worse" if high < 0 else
            "not decided: the 95% CI includes 0")


def _predictions(eval_dir: Path) -> pd.DataFrame | None:
    path = eval_dir / "predictions.parquet"
    if not path.is_file():
        return None
    pred = pd.read_parquet(path)
    return pred[(pred["level"] == HEADLINE[0]) & (pred["probe"] == HEADLINE[1])]


def _at_risk(km: pd.DataFrame) -> dict[str, list] | None:
    """Numbers at risk under the Kaplan–Meier curves: patients of each method's risk group
    still followed and event-free at 0, 1, 2, ... years."""
    if km.empty:
        return None
    years = np.arange(0, int(km["time_days"].max() / 365.25) + 1)
    rows = []
    for method, sub in km.groupby("method", sort=False):
        for grp, label in ((1, "high risk"), (0, "low risk")):
            t = sub.loc[sub["high_risk"] == grp, "time_days"].to_numpy(float) / 365.25
            rows.append([method, label, *(int(np.sum(t >= y)) for y in years)])
    return {"columns": ["method", "group", *(f"{y} y" for y in years)],
            "rows": [[str(v) for v in r] for r in rows]}


def _survival(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any] | None:
    """The Cox models: each method's C-index first, its runs folded away, KM with at-risk."""
    if not metrics.survival:
        return None

    def row(s) -> dict[str, Any]:
        c = _ci(s.c_index, s.c_index_ci_low, s.c_index_ci_high)
        if s.n_runs > 1 and s.c_index_sd is not None:
            c += f" † sd {s.c_index_sd:.3f}"
        return {"method": s.method if s.run is None else f"{s.method} · {s.run}",
                "patients": s.n, "events": s.n_events, "Harrell's C [95% CI]": c,
                "log-rank p (high vs low risk)": format_p(s.logrank_p)}

    own = [row(s) for s in metrics.survival if s.run is None]
    per_run = [row(s) for s in metrics.survival if s.run is not None]
    km_png = at_risk = None
    surv_path = eval_dir / "survival.parquet"
    if surv_path.is_file():
        km = pd.read_parquet(surv_path)
        if "run" not in km.columns:
            km["run"] = ""
        km["run"] = km["run"].fillna("")
        first = km.groupby("method")["run"].first().to_dict()  # one panel per method
        km = km[km["run"] == km["method"].map(first)]
        pv = {s.method: s.logrank_p for s in metrics.survival
              if (s.run or "") == first.get(s.method)}
        km_png = figures.km_curves(km, pv)
        at_risk = _at_risk(km)
    event = {"graft_loss": "graft loss", "poor_status": "graft loss or eGFR below the "
             "threshold at a yearly horizon"}.get(
        str(metrics.header.protocol.get("survival_event", "graft_loss")), "graft loss")
    return {"event": event, "table": _table(pd.DataFrame(own)),
            "runs": _table(pd.DataFrame(per_run)) if per_run else None, "km_png": km_png,
            "at_risk": at_risk,
            "interval": prediction.interval_name(metrics)}


def _usefulness(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any]:
    """Calibration, decision curves and absolute risks, their tables ready for the template."""
    use = usefulness.sections(eval_dir, metrics, _predictions(eval_dir))
    cal = use["calibration"]
    if cal is not None:
        for key in ("summary", "more"):
            cal[key] = _table(cal[key]) if cal[key] is not None else None
    for t in (use["risks"] or {}).get("tasks", []):
        t["groups"], t["thresholds"] = _table(t["groups"]), _table(t["thresholds"])
    return use


def _added(metrics: MetricsFile) -> dict[str, list[dict[str, Any]]]:
    """The added-value rows: the reference method's (its clinical+ model, else itself) first,
    every other candidate folded away."""
    ref = str(metrics.header.reference_method)
    found = added_value(metrics)
    main_name = (f"clinical+{ref}" if any(a.candidate == f"clinical+{ref}" for a in found)
                 else ref)
    rows = [dict(a.__dict__, short=a.short(), delta=a.delta(),
                 horizon=_task_label(metrics, a.task).split(" (")[0]) for a in found]
    return {"added": [r for r in rows if r["candidate"] == main_name],
            "added_more": [r for r in rows if r["candidate"] != main_name]}


def _simulated(metrics: MetricsFile, cohort: Cohort | None) -> bool | None:
    if cohort is not None:
        return cohort.truth is not None and not cohort.truth.empty
    return True if "oracle" in metrics.header.methods else None


def _context(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any]:
    h = metrics.header
    try:
        cohort: Cohort | None = read_cohort(Path(h.cohort))
    except (ValueError, OSError):  # cohort moved or changed: report what metrics.json holds
        cohort = None
    preds = prediction.predictors(cohort)
    names = (preds["transplant"] + preds["exam"]) if preds else None
    hist = appendix.histories(metrics)
    prompts = appendix.example_prompts(cohort) if cohort is not None else None
    full = pd.DataFrame([r.model_dump() for r in metrics.records])
    ctx: dict[str, Any] = {
        "css": _CSS, "cohort_name": Path(h.cohort).name, "version": h.medimp_version,
        "created": h.created, "cohort_path": h.cohort, "cohort_found": cohort is not None,
        "threshold": f"{h.threshold:g}", "horizons": h.horizons,
        "reference": str(h.reference_method), "simulated": _simulated(metrics, cohort),
        "classes": task_classes(metrics), "bottom_line": bottom_line(metrics),
        "answers": answers(metrics),
        "exams": prediction.exams_used(cohort), "predictors": preds,
        "method_sentences": prediction.method_sentences(metrics, names),
        "overlap": prediction.pretraining_overlap(metrics),
        **_added(metrics),
        "results": _results(eval_dir, metrics),
        **_usefulness(eval_dir, metrics),
        "survival": _survival(eval_dir, metrics),
        "external": _external(metrics),
        "flow": cohort_flow(metrics, cohort),
        "protocol": prediction.protocol_items(metrics),
        "interval": prediction.interval_name(metrics),
        "strip_png": appendix.strip_png(metrics),
        "retrieval": _table(pd.DataFrame([r.model_dump() for r in metrics.retrieval]))
        if metrics.retrieval else None,
        "training_png": figures.training_curves(hist) if hist else None,
        **appendix.embedding_map(eval_dir, cohort, metrics),
        "prompts": _table(prompts) if prompts is not None else None,
        "volumes": appendix.example_volumes(cohort) if cohort is not None else [],
        "full_table": _table(full) if not full.empty else None,
        "full_comparisons": _table(pd.DataFrame([c.model_dump() for c in metrics.comparisons]))
        if metrics.comparisons else None,
        "methods": _table(pd.DataFrame({"method": list(h.methods),
                                        "source": list(h.methods.values())})),
    }
    rendered = {"summary", "prediction", "flow", "protocol", "limitations"}
    rendered |= {key for key in ("added", "calibration", "decision", "risks", "external")
                 if ctx[key]}
    if ctx["results"]["auc"]:
        rendered.add("results")
    ctx["tripod"] = checklist(rendered)
    return ctx


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f4f4f4}img{max-width:100%}.note{color:#666;
font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
.answer{background:#f6f9fc;border:1px solid #c9d9ea;padding:.6em 1.1em;border-radius:4px}
.sim{background:#fff4e0;border:1px solid #f0c36d;padding:.3em .6em;border-radius:3px}
details{margin:.5em 0}summary{cursor:pointer;color:#235}
td.no{color:#a33}
"""


def render_report(eval_dir: str | os.PathLike[str]) -> str:
    """The report page of an evaluation folder, as HTML text."""
    eval_dir = Path(eval_dir)
    metrics = read_metrics(eval_dir / "metrics.json")
    return _environment().get_template("report.html.j2").render(_context(eval_dir, metrics))


def write_report(eval_dir: str | os.PathLike[str],
                 out_html: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML report of an evaluation folder; returns its path.

    Args:
        eval_dir: the ``out_dir`` of :func:`medimp.evaluate.evaluate`.
        out_html: where to write; default ``eval_dir/report.html``.
    """
    out_html = Path(out_html) if out_html else Path(eval_dir) / "report.html"
    atomic_write_text(out_html, render_report(eval_dir))
    return out_html
