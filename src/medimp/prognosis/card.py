"""The model card (``model_card.md``) of a prognosis model folder.

Written from what the folder holds: intended use, the fitting cohort (size, prevalence of each
task), the models and their chosen options, the pretraining runs, external figures when
``evaluate --external`` produced them, and what was not validated. The wording follows the
items of TRIPOD+AI that a card can state (Collins et al., BMJ 2024).
"""

from __future__ import annotations

from typing import Any

from medimp.prognosis.external import N_BOOT
from medimp.prognosis.folder import ModelFolder

__all__ = ["model_card"]


#: How each external figure's 95% CI is computed (medimp.prognosis.external), as the card says.
INTERVALS = (
    f"- AUC, Brier score, R²: a percentile bootstrap over its patients ({N_BOOT} resamples); "
    "a model with several pretraining runs gives the mean over its runs, with a normal "
    "interval from the bootstrap variance of that mean plus the between-run variance divided "
    "by the number of runs.",
    "- calibration intercept and slope: not a bootstrap, a normal interval from the Wald "
    "variance of the logistic recalibration fit on its patients (plus the between-run "
    "variance divided by the number of runs, for several runs).",
    "- –: not defined on this cohort (e.g. the calibration slope of risks that separate the "
    "classes perfectly).",
)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def model_card(folder: ModelFolder) -> str:
    """The model card as Markdown."""
    dev = folder.dev
    lines = [
        "# Prognosis model card",
        "",
        "**Research software.** This model was fitted by medimp on the cohort below. It is not "
        "a medical device and must not be used to make decisions about patients.",
        "",
        "## Intended use",
        "",
        "Estimate, for a kidney-transplant recipient with post-transplant DCE-MRI exams and "
        "the clinical table of the fitting cohort's study.yaml, the probability of poor graft "
        "status (eGFR below the threshold, or graft loss) at K years (`status_yK`) and the "
        "eGFR at K years (`egfr_yK`, 0 after graft loss). Time zero is the transplant; the "
        "prediction uses every exam of the patient (their mean) and the clinical values known "
        "at those exams.",
        "",
        "## Fitting cohort",
        "",
        f"- cohort: `{dev.get('cohort')}` (fingerprint `{dev.get('fingerprint')}`)",
        f"- patients: {dev.get('n_patients')}, imaged exams: {dev.get('n_exams')}",
        f"- phases: {', '.join(dev.get('phases', []))}",
        "",
        "| task | patients with a known outcome | poor status |",
        "|---|---|---|",
    ]
    for t in dev.get("tasks", []):
        prev = (f"{t['n_pos']} ({t['n_pos'] / t['n']:.0%})" if t.get("n_pos") is not None
                and t["n"] else "(continuous)")
        lines.append(f"| {t['task']} | {t['n']} | {prev} |")
    lines += ["", "## Models", "",
              "Fitted on all labelled patients; options chosen by an inner, patient-grouped "
              "cross-validation on the fitting cohort (docs/evaluate.md).", "",
              "| model | run | task | options |", "|---|---|---|---|"]
    for m in folder.models:
        opts = ", ".join(f"{k} {_fmt(v)}" for k, v in m.params.items())
        lines.append(f"| {m.model} | {m.run or ''} | {m.task} | {opts} |")
    lines += ["", "## Pretraining runs", ""]
    for r in folder.runs:
        lines.append(f"- {r.key}: `{r.path}` (model.safetensors sha256 "
                     f"`{r.files.get('model.safetensors', '')[:16]}…`, trained on cohort "
                     f"`{r.info.get('cohort_fingerprint')}`)")
    ext = folder.meta.get("external")
    lines += ["", "## Validation", ""]
    if ext:
        lines += [f"External validation on `{ext.get('cohort')}` ({ext.get('n_patients')} "
                  "patients), the models applied once as fitted. Each figure's 95% CI:", "",
                  *INTERVALS, "",
                  "| model | task | n | AUC (bootstrap) | Brier (bootstrap) | calibration "
                  "intercept (Wald) | slope (Wald) | R² (bootstrap) |",
                  "|---|---|---|---|---|---|---|---|"]
        for rec in ext.get("records", []):
            lines.append("| {model} | {task} | {n} | {auc} | {brier} | {ci} | {cs} | {r2} |"
                         .format(model=rec.get("method"), task=rec.get("task"), n=rec.get("n"),
                                 auc=rec.get("auc_text", ""), brier=rec.get("brier_text", ""),
                                 ci=rec.get("cal_int_text", ""), cs=rec.get("cal_slope_text", ""),
                                 r2=rec.get("r2_text", "")))
    else:
        lines.append("No external validation is recorded in this folder: run "
                     "`medimp evaluate --cohort DEV --external EXT --runs ...` and cite its "
                     "metrics.json. Cross-validated figures on the fitting cohort come from "
                     "`medimp evaluate --cohort DEV`.")
    lines += ["", "## Not validated", "",
              "- populations, scanners and protocols other than those validated above;",
              "- calibration in a population whose outcome rates differ (recalibrate first);",
              "- patients with exams after graft loss, or phases other than the model's;",
              "- any use on real patients: the demonstration cohorts are simulated.",
              "", "Flags in `predict`'s output mark patients outside the fitting cohort "
              "(embedding far from it, clinical values outside its range, missing exams or "
              "phases).", ""]
    return "\n".join(lines)
