"""One self-contained HTML page from an evaluation folder.

``write_report(eval_dir)`` reads what :func:`medimp.evaluate.evaluate` wrote (``metrics.json``,
``predictions.parquet``, ``survival.parquet``, ``embeddings/``), the cohort named in the header,
and each run's ``history.csv``, and renders the jinja2 template
``medimp/report/templates/report.html.j2`` into ``report.html``. Every value is escaped by the
template (autoescape), every figure is a base64 PNG inside the page and there is no external
stylesheet, script or image, so the file can be mailed. Sections that lack their input (no runs,
no images, no prompts stage) say so and move on.
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
from medimp.evaluate.embeddings import feature_columns, level_data
from medimp.evaluate.labels import make_labels
from medimp.evaluate.metrics import MetricsFile, read_metrics
from medimp.report import figures
from medimp.report.figures import format_p

__all__ = ["render_report", "write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .55em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#666;
font-size:.9em}.best{font-weight:bold}code{background:#f4f4f4;padding:0 .2em}
"""


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


def _table(df: pd.DataFrame, index: bool = False) -> dict[str, list]:
    """A DataFrame as the template's table: column names and rows of text cells."""
    if index:
        df = df.reset_index()
    return {"columns": [str(c) for c in df.columns],
            "rows": [[_cell(v) for v in row] for row in df.astype(object).itertuples(index=False)]}


def _ci(v: float | None, lo: float | None, hi: float | None) -> str:
    if v is None:
        return "–"
    if lo is None or hi is None:
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _headline(metrics: MetricsFile, level: str, probe: str, field: str) -> pd.DataFrame:
    rows = [r for r in metrics.records if r.level == level and r.probe == probe
            and r.run is None]
    if not rows:
        return pd.DataFrame()
    cells = []
    for r in rows:
        if field == "auc":
            cell = _ci(r.auc, r.auc_ci_low, r.auc_ci_high)
        elif field == "balanced_accuracy":
            cell = _ci(r.balanced_accuracy, r.balanced_accuracy_ci_low,
                       r.balanced_accuracy_ci_high)
        else:
            cell = _ci(r.f1, r.f1_ci_low, r.f1_ci_high)
        if field == "auc" and r.n_runs > 1 and r.auc_sd is not None:
            cell += f" sd {r.auc_sd:.3f} ({r.n_runs} runs)"
        cells.append({"method": r.method, "task": f"{r.task} (n={r.n}, pos={r.n_pos})",
                      "cell": cell})
    table = pd.DataFrame(cells).pivot(index="method", columns="task", values="cell")
    order = [m for m in metrics.header.methods if m in table.index]  # methods as given
    table = table.loc[order + [m for m in table.index if m not in order]]
    table.columns.name = None
    return table


def _comparison_rows(metrics: MetricsFile) -> list:
    return [c for c in metrics.comparisons if c.level == "patient_mean" and c.probe == "logistic"]


def _decided(metrics: MetricsFile) -> dict[str, Any] | None:
    """Per task, the verdicts of the reference method in words, and the paired table."""
    comps = _comparison_rows(metrics)
    if not comps:
        return None
    ref = metrics.header.reference_method or ""
    sentences = []
    for task in dict.fromkeys(c.task for c in comps):
        rows = [c for c in comps if c.task == task]
        text = verdict_sentence(task, ref, [(c.other, c.verdict or "not decided")
                                            for c in rows])
        mde = np.median([c.min_detectable_diff for c in rows
                         if c.min_detectable_diff is not None] or [np.nan])
        sentences.append({"task": task, "n": rows[0].n,
                          "text": text.removeprefix(f"{task}: "),
                          "mde": float(mde) if np.isfinite(mde) else None})
    table = pd.DataFrame([{
        "task": c.task, "vs": c.other,
        "ΔAUC [95% CI]": f"{c.auc_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
        "p": format_p(c.p_value), "p (Holm)": "–" if c.p_holm is None else format_p(c.p_holm),
        "runs": f"{c.n_runs} vs {c.other_n_runs}",
        "seed variance in CI": "yes" if c.seed_variance else "no",
        "min. detectable ΔAUC": "–" if c.min_detectable_diff is None
        else f"{c.min_detectable_diff:.3f}", "verdict": c.verdict or "–"} for c in comps])
    caption = ("Paired test on the same folds: corrected repeated k-fold t of the per-fold AUC "
               "differences with, for methods with several pretraining runs, the variance "
               "between runs (the run × fold interaction counted once; docs/evaluate.md). "
               "Verdict: 'better'/'worse' when the p-value after Holm's adjustment over this "
               "table (every task × method) is below 0.05; a pretrained method with a single "
               "run is not decided, since the variance between seeds cannot be estimated. "
               "Minimal detectable ΔAUC: 80% power at α = 0.05 (noncentral t with the test's "
               "degrees of freedom).")
    return {"sentences": sentences, "table": _table(table), "caption": caption}


