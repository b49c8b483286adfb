"""CLI commands of the evaluate stage: ``medimp evaluate`` (``medimp demo`` is in cli/demo.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from medimp.cli._common import (
    THREADS_HELP,
    apply_threads,
    console,
    err_console,
    fail,
    is_interactive,
    jobs_value,
    warn_deprecated,
)

#: Where the paired tests' measured false-positive rates are: every printed verdict points there.
FPR_DOCS = 'docs/evaluate.md, "Which endpoint sees a difference"'


def _pairs(values: list[str], option: str) -> dict[str, list[Path]]:
    """NAME=PATH options; a name given several times collects pretraining replicates."""
    import glob

    out: dict[str, list[Path]] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            fail(f"{option} {v!r}: expected NAME=PATH, e.g. {option} medimp=runs/medimp")
        if not Path(path).exists() and not (glob.has_magic(path) and glob.glob(path)):  # noqa: PTH207
            fail(f"{option} {v!r}: {path} does not exist")
        if Path(path) in out.get(name, []):
            fail(f"{option}: {path} given twice for method {name!r}")
        out.setdefault(name, []).append(Path(path))
    return out


def evaluate_command(
    *,
    cohort: Annotated[Path, typer.Option("--cohort", help="Cohort directory (study.yaml, CSVs).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (metrics.json, report).")],
    runs: Annotated[list[str] | None, typer.Option(
        "--runs", help="NAME=RUN_DIR of a pretraining run; embeds the cohort with it. "
        "Repeat for each method (medimp, random_init, image_ssl, tabular_clip). A name given "
        "several times, a glob (medimp='runs/medimp/seed*') or a folder of seed runs "
        "(RUN/seed0, RUN/seed1, ...) gives pretraining replicates of one method.")] = None,
    embeddings: Annotated[list[str] | None, typer.Option(
        "--embeddings", help="NAME=FILE.parquet of precomputed embeddings "
        "(patient_id, exam, level, e0..). Repeatable.")] = None,
    horizons: Annotated[list[int] | None, typer.Option(
        "--horizon", help="Horizon in years; repeatable (default 2, 3, 4).")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", help="eGFR cut-off of poor status; default from study.yaml.")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Outer CV folds.")] = 5,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Outer CV repeats.")] = 5,
    bootstrap: Annotated[int | None, typer.Option(
        "--bootstrap", min=20, help="Deprecated and ignored (the CIs use the corrected "
        "resampled t, docs/evaluate.md); accepted so that older scripts still run.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the CV splits.")] = 0,
    jobs: Annotated[int, typer.Option(
        "--jobs", help="Cross-validations run at once, each in its own process; 0: one per "
        "CPU core.")] = 1,
    threads: Annotated[int | None, typer.Option(
        "--threads", help=THREADS_HELP, show_default=False)] = None,
    reference: Annotated[str, typer.Option(
        "--reference", help="Method compared with each other method.")] = "medimp",
    no_knn: Annotated[bool, typer.Option("--no-knn", help="Skip the k-NN probe.")] = False,
    no_survival: Annotated[bool, typer.Option(
        "--no-survival", help="Skip the Cox survival model.")] = False,
    survival_event: Annotated[str, typer.Option(
        "--survival-event", help="Cox endpoint: graft_loss, or poor_status (graft loss or "
        "eGFR below the threshold at a yearly horizon).")] = "graft_loss",
    no_report: Annotated[bool, typer.Option(
        "--no-report", help="Write metrics.json only, no report.html.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace --out if it is not empty (only once the new evaluation "
        "is complete).")] = False,
    external: Annotated[Path | None, typer.Option(
        "--external", help="External cohort: every model is also fitted on all of --cohort "
        "and tested once on it (metrics.json 'external' records; docs/prognosis.md).")] = None,
) -> None:
    """Evaluate frozen embeddings on the cohort's 2/3/4-year outcomes and write a report."""
    from medimp.evaluate import EvalConfig

    jobs = jobs_value(jobs) or 1
    apply_threads(threads)
    runs, embeddings = runs or [], embeddings or []
    by_run, by_file = _pairs(runs, "--runs"), _pairs(embeddings, "--embeddings")
    if set(by_run) & set(by_file):
        fail(f"method {sorted(set(by_run) & set(by_file))[0]!r} is given in both --runs and "
             "--embeddings")
    methods = {name: paths[0] if len(paths) == 1 else paths
               for name, paths in {**by_run, **by_file}.items()}
    if not (cohort / "study.yaml").is_file():
        fail(f"{cohort}: not a cohort directory (no study.yaml)")
    if bootstrap is not None:
        warn_deprecated("--bootstrap", "the CIs use the corrected resampled t")
    cfg = EvalConfig(horizons=horizons or [2, 3, 4], threshold=threshold, n_splits=folds,
                     repeats=repeats, n_bootstrap=bootstrap or 1000, seed=seed,
                     reference_method=reference,
                     probes=["logistic"] if no_knn else ["logistic", "knn"],
                     survival=not no_survival, survival_event=survival_event,
                     n_jobs=jobs)
    result = _run(cohort, methods, out, cfg, external=external, overwrite=overwrite)
    if not result.metrics.records and not result.metrics.survival:
        for s in result.metrics.skipped:  # the reasons, then one line that says what to do
            where = s.task + (f", {s.method}" if s.method else "")
            err_console.print(f"[yellow]skipped[/] ({escape(where)}): {escape(s.reason)}",
                              highlight=False, soft_wrap=True)
        fail(f"nothing could be evaluated: every task was skipped for the "
             f"{len(result.metrics.skipped)} reason(s) above (also in {result.metrics_path})")
    print_added_value_answer(result.metrics.added_value_answers)
    _print_tables(result, cfg.reference_method)
    if result.metrics.external:
        _print_external(result.metrics)
    for note in result.metrics.header.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    for s in result.metrics.skipped:
        where = s.task + (f", {s.method}" if s.method else "")
        console.print(f"[yellow]skipped[/] ({escape(where)}): {escape(s.reason)}",
                      highlight=False, soft_wrap=True)
    console.print(f"metrics: {result.metrics_path}", markup=False)
    if not no_report:
        from medimp.report import write_report

        html = write_report(result.out_dir)
        console.print(f"report: {html}", markup=False)


