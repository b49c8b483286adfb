"""The report's opening: the question, the data, and the answer against the clinical table.

Everything here reads ``metrics.json`` (:class:`medimp.evaluate.metrics.MetricsFile`) and words
it for a transplant team. Fields that newer evaluations add (combined ``clinical+NAME`` models,
continuous endpoints, verdicts) are read when present; an older file still gives an answer from
what it holds, and says what it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medimp.evaluate.metrics import MetricsFile

__all__ = ["CLINICAL", "AddedValue", "added_value", "answers", "bottom_line", "task_classes"]

CLINICAL = "clinical_only"
HEADLINE = ("patient_mean", "logistic")


def _attr(obj: Any, name: str) -> Any:
    """A field that newer metrics files have and older ones lack (None when absent)."""
    return getattr(obj, name, None)


def task_classes(metrics: MetricsFile) -> list[dict[str, Any]]:
    """Per task: horizon, patients with a known status, poor/good status, unknown."""
    return [{"task": t.task, "horizon": t.horizon_years, "known": t.n_known, "poor": t.n_pos,
             "good": t.n_known - t.n_pos, "unknown": t.n_unknown,
             "graft_loss": t.n_graft_loss} for t in metrics.header.tasks]


@dataclass(frozen=True)
class AddedValue:
    """One comparison against the clinical table, oriented as "candidate minus table"."""

    task: str
    candidate: str  # the method compared with the table (clinical+NAME, or NAME alone)
    combined: bool  # True: the clinical table plus the images; False: the images alone
    metric: str  # "AUC", "R²", ...
    diff: float
    ci_low: float | None  # None: the metrics.json holds no interval (an older file)
    ci_high: float | None
    p_value: float | None
    p_holm: float | None
    min_detectable: float | None
    verdict: str  # "better", "worse" or "undecided"

    def short(self) -> str:
        """The verdict in a few words (the table's last column)."""
        if self.verdict in ("better", "worse"):
            return f"{self.verdict} than the table"
        if self.min_detectable is None:
            return "cannot tell apart"
        return f"cannot tell apart (a difference below {self.min_detectable:.2f} is missed)"

    def delta(self) -> str:
        """The difference and its 95% CI, e.g. "ΔAUC +0.012 [-0.030, +0.054]"."""
        if self.ci_low is None or self.ci_high is None:
            return f"Δ{self.metric} {self.diff:+.3f} [no 95% CI in metrics.json]"
        return f"Δ{self.metric} {self.diff:+.3f} [{self.ci_low:+.3f}, {self.ci_high:+.3f}]"

    def words(self) -> str:
        """The verdict for a clinician, with the numbers it rests on."""
        what = "adding the images" if self.combined else f"{self.candidate} alone"
        delta = self.delta()
        if self.verdict == "better":
            return f"{what} does better than the clinical table ({delta})."
        if self.verdict == "worse":
            return f"{what} does worse than the clinical table ({delta})."
        # undecided
        missed = ("" if self.min_detectable is None else
                  f"; a true difference below {self.min_detectable:.2f} in {self.metric} "
                  "would be missed at this size")
        return f"cannot tell {what} apart from the clinical table ({delta}){missed}."


_METRICS = (("auc_diff", "AUC"), ("r2_diff", "R²"), ("brier_diff", "Brier"))
LOWER_IS_BETTER = {"Brier"}


def _metric_of(c: Any) -> tuple[str, float] | None:
    for field, name in _METRICS:
        v = _attr(c, field)
        if v is not None:
            return name, float(v)
    return None


def _verdict(c: Any, sign: float, metric: str) -> str:
    """"better", "worse" or "undecided" for "candidate minus table" (sign -1: the comparison
    was the table minus the candidate). The comparison's own verdict when it has one (Holm,
    one-run rule); a file written before verdicts: from the CI (a Brier difference is better
    below 0)."""
    given = _attr(c, "verdict")
    if isinstance(given, str) and given.startswith("not decided"):
        return "undecided"  # e.g. "not decided: one pretraining run", whatever the CI says
    if given in ("better", "worse"):
        return given if sign > 0 else {"better": "worse", "worse": "better"}[given]
    if c.ci_low is None or c.ci_high is None:
        return "undecided"  # an older file without the interval: nothing to decide from
    lo, hi = sorted((sign * c.ci_low, sign * c.ci_high))
    if metric in LOWER_IS_BETTER:
        lo, hi = -hi, -lo
    return "better" if lo > 0 else "worse" if hi < 0 else "undecided"


def _comparisons(metrics: MetricsFile) -> list[Any]:
    """The paired comparisons, with the added-value ones of newer files (no duplicates)."""
    seen, out = set(), []
    for c in [*metrics.comparisons, *(_attr(metrics, "added_value") or [])]:
        key = (c.task, c.method, c.other, c.level, c.probe, _metric_of(c))
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def added_value(metrics: MetricsFile) -> list[AddedValue]:
    """Every headline comparison that involves the clinical table, as "candidate - table".

    Combined models (``clinical+NAME``) come first; comparisons of an image method alone
    against the table follow. The reference ``oracle`` is not a candidate.
    """
    out = []
    for c in _comparisons(metrics):
        if (c.level != HEADLINE[0] or c.probe not in (HEADLINE[1], "ridge")
                or CLINICAL not in (c.method, c.other)):
            continue
        sign = 1.0 if c.other == CLINICAL else -1.0
        candidate = c.method if sign > 0 else c.other
        metric = _metric_of(c)
        if candidate == "oracle" or metric is None:
            continue
        lo, hi = (None, None) if c.ci_low is None or c.ci_high is None else sorted(
            (sign * c.ci_low, sign * c.ci_high))
        out.append(AddedValue(
            task=c.task, candidate=candidate, combined=candidate.startswith("clinical+"),
            metric=metric[0], diff=sign * metric[1], ci_low=lo, ci_high=hi,
            p_value=c.p_value, p_holm=_attr(c, "p_holm"),
            min_detectable=c.min_detectable_diff, verdict=_verdict(c, sign, metric[0])))
    order = [name for _, name in _METRICS]
    return sorted(out, key=lambda a: (not a.combined, a.task.startswith("egfr_"),
                                      a.task, order.index(a.metric)))


def answers(metrics: MetricsFile) -> list[dict[str, str]]:
    """"Do the images add anything?" per image method, as the evaluation answered it
    (``added_value_answers`` of newer files; empty for older ones)."""
    return [{"method": a.method, "answer": a.answer, "sentence": a.sentence}
            for a in (_attr(metrics, "added_value_answers") or [])]


def _pick(found: list[AddedValue], ref: str) -> AddedValue | None:
    order = [name for _, name in _METRICS]
    for want in (lambda a: a.candidate == f"clinical+{ref}", lambda a: a.combined,
                 lambda a: a.candidate == ref, lambda a: True):
        hits = [a for a in found if want(a)]
        if hits:
            return min(hits, key=lambda a: order.index(a.metric))
    return None


def bottom_line(metrics: MetricsFile) -> list[dict[str, str]]:
    """One line per task (the status tasks, then any continuous eGFR task compared): the
    answer against the clinical table, in words.

    The combined model of the reference method (``clinical+REF``) answers "do the images
    add?"; without combined models the reference method alone against the table answers the
    weaker "do the images replace it?", and the line says so.
    """
    ref = metrics.header.reference_method or ""
    found = added_value(metrics)
    tasks = [(t.task, f"At {t.horizon_years} years") for t in metrics.header.tasks]
    tasks += [(task, f"eGFR at {task.removeprefix('egfr_y')} years")
              for task in dict.fromkeys(a.task for a in found) if task.startswith("egfr_y")]
    lines = []
    for task, label in tasks:
        pick = _pick([a for a in found if a.task == task], ref)
        if pick is None:
            text = ("no comparison with the clinical table was computed for this task "
                    "(see Cohort flow).")
        else:
            text = pick.words()
            if not pick.combined:
                text += (" This compares the images alone with the table alone; the table "
                         "plus the images was not evaluated in this run.")
        lines.append({"task": task, "horizon": label, "text": text})
    return lines
