"""One self-contained HTML page from an evaluation folder.

``write_report(eval_dir)`` reads what :func:`medimp.evaluate.evaluate` wrote (``metrics.json``,
``predictions.parquet``, ``survival.parquet``, ``embeddings/``), the cohort named in the header,
and each run's ``history.csv``, and writes ``report.html``: every figure is a base64 PNG inside
the page and there is no external stylesheet, script or image, so the file can be mailed.
Sections that lack their input (no runs, no images, no prompts stage) say so and move on.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import pandas as pd

from medimp._io import atomic_write_text
from medimp.data import Cohort, read_cohort
from medimp.evaluate.embeddings import feature_columns, level_data
from medimp.evaluate.labels import make_labels
from medimp.evaluate.metrics import MetricsFile, read_metrics
from medimp.report import figures
from medimp.report.figures import format_p

__all__ = ["write_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .55em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#666;
font-size:.9em}.best{font-weight:bold}code{background:#f4f4f4;padding:0 .2em}
"""


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, escape=True, border=0, na_rep="–")


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
    return table.loc[order + [m for m in table.index if m not in order]]


def _comparison_rows(metrics: MetricsFile) -> list:
    return [c for c in metrics.comparisons if c.level == "patient_mean" and c.probe == "logistic"]


def _decided_sentences(metrics: MetricsFile) -> list[str]:
    """One sentence per task: which differences of the reference method are significant."""
    ref = html.escape(str(metrics.header.reference_method))
    out = []
    comps = _comparison_rows(metrics)
    for task in dict.fromkeys(c.task for c in comps):
        rows = [c for c in comps if c.task == task]

        def names(sel, rows=rows) -> str:
            return ", ".join(f"{html.escape(c.other)} ({c.auc_diff:+.3f} "
                             f"[{c.ci_low:+.3f}, {c.ci_high:+.3f}])" for c in rows if sel(c))

        better, worse = names(lambda c: c.ci_low > 0), names(lambda c: c.ci_high < 0)
        open_ = ", ".join(html.escape(c.other) for c in rows if c.ci_low <= 0 <= c.ci_high)
        mde = np.median([c.min_detectable_diff for c in rows
                         if c.min_detectable_diff is not None] or [np.nan])
        parts = [f"<b>{html.escape(task)}</b>:"]
        parts.append(f"{ref} is better than {better};" if better else
                     f"{ref} is better than no method;")
        if worse:
            parts.append(f"worse than {worse};")
        parts.append(f"not decided against {open_}." if open_ else "every difference is decided.")
        if np.isfinite(mde):
            parts.append(f"At n = {rows[0].n} patients a true ΔAUC smaller than about "
                         f"{mde:.2f} would usually go undetected (80% power, α = 0.05).")
        out.append(" ".join(parts))
    return out


def _decided_section(metrics: MetricsFile) -> str:
    comps = _comparison_rows(metrics)
    if not comps:
        return ""
    ref = html.escape(str(metrics.header.reference_method))
    table = pd.DataFrame([{
        "task": c.task, "vs": c.other,
        "ΔAUC [95% CI]": f"{c.auc_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
        "p": format_p(c.p_value), "runs": f"{c.n_runs} vs {c.other_n_runs}",
        "seed variance in CI": "yes" if c.seed_variance else "no",
        "min. detectable ΔAUC": "–" if c.min_detectable_diff is None
        else f"{c.min_detectable_diff:.3f}"} for c in comps])
    parts = [f"<h3>What is and is not decided: {ref} minus each method</h3>",
             '<p class="note">Paired test on the same folds: corrected resampled t of the '
             "per-fold AUC differences plus the DeLong variance of the pooled difference and, "
             "for methods with several pretraining runs, the variance between runs "
             "(docs/evaluate.md). Significant: the 95% CI excludes 0 (no correction for "
             "multiple comparisons). The minimal detectable ΔAUC is 2.8 × SE.</p>",
             "<ul>" + "".join(f"<li>{s}</li>" for s in _decided_sentences(metrics)) + "</ul>",
             _table(table)]
    return "\n".join(parts)


def _strip_section(metrics: MetricsFile) -> str:
    rows = [r for r in metrics.records if r.level == "patient_mean" and r.probe == "logistic"]
    if not any(r.run for r in rows):
        return ""
    df = pd.DataFrame([r.model_dump() for r in rows])
    tasks = list(dict.fromkeys(df["task"]))
    return ("<h3>Pretraining runs</h3>" + _img(figures.run_strip_plot(df, tasks), "runs")
            + '<p class="note">Grey: the AUC of each pretraining run (seed); red: the '
            "method's mean over runs with its seed-aware 95% CI.</p>")