def _strip_png(metrics: MetricsFile) -> str | None:
    rows = [r for r in metrics.records if r.level == "patient_mean" and r.probe == "logistic"]
    if not any(r.run for r in rows):
        return None
    df = pd.DataFrame([r.model_dump() for r in rows])
    return figures.run_strip_plot(df, list(dict.fromkeys(df["task"])))


def _protocol_words(metrics: MetricsFile) -> list[dict[str, str]]:
    h = metrics.header
    p = h.protocol
    return [
        {"title": "Tasks", "text":
         f"For each horizon K in {h.horizons} years, a patient has poor graft status if the "
         f"eGFR at K years is below {h.threshold:g} mL/min/1.73 m² or the graft was lost "
         "before K years. Patients whose status is unknown are left out of that task "
         "(counts below)."},
        {"title": "Features", "text":
         "The encoders are frozen; each method's embeddings are probed as they are. "
         "clinical_only uses the clinical table at the exam (baseline and the exam's own "
         "measurements, nothing later); oracle uses the simulator's latent truth and is a "
         "ceiling, not a competitor."},
        {"title": "Cross-validation", "text":
         f"{p.get('cv', '')}. All exams of a patient are always on the same side of every "
         "split (checked for every fold)."},
        {"title": "Levels", "text":
         "patient_mean: one sample per patient, the mean of its exams' embeddings (headline); "
         f"patient_latest: its latest exam; exam: {p.get('exam_level', '')}."},
        {"title": "Probes", "text":
         "Standardisation + logistic regression whose penalty C is chosen by an inner "
         "patient-grouped CV on the training folds; and a k-NN probe (cosine, k chosen "
         "likewise)."},
        {"title": "Decision threshold", "text": f"{p.get('threshold_rule', '')}."},
        {"title": "Metrics", "text": f"{p.get('metrics', '')}."},
        {"title": "Paired test", "text": f"{p.get('paired_test', '')}."},
        {"title": "Survival", "text":
         "Penalised Cox model (lifelines) on PCA-reduced patient embeddings in the same "
         "grouped CV; C-index with bootstrap CI; Kaplan–Meier curves of the patients split at "
         "the median predicted risk, compared by a log-rank test."},
    ]


def _histories(metrics: MetricsFile) -> dict[str, pd.DataFrame]:
    out = {}
    for name, src in metrics.header.methods.items():
        runs = metrics.header.runs.get(name)
        f = Path(next(iter(runs.values())) if runs else src) / "history.csv"
        if f.is_file():
            try:
                h = pd.read_csv(f)
            except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
                continue
            if not h.empty and "epoch" in h.columns:  # random_init runs have no epochs
                out[name] = h
    return out


def _example_volumes(cohort: Cohort, n_exams: int = 2) -> list[dict[str, str]]:
    """Middle slices of every phase of the first patient's first exams (read by medimp.data)."""
    if cohort.manifest.empty:
        return []
    out = []
    pid = sorted(cohort.manifest["patient_id"].unique())[0]
    for exam in [e for p, e in cohort.exam_keys() if p == pid][:n_exams]:
        vols = {}
        for phase in cohort.phases_of(pid, exam):
            try:
                vol = cohort.read_volume(pid, exam, phase)
            except ValueError:  # a broken file must not stop the report
                continue
            if vol is not None and vol.array.ndim == 3:
                vols[phase] = vol.array
        if vols:
            out.append({"png": figures.volume_slices(vols, f"patient {pid}, exam {exam}"),
                        "alt": f"{pid} {exam}"})
        try:
            sel = cohort.dynamic_selection(pid, exam)
        except ValueError:  # its error is in `medimp validate`; the report goes on
            sel = None
        if sel is not None:
            out.append({"png": figures.dynamic_curve(sel.to_dict(),
                                                     f"patient {pid}, exam {exam}"),
                        "alt": f"{pid} {exam} dynamic curve"})
    return out


def _example_prompts(cohort: Cohort, n: int = 6) -> pd.DataFrame | None:
    from medimp.prompts import build_prompts

    try:
        prompts = build_prompts(cohort)
    except (ValueError, KeyError):  # cohort whose tables cannot make prompts
        return None
    if prompts.empty:
        return None
    first = prompts.drop_duplicates(["patient_id", "exam"]).head(n)
    return first[["patient_id", "exam", "variant", "prompt"]]


