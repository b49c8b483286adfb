"""What is predicted, from what, by which method: the report's definition of the prediction
and its protocol in words.

Every sentence is derived from what the evaluation recorded (``metrics.json``'s header: the
protocol it ran, the methods and their sources), from the cohort's ``study.yaml`` and tables,
and from each run's ``model.json``; nothing names a probe, interval or model the code did not
use. :func:`protocol_items` is checked against :class:`medimp.evaluate.EvalConfig` by the tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medimp.data import Cohort
from medimp.data.pipeline.features import ClinicalFeatures
from medimp.evaluate.metrics import MetricsFile

__all__ = ["exams_used", "method_sentences", "predictors", "pretraining_overlap",
           "protocol_items"]

# one plain sentence per pretraining objective (model.json "method") and reference
_OBJECTIVES = {
    "medimp": "a 3D image encoder trained to match each exam's images with a sentence stating "
              "that exam's clinical facts known at the exam (MEDIMP's image–text pretraining)",
    "slip": "medimp's image–text pretraining plus image-only self-supervision (SLIP)",
    "medclip_soft": "medimp's image–text pretraining in which exams stating the same facts "
                    "are not pushed apart (soft targets)",
    "image_ssl": "a 3D image encoder trained from the images alone to recognise two augmented "
                 "copies of the same exam (SimCLR-style self-supervision)",
    "tabular_clip": "a 3D image encoder trained to match each exam's images with its row of "
                    "clinical values",
    "random_init": "the same 3D image encoder with random, untrained weights: the floor any "
                   "pretraining must beat",
}


def _model_json(source: str) -> dict[str, Any] | None:
    f = Path(source) / "model.json"
    try:
        return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None
    except (OSError, ValueError):
        return None


def _first_source(metrics: MetricsFile, method: str) -> str:
    runs = metrics.header.runs.get(method)
    return next(iter(runs.values())) if runs else metrics.header.methods.get(method, "")


def predictors(cohort: Cohort | None) -> dict[str, list[str]] | None:
    """The clinical table's predictors by name: known at transplant, and measured at each exam
    (:class:`medimp.data.pipeline.features.ClinicalFeatures`, the ``clinical_only`` builder)."""
    if cohort is None:
        return None

    try:
        feats = ClinicalFeatures("all").fit(cohort, cohort.exam_keys()).features_
    except (ValueError, KeyError):
        return None
    at_transplant = set(cohort.patients.columns)
    out: dict[str, list[str]] = {"transplant": [], "exam": []}
    for f in feats:
        column = f.source if isinstance(f.source, str) and f.source else getattr(
            f.source, "column", f.name)
        out["transplant" if column in at_transplant else "exam"].append(f.name)
    return out


def exams_used(cohort: Cohort | None) -> dict[str, Any] | None:
    """The scheduled exams that were imaged, with their days, and the landmark (the last)."""
    if cohort is None:
        return None
    imaged = set(cohort.imaged_exams()["exam"].astype(str))
    exams = [(e.name, e.days) for e in cohort.study.exams if e.name in imaged]
    if not exams:
        return None
    last = max(exams, key=lambda e: e[1])
    return {"exams": [f"{n} (day {d})" for n, d in exams], "landmark": last[0],
            "landmark_days": last[1]}


def method_sentences(metrics: MetricsFile, predictor_names: list[str] | None
                     ) -> list[dict[str, str]]:
    """Each evaluated method in one plain sentence (the objective read from its run)."""
    table = ", ".join(predictor_names) if predictor_names else "the study's clinical columns"
    out = []
    for name in metrics.header.methods:
        if name == "clinical_only":
            text = f"the clinical table alone ({table}), no image"
        elif name == "oracle":
            text = ("the simulator's hidden true kidney state, which no real cohort has: a "
                    "ceiling, not a competitor")
        elif name.startswith("clinical+"):
            text = (f"the clinical table plus {name.removeprefix('clinical+')}'s image "
                    "embedding, reduced inside each training fold to a few principal "
                    "components whose number (0 allowed: the table alone) the inner CV chose")
        else:
            info = _model_json(_first_source(metrics, name))
            objective = (info or {}).get("method")
            if objective in _OBJECTIVES:
                text = _OBJECTIVES[objective]
            elif objective:
                text = f"a 3D image encoder pretrained with the '{objective}' objective"
            elif name in _OBJECTIVES:
                text = _OBJECTIVES[name] + " (embeddings given as a table)"
            else:
                text = "image embeddings given as a table (how they were made is not recorded)"
            n_runs = len(metrics.header.runs.get(name, {})) or 1
            if n_runs > 1:
                text += f"; {n_runs} pretraining runs (seeds), results averaged over them"
        out.append({"method": name, "text": text})
    return out


def pretraining_overlap(metrics: MetricsFile) -> list[dict[str, str]]:
    """Per pretrained method: were the evaluated patients also used (without outcomes) to
    pretrain it? From the training-cohort fingerprint ``model.json`` records."""
    ours = metrics.header.cohort_fingerprint
    out = []
    for name in metrics.header.methods:
        info = _model_json(_first_source(metrics, name))
        if info is None:
            continue
        theirs = info.get("cohort_fingerprint")
        if theirs is None or ours is None:
            answer = "not recorded (a run written before training cohorts were fingerprinted)"
        elif theirs == ours:
            answer = ("yes: pretrained on these same patients' images (and, for image–text "
                      "methods, their prompts of facts known at each exam), never on their "
                      "outcomes; the probes are then cross-validated on the outcomes")
        else:
            answer = "no: pretrained on another cohort"
        out.append({"method": name, "answer": answer})
    return out


def _names(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def protocol_items(metrics: MetricsFile) -> list[dict[str, str]]:
    """The protocol in words, from the configuration the evaluation recorded."""
    h = metrics.header
    p = h.protocol
    probes = list(p.get("probes", ["logistic"]))
    levels = list(p.get("levels", ["patient_mean"]))
    inner = p.get("inner_splits", 3)
    items = [
        {"title": "Outcome", "text":
         f"for each horizon K in {_names(h.horizons)} years after transplantation, poor graft "
         f"status is an eGFR at K years below {h.threshold:g} mL/min/1.73 m² or a graft lost "
         "before K years; a patient with neither an eGFR at K nor a loss before K is left out "
         "of that task and counted (Cohort flow)."},
        {"title": "Cross-validation", "text":
         f"{p.get('repeats', '?')} repeats of {p.get('n_splits', '?')}-fold cross-validation "
         "stratified by outcome, the same splits for every method; all exams of a patient are "
         "on the same side of every split (checked for every fold)."},
        {"title": "Levels", "text": "; ".join(
            {"patient_mean": "patient_mean (headline): one sample per patient, the mean of its "
                             "exams' features",
             "patient_latest": "patient_latest: the patient's latest exam",
             "exam": "exam: each exam a training sample, its test probabilities averaged "
                     "per patient"}.get(lv, lv) for lv in levels) + "."},
    ]
    probe_words = []
    if "logistic" in probes:
        probe_words.append(
            "logistic regression after standardisation (median imputation of missing clinical "
            f"values, learned on the training folds), penalty C from {_names(p.get('Cs', []))} "
            f"chosen by an inner patient-grouped {inner}-fold CV on the training folds")
    if "knn" in probes:
        probe_words.append(
            f"k-nearest neighbours (cosine, distance-weighted), k from "
            f"{_names(p.get('knn_ks', []))} chosen likewise")
    items.append({"title": "Probe" + ("s" if len(probe_words) > 1 else ""),
                  "text": "; ".join(probe_words) + ". The image encoders are frozen."})
    items += [
        {"title": "Decision threshold", "text":
         "Youden's J on the inner-CV out-of-fold probabilities of the training folds (never "
         "the test fold); it sets balanced accuracy and F1 only."},
        {"title": "Metrics and intervals", "text": f"{p.get('metrics', 'not recorded')}."},
        {"title": "Paired test", "text":
         f"{p.get('paired_test', 'not recorded')}."},
    ]
    ran = {"continuous": bool(getattr(metrics, "regression", None)),
           "added_value": any(m.startswith("clinical+") for m in h.methods),
           "calibration": any(getattr(r, "brier", None) is not None for r in metrics.records)}
    for key, title in (("continuous", "Continuous endpoints"),
                       ("added_value", "Combined models"),
                       ("calibration", "Calibration and net benefit")):
        if ran[key] and isinstance(p.get(key), str):  # the header's own words, when it ran
            items.append({"title": title, "text": f"{p[key]}."})
    if p.get("survival", True):
        event = {"graft_loss": "graft loss (censored at the end of follow-up)",
                 "poor_status": "graft loss or the first yearly eGFR below the threshold"
                 }.get(p.get("survival_event", "graft_loss"), str(p.get("survival_event")))
        items.append({"title": "Survival", "text":
                      f"event: {event}; standardisation, PCA to "
                      f"{p.get('survival_pca', '?')} components and a Cox model with L2 "
                      f"penalty {p.get('cox_penalizer', '?')} (lifelines), in the same kind of "
                      "grouped CV; Harrell's C on each test fold, averaged, with the same "
                      "corrected resampled t CI; Kaplan–Meier curves of the patients split at "
                      "the median predicted risk, compared by a log-rank test."})
    return items


def interval_name(metrics: MetricsFile) -> str:
    """The interval the evaluation computed, as its header records it (captions use this)."""
    text = str(metrics.header.protocol.get("metrics", "")).lower()
    if "corrected resampled t" in text:
        return "corrected resampled t"
    if "bootstrap" in text:  # metrics.json of an evaluation before the corrected t
        return "percentile bootstrap"
    return "interval as recorded in metrics.json"
