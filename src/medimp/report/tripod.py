"""The TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378) against this report.

Each item says where the page covers it, or that it does not: a section of the page counts
only when it was rendered (its input existed), so an older ``metrics.json`` without
calibration shows calibration as not covered rather than promising it.
"""

from __future__ import annotations

__all__ = ["ITEMS", "checklist"]

# (item, topic, sections that cover it (any one rendered suffices), what is missing otherwise)
ITEMS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("1", "Title: a prediction-model evaluation, its population and outcome", ("summary",), ""),
    ("2", "Abstract", (), "no structured abstract; the Summary opens the page"),
    ("3", "Background: healthcare context and existing models", (),
     "not covered (the clinical table is the only existing predictor compared)"),
    ("4", "Objectives", ("summary",), ""),
    ("5", "Data sources and dates", ("summary", "flow"),
     "whether the data are simulated is stated; no collection dates"),
    ("6", "Participants: eligibility, treatment, setting", ("flow",),
     "inclusion criteria beyond the cohort folder are not recorded"),
    ("7", "Data preparation", ("prediction",), ""),
    ("8", "Outcome: definition, time horizon, blinding", ("prediction",),
     "assessor blinding is not applicable to computed outcomes"),
    ("9", "Predictors: definition, timing", ("prediction",), ""),
    ("10", "Sample size", ("summary", "added"),
     "no a-priori size calculation; the minimal detectable differences are given"),
    ("11", "Missing data", ("prediction",), ""),
    ("12a", "Analysis: how data were used (development, evaluation)", ("protocol",), ""),
    ("12b", "Analysis: model type and building", ("protocol", "prediction"), ""),
    ("12c", "Analysis: performance measures", ("protocol", "results"), ""),
    ("12d", "Analysis: heterogeneity across sites", ("external",),
     "not covered (single-cohort evaluation)"),
    ("13", "Class imbalance", ("protocol",), "no resampling or reweighting is applied"),
    ("14", "Fairness: performance in subgroups", (), "not covered (no subgroup analysis)"),
    ("15", "Model output and decision thresholds", ("risks",), ""),
    ("16", "Development vs evaluation data differences", ("prediction",), ""),
    ("17", "Ethical approval", (), "not covered (to be stated by the study)"),
    ("18", "Funding", (), "not covered"),
    ("19", "Conflicts of interest", (), "not covered"),
    ("20", "Protocol and registration", (), "not covered (no registered protocol)"),
    ("21", "Data availability", (), "not covered"),
    ("22", "Code availability", ("summary",), "medimp version given; repository not linked"),
    ("23", "Patient and public involvement", (), "not covered"),
    ("24", "Participant flow and characteristics", ("flow",),
     "counts per class are given; baseline characteristics per class are not"),
    ("25", "Model specification for use", (), "not covered (the probes are not exported)"),
    ("26", "Model performance: discrimination", ("results",), ""),
    ("26c", "Model performance: calibration", ("calibration",), "not covered"),
    ("26d", "Model performance: clinical utility (decision curves)", ("decision",),
     "not covered"),
    ("27", "Interpretation, limitations and usability", ("limitations",), ""),
]

_WHERE = {"summary": "Summary", "flow": "Cohort flow", "prediction": "The prediction",
          "added": "Added value", "protocol": "Protocol", "results": "Results",
          "risks": "Absolute risks", "calibration": "Calibration",
          "decision": "Decision curves", "limitations": "Limitations",
          "external": "External validation"}


def checklist(rendered: set[str]) -> list[dict[str, str]]:
    """Every item with ``where`` (the sections that cover it) or ``missing`` (why not)."""
    out = []
    for item, topic, sections, missing in ITEMS:
        where = [_WHERE[s] for s in sections if s in rendered]
        if not where:
            note = missing or "not covered"
        else:  # covered: keep only a partial gap, not the "not covered" fallback
            note = "" if missing.startswith("not covered") else missing
        out.append({"item": item, "topic": topic, "where": ", ".join(where) or "–",
                    "note": note, "covered": "yes" if where else "no"})
    return out
