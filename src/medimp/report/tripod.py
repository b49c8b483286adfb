"""The TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378) against this report.

Each item says where the page covers it, or that it does not: a section of the page counts
only when it was rendered (its input existed), so an older ``metrics.json`` without
calibration shows calibration as not covered rather than promising it.
"""

from __future__ import annotations

__all__ = ["ITEMS", "checklist"]

# (part of the checklist, topic, sections that cover it (any one rendered suffices), what is
# missing otherwise). The parts are the checklist's headings; its item numbers are not repeated
# here, the topics name the items.
ITEMS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("Title", "Title: a prediction-model evaluation, its population and outcome",
     ("summary",), ""),
    ("Abstract", "Abstract", (), "no structured abstract; the Summary opens the page"),
    ("Introduction", "Background: healthcare context and existing models", (),
     "not covered (the clinical table is the only existing predictor compared)"),
    ("Introduction", "Objectives", ("summary",), ""),
    ("Methods", "Data sources and dates", ("summary", "flow"),
     "whether the data are simulated is stated; no collection dates"),
    ("Methods", "Participants: eligibility, treatment, setting", ("flow",),
     "inclusion criteria beyond the cohort folder are not recorded"),
    ("Methods", "Data preparation", ("prediction",), ""),
    ("Methods", "Outcome: definition, time horizon, blinding", ("prediction",),
     "assessor blinding is not applicable to computed outcomes"),
    ("Methods", "Predictors: definition, timing", ("prediction",), ""),
    ("Methods", "Sample size", ("summary", "added"),
     "no a-priori size calculation; the minimal detectable differences are given"),
    ("Methods", "Missing data", ("prediction",), ""),
    ("Methods", "Analysis: how data were used (development, evaluation)", ("protocol",), ""),
    ("Methods", "Analysis: model type and building", ("protocol", "prediction"), ""),
    ("Methods", "Analysis: performance measures", ("protocol", "results"), ""),
    ("Methods", "Analysis: heterogeneity across sites or clusters", ("external",),
     "not covered (single-cohort evaluation)"),
    ("Methods", "Class imbalance", ("protocol",), "no resampling or reweighting is applied"),
    ("Methods", "Fairness: performance in subgroups", (), "not covered (no subgroup analysis)"),
    ("Methods", "Model output and decision thresholds", ("risks",), ""),
    ("Methods", "Differences between development and evaluation data", ("prediction",), ""),
    ("Methods", "Ethical approval", (), "not covered (to be stated by the study)"),
    ("Open science", "Funding", (), "not covered"),
    ("Open science", "Conflicts of interest", (), "not covered"),
    ("Open science", "Protocol and registration", (), "not covered (no registered protocol)"),
    ("Open science", "Data availability", (), "not covered"),
    ("Open science", "Code availability", ("summary",),
     "medimp version given; repository not linked"),
    ("Patient and public involvement", "Patient and public involvement", (), "not covered"),
    ("Results", "Participant flow and characteristics", ("flow",),
     "counts per class are given; baseline characteristics per class are not"),
    ("Results", "Model specification for use", (),
     "not in this page: medimp fit-prognosis writes the fitted models with a model card "
     "(docs/prognosis.md)"),
    ("Results", "Model performance: discrimination", ("results",), ""),
    ("Results", "Model performance: calibration", ("calibration",), "not covered"),
    ("Results", "Model performance: clinical utility (decision curves)", ("decision",),
     "not covered"),
    ("Results", "External validation", ("external",),
     "not covered (no external cohort in this evaluation)"),
    ("Discussion", "Interpretation, limitations and usability", ("limitations",), ""),
]

_WHERE = {"summary": "Summary", "flow": "Cohort flow", "prediction": "The prediction",
          "added": "Added value", "protocol": "Protocol", "results": "Results",
          "risks": "Absolute risks", "calibration": "Calibration",
          "decision": "Decision curves", "limitations": "Limitations",
          "external": "External validation"}


def checklist(rendered: set[str]) -> list[dict[str, str]]:
    """Every item with ``where`` (the sections that cover it) or ``missing`` (why not)."""
    out = []
    for part, topic, sections, missing in ITEMS:
        where = [_WHERE[s] for s in sections if s in rendered]
        if not where:
            note = missing or "not covered"
        else:  # covered: keep only a partial gap, not the fallback of the uncovered case
            note = "" if missing.startswith(("not covered", "not in this page")) else missing
        out.append({"part": part, "topic": topic, "where": ", ".join(where) or "–",
                    "note": note, "covered": "yes" if where else "no"})
    return out