def _protocol_words(metrics: MetricsFile) -> str:
    h = metrics.header
    p = h.protocol
    items = [
        f"<b>Tasks.</b> For each horizon K in {h.horizons} years, a patient has <i>poor graft "
        f"status</i> if the eGFR at K years is below {h.threshold:g} mL/min/1.73 m² or the graft "
        "was lost before K years. Patients whose status is unknown are left out of that task "
        "(counts below).",
        "<b>Features.</b> The encoders are frozen; each method's embeddings are probed as they "
        "are. <code>clinical_only</code> uses the clinical table at the exam (baseline and the "
        "exam's own measurements, nothing later); <code>oracle</code> uses the simulator's "
        "latent truth and is a ceiling, not a competitor.",
        f"<b>Cross-validation.</b> {html.escape(str(p.get('cv', '')))}. All exams of a patient "
        "are always on the same side of every split (checked for every fold).",
        "<b>Levels.</b> <code>patient_mean</code>: one sample per patient, the mean of its exams' "
        "embeddings (headline); <code>patient_latest</code>: its latest exam; <code>exam</code>: "
        f"{html.escape(str(p.get('exam_level', '')))}.",
        "<b>Probes.</b> Standardisation + logistic regression whose penalty C is chosen by an "
        "inner patient-grouped CV on the training folds; and a k-NN probe (cosine, k chosen "
        "likewise).",
        f"<b>Decision threshold.</b> {html.escape(str(p.get('threshold_rule', '')))}.",
        f"<b>Metrics.</b> {html.escape(str(p.get('metrics', '')))}.",
        f"<b>Paired test.</b> {html.escape(str(p.get('paired_test', '')))}.",
        "<b>Survival.</b> Penalised Cox model (lifelines) on PCA-reduced patient embeddings in the "
        "same grouped CV; C-index with bootstrap CI; Kaplan–Meier curves of the patients split at "
        "the median predicted risk, compared by a log-rank test.",
    ]
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


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


def _example_volumes(tables: Cohort, n_exams: int = 2) -> list[str]:
    """Middle slices of every phase of the first patient's first exams (read by medimp.data)."""
    cohort = tables
    if tables.manifest.empty:
        return []
    out = []
    pid = sorted(tables.manifest["patient_id"].unique())[0]
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
            out.append(_img(figures.volume_slices(vols, f"patient {pid}, exam {exam}"),
                            f"{pid} {exam}"))
        try:
            sel = cohort.dynamic_selection(pid, exam)
        except ValueError:  # its error is in `medimp validate`; the report goes on
            sel = None
        if sel is not None:
            out.append(_img(figures.dynamic_curve(sel.to_dict(), f"patient {pid}, exam {exam}"),
                            f"{pid} {exam} dynamic curve"))
    return out


def _example_prompts(tables: Cohort, n: int = 6) -> pd.DataFrame | None:
    from medimp.prompts import build_prompts

    try:
        prompts = build_prompts(tables)
    except (ValueError, KeyError):  # cohort whose tables cannot make prompts
        return None
    if prompts.empty:
        return None
    first = prompts.drop_duplicates(["patient_id", "exam"]).head(n)
    return first[["patient_id", "exam", "variant", "prompt"]]


def _map_section(eval_dir: Path, tables: Cohort, metrics: MetricsFile) -> str:
    emb_dir = eval_dir / "embeddings"
    if not emb_dir.is_dir() or not metrics.header.horizons:
        return '<p class="note">No embeddings saved.</p>'
    k = metrics.header.horizons[0]
    lab = make_labels(tables, k, metrics.header.threshold).set_index("patient_id")["label"]
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
            data = level_data(df, "patient_mean", tables, patients)
        except KeyError:
            continue
        panels[f.stem] = (data.X, lab.loc[data.patient_id].to_numpy())
    if not panels:
        return '<p class="note">No embeddings to map.</p>'
    b64 = figures.embedding_map(panels, f"status at {k} y")
    return _img(b64, "embedding map") + (
        f'<p class="note">Patient-mean embeddings, coloured by graft status at {k} years.</p>')


def _cohort_section(metrics: MetricsFile) -> list[str]:
    h = metrics.header
    parts = ["<h2>Cohort</h2>"]
    parts.append(f"<p>{h.n_patients} patients, {h.n_exams} imaged exams; poor status = eGFR "
                 f"&lt; {h.threshold:g} or graft loss before the horizon.</p>")
    tasks = pd.DataFrame([t.model_dump() for t in h.tasks])
    if not tasks.empty:
        parts.append(_table(tasks))
        parts.append(_img(figures.task_counts(tasks), "task counts"))
    return parts


def _results_section(eval_dir: Path, metrics: MetricsFile) -> list[str]:
    """Headline tables, the paired comparison, ROC curves and the full table."""
    h = metrics.header
    parts = ["<h2>Results: methods × tasks</h2>"]
    parts.append('<p class="note">ROC AUC [95% bootstrap CI], patient-mean embeddings, logistic '
                 "probe. Other levels and the k-NN probe are in the full table below.</p>")
    head = _headline(metrics, "patient_mean", "logistic", "auc")
    parts.append(_table(head, index=True) if not head.empty else
                 '<p class="note">No task could be evaluated (see "Skipped").</p>')
    for field, title in (("balanced_accuracy", "Balanced accuracy"), ("f1", "F1")):
        t = _headline(metrics, "patient_mean", "logistic", field)
        if not t.empty:
            parts.append(f"<h3>{title}</h3>" + _table(t, index=True))
    if h.notes:
        parts.append("<ul>" + "".join(f'<li class="note">{html.escape(n)}</li>'
                                      for n in h.notes) + "</ul>")
    parts.append(_strip_section(metrics))
    parts.append(_decided_section(metrics))
    pred_path = eval_dir / "predictions.parquet"
    if pred_path.is_file():
        pred = pd.read_parquet(pred_path)
        pred = pred[(pred["level"] == "patient_mean") & (pred["probe"] == "logistic")]
        task_names = sorted(pred["task"].unique())
        if task_names:
            parts.append("<h3>ROC curves</h3>")
            parts.append(_img(figures.roc_curves(pred, task_names), "ROC curves"))
    full = pd.DataFrame([r.model_dump() for r in metrics.records])
    if not full.empty:
        parts.append("<details><summary>Full table (all levels and probes)</summary>"
                     + _table(full.round(4)) + "</details>")
    return parts


