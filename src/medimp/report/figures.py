"""Figures of the evaluation report, each returned as a base64-encoded PNG.

Every function takes plain tables (pandas) and draws one matplotlib figure with the Agg backend;
nothing is written to disk, so the HTML page can embed the images and stay self-contained.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = [
    "calibration_plot",
    "decision_curve_plot",
    "embedding_map",
    "format_p",
    "km_curves",
    "roc_curves",
    "run_strip_plot",
    "task_counts",
    "training_curves",
    "volume_slices",
]


def format_p(p: float | None) -> str:
    """A p-value for people: never "0.0" (a p-value is never zero, only below a bound)."""
    if p is None or not np.isfinite(p):
        return "–"
    if p < 1e-4:
        return "< 0.0001"
    return f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def _p_words(p: float) -> str:
    text = format_p(p)
    return text if text.startswith("<") else f"= {text}"


def _png(fig) -> str:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def task_counts(tasks: pd.DataFrame) -> str:
    """Stacked bars per task: poor status, good status, unknown (left out)."""
    fig, ax = plt.subplots(figsize=(5, 2.8))
    x = np.arange(len(tasks))
    good = tasks["n_known"] - tasks["n_pos"]
    ax.bar(x, tasks["n_pos"], label="poor status", color="#c0392b")
    ax.bar(x, good, bottom=tasks["n_pos"], label="good status", color="#2e86c1")
    ax.bar(x, tasks["n_unknown"], bottom=tasks["n_known"], label="unknown (left out)",
           color="#bbbbbb")
    ax.set_xticks(x, tasks["task"])
    ax.set_ylabel("patients")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def training_curves(histories: Mapping[str, pd.DataFrame]) -> str:
    """Train and validation loss per epoch, one panel per run."""
    n = max(1, len(histories))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 2.8), squeeze=False)
    for ax, (name, h) in zip(axes[0], histories.items(), strict=False):
        for col, style in (("train_loss", "-"), ("val_loss", "--")):
            if col in h.columns and h[col].notna().any():
                ax.plot(h["epoch"], h[col], style, label=col.replace("_", " "))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
    axes[0][0].set_ylabel("loss")
    return _png(fig)


def roc_curves(predictions: pd.DataFrame, tasks: list[str]) -> str:
    """ROC curve per task and method (patient scores averaged over the CV repeats)."""
    from sklearn.metrics import roc_curve

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = predictions[predictions["task"] == task]
        for method, grp in sub.groupby("method", sort=True):
            per = grp.groupby("patient_id").agg(label=("label", "first"),
                                                score=("score", "mean"))
            if per["label"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(per["label"], per["score"])
            ax.plot(fpr, tpr, label=method)
        ax.plot([0, 1], [0, 1], ":", color="grey")
        ax.set_title(task)
        ax.set_xlabel("1 - specificity")
        ax.set_aspect("equal")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False, loc="lower right")
    axes[0][0].set_ylabel("sensitivity")
    return _png(fig)


def run_strip_plot(records: pd.DataFrame, tasks: list[str]) -> str:
    """Per task: each run's AUC as a dot beside its method's mean and 95% CI (a bar).

    Args:
        records: one row per record with ``task, method, run, auc, auc_ci_low, auc_ci_high``;
            ``run`` empty/None for the method's own (aggregate or single-run) record.
        tasks: the panels, in order.
    """
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.8 * len(tasks), 3.4), squeeze=False,
                             sharey=True)
    methods = list(dict.fromkeys(records["method"]))
    rng = np.random.default_rng(0)
    is_run = records["run"].fillna("").astype(str) != ""
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = records[records["task"] == task]
        for i, method in enumerate(methods):
            runs = sub[(sub["method"] == method) & is_run.loc[sub.index]]
            agg = sub[(sub["method"] == method) & ~is_run.loc[sub.index]]
            if not runs.empty:
                x = i - 0.15 + rng.uniform(-0.06, 0.06, len(runs))
                ax.scatter(x, runs["auc"], s=16, color="#7f8c8d", zorder=3,
                           label="one run" if i == 0 or "one run" not in
                           ax.get_legend_handles_labels()[1] else None)
            for r in agg.itertuples(index=False):
                ax.errorbar(i + 0.1, r.auc, yerr=[[r.auc - r.auc_ci_low],
                                                  [r.auc_ci_high - r.auc]],
                            fmt="o", color="#c0392b", capsize=3, zorder=4,
                            label="mean, 95% CI" if "mean, 95% CI" not in
                            ax.get_legend_handles_labels()[1] else None)
        ax.axhline(0.5, ls=":", color="grey")
        ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
        ax.set_title(task)
    axes[0][0].set_ylabel("ROC AUC")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        axes[0][0].legend(handles, labels, fontsize=7, frameon=False, loc="lower left")
    return _png(fig)


def _project(X: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X = StandardScaler().fit_transform(np.nan_to_num(X))
    # umap is an optional dependency (pip install medimp[umap]): absent -> PCA; present but
    # broken -> its own error, not a silent PCA
    if len(X) > 10 and importlib.util.find_spec("umap") is not None:
        import umap

        emb = umap.UMAP(n_components=2, random_state=seed,
                        n_neighbors=min(15, len(X) - 1)).fit_transform(X)
        return emb, "UMAP"
    k = min(2, X.shape[1], len(X))
    z = PCA(n_components=k, random_state=seed).fit_transform(X)
    if k < 2:
        z = np.column_stack([z, np.zeros(len(z))])
    return z, "PCA"


def embedding_map(tables: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str,
                  seed: int = 0) -> str:
    """2D map (UMAP if installed, else PCA) of each method's patient embeddings.

    Args:
        tables: method -> (features [n, D], label [n] with 1 poor, 0 good, -1 unknown).
        title: names the outcome used for the colours.
        seed: projection seed.
    """
    n = max(1, len(tables))
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    colours = {1: "#c0392b", 0: "#2e86c1", -1: "#bbbbbb"}
    names = {1: "poor", 0: "good", -1: "unknown"}
    for ax, (method, (X, y)) in zip(axes.ravel(), tables.items(), strict=False):
        z, how = _project(X, seed)
        for v in (-1, 0, 1):
            m = y == v
            if m.any():
                ax.scatter(z[m, 0], z[m, 1], s=14, c=colours[v], label=names[v])
        ax.set_title(f"{method} ({how})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(tables):]:
        ax.axis("off")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7, frameon=False, title=title, title_fontsize=7)
    return _png(fig)


def km_curves(survival: pd.DataFrame, pvalues: Mapping[str, float | None]) -> str:
    """Kaplan–Meier event-free survival by predicted risk group, one panel per method."""
    from lifelines import KaplanMeierFitter

    methods = list(dict.fromkeys(survival["method"]))
    n = max(1, len(methods))
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.9 * rows), squeeze=False)
    for ax, method in zip(axes.ravel(), methods, strict=False):
        sub = survival[survival["method"] == method]
        for grp, label, colour in ((1, "high risk", "#c0392b"), (0, "low risk", "#2e86c1")):
            part = sub[sub["high_risk"] == grp]
            if part.empty:
                continue
            kmf = KaplanMeierFitter().fit(part["time_days"] / 365.25, part["event"], label=label)
            kmf.plot_survival_function(ax=ax, ci_show=False, color=colour)
        p = pvalues.get(method)
        ax.set_title(f"{method}" + (f" (log-rank p {_p_words(p)})" if p is not None else ""),
                     fontsize=9)
        ax.set_xlabel("years after transplantation")
        ax.set_ylim(0, 1.05)
    for ax in axes.ravel()[len(methods):]:
        ax.axis("off")
    axes[0][0].set_ylabel("event-free survival")
    return _png(fig)


def volume_slices(volumes: Mapping[str, np.ndarray], title: str) -> str:
    """Middle axial slice of each phase of one exam, on one shared intensity scale."""
    n = max(1, len(volumes))
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    finite = [v[np.isfinite(v)] for v in volumes.values()]
    lo = min((float(np.percentile(v, 1)) for v in finite if v.size), default=0.0)
    hi = max((float(np.percentile(v, 99)) for v in finite if v.size), default=1.0)
    for ax, (phase, vol) in zip(axes[0], volumes.items(), strict=False):
        ax.imshow(np.rot90(vol[:, :, vol.shape[2] // 2]), cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(phase, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def dynamic_curve(selection: Mapping[str, object], title: str) -> str:
    """The arrival curve of one dynamic series (mean intensity per frame), with the detected
    or given contrast arrival and the frame chosen for each phase marked.

    Args:
        selection: :meth:`medimp.data.io.frames.FrameSelection.to_dict` of the series.
        title: figure title (patient and exam).
    """
    curve = np.asarray(selection["curve"], dtype=float)
    times = selection.get("frame_times")
    x = np.asarray(times, dtype=float) if times is not None else np.arange(curve.size)
    fig, ax = plt.subplots(figsize=(5.0, 2.8))
    ax.plot(x, curve, "-o", color="0.4", markersize=3, label="mean intensity")
    arrival = selection.get("arrival_s")
    if arrival is not None and times is not None:
        ax.axvline(float(arrival), color="tab:red", linestyle="--", linewidth=1,
                   label=f"arrival {float(arrival):.1f} s")
    frames = selection["frames"]
    for i, (phase, f) in enumerate(frames.items()):  # type: ignore[union-attr]
        ax.plot(x[int(f)], curve[int(f)], "o", markersize=8, color=f"C{i}",
                label=f"{phase}: frame {int(f)}")
    ax.set_xlabel("seconds after the first frame" if times is not None else "frame")
    ax.set_ylabel("mean intensity")
    ax.set_title(f"{title} ({selection['method']})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def calibration_plot(table: pd.DataFrame, tasks: list[str],
                     fits: Mapping[tuple[str, str], tuple[float, float]] | None = None) -> str:
    """Observed rate vs predicted risk per risk group, one panel per task, one line per method.

    Args:
        table: ``calibration.parquet`` rows (``task, method, mean_predicted, observed,
            observed_low, observed_high``; :func:`medimp.evaluate.calibration.calibration_table`).
        tasks: the panels, in order.
        fits: optional ``(task, method) -> (calibration intercept, slope)`` for the legend.
    """
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(3.6 * max(1, len(tasks)), 3.5),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        sub = table[table["task"] == task]
        for i, (method, grp) in enumerate(sub.groupby("method", sort=False)):
            label = method
            if fits and (task, method) in fits:
                a, b = fits[(task, method)]
                label += f" (int. {a:+.2f}, slope {b:.2f})"
            x = grp["mean_predicted"].to_numpy(float)
            y = grp["observed"].to_numpy(float)
            # clipped: a Wilson bound equal to the rate can differ from it by rounding
            err = np.clip([y - grp["observed_low"].to_numpy(float),
                           grp["observed_high"].to_numpy(float) - y], 0, None)
            ax.errorbar(x + 0.006 * i, y, yerr=err, fmt="-o", ms=4, capsize=2, label=label,
                        color=f"C{i}")
        ax.plot([0, 1], [0, 1], ":", color="grey", label="ideal")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(task)
        ax.set_xlabel("predicted risk (group mean)")
        ax.legend(fontsize=6, frameon=False, loc="upper left")
    axes[0][0].set_ylabel("observed rate (95% CI)")
    return _png(fig)


def decision_curve_plot(table: pd.DataFrame, tasks: list[str]) -> str:
    """Net benefit over risk thresholds per method, against treat-all and treat-none.

    Args:
        table: ``decision_curves.parquet`` rows (``task, method, threshold, net_benefit,
            treat_all``; :func:`medimp.evaluate.calibration.decision_curve`).
        tasks: the panels, in order.
    """
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(3.8 * max(1, len(tasks)), 3.3),
                             squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        sub = table[table["task"] == task]
        if sub.empty:
            ax.axis("off")
            continue
        first = sub[sub["method"] == sub["method"].iloc[0]]
        ax.plot(first["threshold"], first["treat_all"], "--", color="0.5", label="treat all")
        ax.axhline(0, color="0.2", lw=0.8, label="treat none")
        for i, (method, grp) in enumerate(sub.groupby("method", sort=False)):
            ax.plot(grp["threshold"], grp["net_benefit"], color=f"C{i}", label=method)
        top = float(np.nanmax(sub[["net_benefit", "treat_all"]].to_numpy()))
        ax.set_ylim(-0.05, max(0.05, top * 1.1))
        ax.set_title(task)
        ax.set_xlabel("risk threshold")
        ax.legend(fontsize=6, frameon=False)
    axes[0][0].set_ylabel("net benefit")
    return _png(fig)