def _embedding_map(eval_dir: Path, cohort: Cohort | None,
                   metrics: MetricsFile) -> dict[str, Any]:
    """The 2D map's PNG, or why there is none."""
    if cohort is None:
        return {"map_png": None, "map_horizon": None, "map_missing": "Cohort not found."}
    emb_dir = eval_dir / "embeddings"
    if not emb_dir.is_dir() or not metrics.header.horizons:
        return {"map_png": None, "map_horizon": None, "map_missing": "No embeddings saved."}
    k = metrics.header.horizons[0]
    lab = make_labels(cohort, k, metrics.header.threshold).set_index("patient_id")["label"]
    panels = {}
    for f in sorted(emb_dir.glob("*.parquet")):
        if "#" in f.stem:  # a further pretraining run of a method: its first run is mapped
            continue
        df = pd.read_parquet(f)
        df["patient_id"] = df["patient_id"].astype(str)
        patients = np.array(sorted(set(df["patient_id"]) & set(lab.index)))
        if len(patients) < 3 or not feature_columns(df):
            continue
        try:
            data = level_data(df, "patient_mean", cohort, patients)
        except KeyError:
            continue
        panels[f.stem] = (data.X, lab.loc[data.patient_id].to_numpy())
    if not panels:
        return {"map_png": None, "map_horizon": k, "map_missing": "No embeddings to map."}
    return {"map_png": figures.embedding_map(panels, f"status at {k} y"), "map_horizon": k,
            "map_missing": None}


def _results(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any]:
    """Headline tables, the paired comparison, ROC curves and the full table."""
    head = _headline(metrics, "patient_mean", "logistic", "auc")
    secondary = []
    for field, title in (("balanced_accuracy", "Balanced accuracy"), ("f1", "F1")):
        t = _headline(metrics, "patient_mean", "logistic", field)
        if not t.empty:
            secondary.append({"title": title, "table": _table(t, index=True)})
    roc_png = None
    pred_path = eval_dir / "predictions.parquet"
    if pred_path.is_file():
        pred = pd.read_parquet(pred_path)
        pred = pred[(pred["level"] == "patient_mean") & (pred["probe"] == "logistic")]
        task_names = sorted(pred["task"].unique())
        if task_names:
            roc_png = figures.roc_curves(pred, task_names)
    full = pd.DataFrame([r.model_dump() for r in metrics.records])
    return {
        "headline_caption": "ROC AUC [95% bootstrap CI], patient-mean embeddings, logistic "
                            "probe. Other levels and the k-NN probe are in the full table "
                            "below.",
        "headline": _table(head, index=True) if not head.empty else None,
        "secondary": secondary, "notes": metrics.header.notes,
        "strip_png": _strip_png(metrics), "decided": _decided(metrics),
        "reference": str(metrics.header.reference_method), "roc_png": roc_png,
        "full_table": _table(full) if not full.empty else None,
    }


def _survival(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any] | None:
    """The Cox models with their KM curves."""
    if not metrics.survival:
        return None
    events = ", ".join(sorted(
        {"graft loss" if s.task == "graft_survival" else "graft loss or eGFR below the "
         "threshold at a yearly horizon" for s in metrics.survival}))
    surv = pd.DataFrame([s.model_dump() for s in metrics.survival])
    surv["logrank_p"] = [format_p(p) for p in surv["logrank_p"]]
    km_png = None
    surv_path = eval_dir / "survival.parquet"
    if surv_path.is_file():
        km = pd.read_parquet(surv_path)
        if "run" not in km.columns:
            km["run"] = ""
        first = km.groupby("method")["run"].first().to_dict()  # one panel per method
        km = km[km["run"] == km["method"].map(first)]
        pv = {s.method: s.logrank_p for s in metrics.survival
              if (s.run or "") == first.get(s.method)}
        km_png = figures.km_curves(km, pv)
    return {"events": events, "table": _table(surv), "km_png": km_png}


def _context(eval_dir: Path, metrics: MetricsFile) -> dict[str, Any]:
    h = metrics.header
    try:
        cohort: Cohort | None = read_cohort(Path(h.cohort))
    except (ValueError, OSError):  # cohort moved or changed: report what metrics.json holds
        cohort = None
    tasks = pd.DataFrame([t.model_dump() for t in h.tasks])
    hist = _histories(metrics)
    prompts = _example_prompts(cohort) if cohort is not None else None
    return {
        "css": _CSS, "cohort_name": Path(h.cohort).name, "version": h.medimp_version,
        "created": h.created, "cohort_path": h.cohort, "n_patients": h.n_patients,
        "n_exams": h.n_exams, "threshold": f"{h.threshold:g}",
        "tasks": _table(tasks) if not tasks.empty else None,
        "task_counts_png": figures.task_counts(tasks) if not tasks.empty else None,
        **_results(eval_dir, metrics),
        "survival": _survival(eval_dir, metrics),
        "retrieval": _table(pd.DataFrame([r.model_dump() for r in metrics.retrieval]))
        if metrics.retrieval else None,
        "training_png": figures.training_curves(hist) if hist else None,
        **_embedding_map(eval_dir, cohort, metrics),
        "prompts": _table(prompts) if prompts is not None else None,
        "volumes": _example_volumes(cohort) if cohort is not None else [],
        "skipped": _table(pd.DataFrame([s.model_dump() for s in metrics.skipped]))
        if metrics.skipped else None,
        "protocol": _protocol_words(metrics),
        "methods": _table(pd.DataFrame({"method": list(h.methods),
                                        "source": list(h.methods.values())})),
    }


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