def _print_tables(result, reference: str) -> None:
    """The headline AUCs, the paired tests of ``reference`` and their verdicts in words."""
    headline = result.headline()
    if headline.empty:
        console.print("no ROC AUC of patient-mean embeddings with the logistic probe "
                      "(see the skipped tasks below)")
    else:
        console.print("ROC AUC [95% CI], patient-mean embeddings, logistic probe (several "
                      "runs: mean over runs, seed-aware CI, sd between runs):", markup=False)
        console.print(headline.to_string(), highlight=False, soft_wrap=True, markup=False)
    print_endpoints(result.regression_table(), result.added_value_table())
    comp = result.comparison_table()
    if comp.empty:
        return
    console.print(f"\npaired test (corrected repeated k-fold t, seed-aware), {reference} minus "
                  "each method:", markup=False)
    console.print(comp.to_string(index=False), highlight=False, soft_wrap=True, markup=False)
    console.print("\nwhat is decided (p after Holm's adjustment over the table < 0.05; the "
                  f"test's measured false-positive rate: {FPR_DOCS}):", markup=False)
    for sentence in result.decided():
        console.print(f"  {sentence}", highlight=False, soft_wrap=True, markup=False)


def print_added_value_answer(answers: list) -> None:
    """The headline: "do the images add anything to the clinical table?", one line each."""
    if not answers:
        return
    console.print("Do the images add anything to the clinical table? (clinical+NAME vs "
                  "clinical_only, seed-aware, Holm within each method)", markup=False)
    for a in answers:
        console.print(f"  {a.method}: {a.sentence}", highlight=False, soft_wrap=True,
                      markup=False)
    console.print(f"  (how often these tests decide between two equal methods, and which "
                  f"endpoint sees a difference: {FPR_DOCS})", highlight=False, soft_wrap=True,
                  markup=False)
    console.print("")


def print_endpoints(regression, added) -> None:
    """The eGFR R² table and the added-value comparisons (pandas tables; empty: nothing)."""
    if not regression.empty:
        console.print("\neGFR at K years (0 if the graft was lost), ridge probe on patient-mean "
                      "features: R² [95% CI]:", markup=False)
        console.print(regression.to_string(), highlight=False, soft_wrap=True, markup=False)
    if not added.empty:
        console.print("\nadded value, clinical+NAME minus clinical_only (ΔBrier < 0 is "
                      "better; 'detectable': 80% power at alpha 0.05):", markup=False)
        console.print(added.to_string(index=False), highlight=False, soft_wrap=True,
                      markup=False)
def _run(cohort: Path, methods: dict, out: Path, cfg, *, external: Path | None,
         overwrite: bool):
    """The evaluation, with the external validation when ``--external`` is given."""
    if external is None:
        from medimp.evaluate import evaluate

        return evaluate(cohort, methods, out, cfg, progress=is_interactive(),
                        overwrite=overwrite)
    from medimp.prognosis.validation import evaluate_with_external

    return evaluate_with_external(cohort, external, methods, out, cfg,
                                  progress=is_interactive(), overwrite=overwrite)


def _print_external(metrics) -> None:
    """The external records of the methods (mean over runs), one row per method × task."""
    import pandas as pd

    def cell(est, lo, hi) -> str:
        return "" if est is None else f"{est:.3f} [{lo:.3f}, {hi:.3f}]"

    rows = [{"model": r.method, "task": r.task, "n": r.n,
             "AUC": cell(r.auc, r.auc_ci_low, r.auc_ci_high),
             "Brier": cell(r.brier, r.brier_ci_low, r.brier_ci_high),
             "cal. slope": cell(r.calibration_slope, r.calibration_slope_ci_low,
                                r.calibration_slope_ci_high),
             "R2": cell(r.r2, r.r2_ci_low, r.r2_ci_high)}
            for r in metrics.external if r.run is None]
    console.print(f"\nexternal validation on {metrics.header.external_cohort} (fitted on all "
                  "of the development cohort; 95% CI: bootstrap over external patients, plus "
                  "the between-run variance):", highlight=False, soft_wrap=True, markup=False)
    console.print(pd.DataFrame(rows).to_string(index=False), highlight=False, soft_wrap=True,
                  markup=False)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
    app.command("evaluate")(evaluate_command)