def _survival_section(eval_dir: Path, metrics: MetricsFile) -> list[str]:
    """The Cox models with their KM curves, and image->text retrieval."""
    parts: list[str] = []
    if metrics.survival:
        parts.append("<h2>Survival</h2>")
        parts.append('<p class="note">Event: ' + html.escape(", ".join(sorted(
            {"graft loss" if s.task == "graft_survival" else "graft loss or eGFR below the "
             "threshold at a yearly horizon" for s in metrics.survival}))) + ".</p>")
        surv = pd.DataFrame([s.model_dump() for s in metrics.survival])
        surv["logrank_p"] = [format_p(p) for p in surv["logrank_p"]]
        parts.append(_table(surv.round(4)))
        surv_path = eval_dir / "survival.parquet"
        if surv_path.is_file():
            km = pd.read_parquet(surv_path)
            if "run" not in km.columns:
                km["run"] = ""
            first = km.groupby("method")["run"].first().to_dict()  # one panel per method
            km = km[km["run"] == km["method"].map(first)]
            pv = {s.method: s.logrank_p for s in metrics.survival
                  if (s.run or "") == first.get(s.method)}
            parts.append(_img(figures.km_curves(km, pv), "KM curves"))
    if metrics.retrieval:
        parts.append("<h2>Image→text retrieval and zero-shot GFR bin</h2>")
        parts.append('<p class="note">R@k: share of held-out exams whose own prompt is among '
                     "the k most similar of <code>n_candidates</code> distinct prompts; "
                     "<code>chance_at_k</code> is what a random ranking scores (k / "
                     "candidates).</p>")
        parts.append(_table(pd.DataFrame([r.model_dump() for r in metrics.retrieval]).round(4)))
    return parts


def _examples_section(tables: Cohort | None) -> list[str]:
    parts = ["<h2>Examples</h2>"]
    prompts = _example_prompts(tables) if tables is not None else None
    parts.append(_table(prompts) if prompts is not None else
                 '<p class="note">Prompts not available for this cohort.</p>')
    vols = _example_volumes(tables) if tables is not None else []
    parts.extend(vols or ['<p class="note">No example volume could be read.</p>'])
    return parts


def write_report(eval_dir: str | os.PathLike[str],
                 out_html: str | os.PathLike[str] | None = None) -> Path:
    """Write the HTML report of an evaluation folder; returns its path.

    Args:
        eval_dir: the ``out_dir`` of :func:`medimp.evaluate.evaluate`.
        out_html: where to write; default ``eval_dir/report.html``.
    """
    eval_dir = Path(eval_dir)
    metrics = read_metrics(eval_dir / "metrics.json")
    h = metrics.header
    out_html = Path(out_html) if out_html else eval_dir / "report.html"
    try:
        tables: Cohort | None = read_cohort(Path(h.cohort))
    except (ValueError, OSError):  # cohort moved or changed: report what metrics.json holds
        tables = None
    parts = [f"<h1>medimp evaluation — {html.escape(Path(h.cohort).name)}</h1>",
             f'<p class="note">medimp {h.medimp_version}, {h.created}; cohort '
             f"<code>{html.escape(h.cohort)}</code></p>"]
    parts += _cohort_section(metrics)
    parts += _results_section(eval_dir, metrics)
    parts += _survival_section(eval_dir, metrics)

    parts.append("<h2>Training curves</h2>")
    hist = _histories(metrics)
    parts.append(_img(figures.training_curves(hist), "training curves") if hist else
                 '<p class="note">No run directories with history.csv were evaluated.</p>')

    parts.append("<h2>Embedding map</h2>")
    parts.append(_map_section(eval_dir, tables, metrics) if tables is not None else
                 '<p class="note">Cohort not found.</p>')
    parts += _examples_section(tables)

    if metrics.skipped:
        parts.append("<h2>Skipped</h2>")
        parts.append(_table(pd.DataFrame([s.model_dump() for s in metrics.skipped])))

    parts.append("<h2>Protocol</h2>")
    parts.append(_protocol_words(metrics))
    parts.append("<h3>Methods</h3>")
    parts.append(_table(pd.DataFrame({"method": list(h.methods),
                                      "source": list(h.methods.values())})))

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>medimp evaluation</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    atomic_write_text(out_html, page)
    return out_html
