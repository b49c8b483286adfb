"""Paired comparisons of two methods on the same folds, and the verdicts they earn.

:func:`paired_comparison` is the one test behind every "is A better than B?" of the
evaluation, whatever the metric (AUC, R², Brier, C-index...): it takes the per-fold values of
both methods (``[runs, J]``, the same J folds) and returns the difference, its seed-aware
corrected resampled t interval (:func:`medimp.evaluate.intervals.corrected_interval`), the
p-value, the degrees of freedom, the seed part of the variance, the minimal detectable
difference (noncentral t with those df) and a verdict:

* ``"better"`` / ``"worse"``: the difference is significant (two-sided, ``alpha``; after Holm
  within its family once :func:`holm_verdicts` ran) in favour of the first / second method;
* ``"not decided: <reason>"`` otherwise. A method whose features come from a pretraining
  (anything but a fixed table such as ``clinical_only``) with a single run has no estimate of
  the variance between pretraining seeds, which dominates when seeds disagree; its comparisons
  are ``"not decided: one pretraining run"`` (the interval is still given, conditional on
  that run). Measured in ``benchmarks/coverage.py``: without the seed variance the test
  rejected far more often than its level. Two fixed tables (one row each) are
  ``"not decided: no replicate runs ..."``: the fold-only test was measured liberal on noise.

:func:`holm` is Holm's step-down adjustment; :func:`holm_verdicts` applies it to a family
of comparisons (the evaluation's family is one table: every task × other method at one level
and probe) and re-derives their verdicts from ``p_holm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from medimp.evaluate.intervals import corrected_interval, minimal_detectable_difference

__all__ = ["NO_REPLICATES", "ONE_RUN", "PairedComparison", "decide", "holm", "holm_verdicts",
           "paired_comparison", "verdict_sentence"]

#: The reason a comparison of a single pretraining run is not decided.
ONE_RUN = "one pretraining run"
#: The reason a comparison of two fixed tables (one row of fold values each) is not decided:
#: the corrected t on fold values alone rejected 10-13% of pure-noise pairs at a nominal 5%
#: (docs/evaluate.md, "How the intervals were chosen").
NO_REPLICATES = "no replicate runs on either side (the fold-only test is liberal)"


@dataclass(frozen=True)
class PairedComparison:
    """metric(a) - metric(b) on the same folds.

    ``seed_variance`` is the part of ``se²`` due to pretraining seeds (0 when neither method
    has several runs); ``undecidable`` holds the reason when no verdict can be earned whatever
    the p-value (e.g. one pretraining run).
    """

    estimate: float
    se: float
    low: float
    high: float
    p_value: float
    df: float
    n_runs: int
    other_n_runs: int
    seed_variance: float
    min_detectable_diff: float
    verdict: str
    p_holm: float | None = None
    undecidable: str | None = None

    @property
    def decided(self) -> bool:
        """True when the verdict is "better" or "worse"."""
        return self.verdict in ("better", "worse")


def decide(estimate: float, p_value: float, *, alpha: float = 0.05,
           higher_is_better: bool = True, undecidable: str | None = None,
           adjusted: bool = False) -> str:
    """The verdict of one comparison from its (possibly Holm-adjusted) p-value."""
    if undecidable:
        return f"not decided: {undecidable}"
    if not np.isfinite(p_value):
        return "not decided: the difference's variance is undefined"
    if p_value >= alpha:
        return f"not decided: not significant ({'Holm ' if adjusted else ''}p = {p_value:.2g})"
    return "better" if (estimate > 0) == higher_is_better else "worse"


def paired_comparison(values: np.ndarray, other: np.ndarray, test_train_ratio: float, *,
                      learned: tuple[bool, bool] = (True, True), higher_is_better: bool = True,
                      alpha: float = 0.05) -> PairedComparison:
    """Compare two methods from their per-fold values on the same folds.

    Args:
        values: ``[J]`` or ``[runs, J]`` per-fold metric of the first method (one row per
            pretraining run).
        other: the same for the second method (its own number of runs, the same J folds).
        test_train_ratio: ``n_test / n_train`` of the outer folds.
        learned: whether each method's features come from a pretraining with a seed; a
            learned method with one run makes the comparison undecidable (``ONE_RUN``).
        higher_is_better: False for a metric where lower is better (Brier, MAE): "better"
            then means a negative difference.
        alpha: two-sided level of the test and 1 - coverage of the interval.

    Returns:
        A :class:`PairedComparison` (verdict from the unadjusted p-value; see
        :func:`holm_verdicts` for a family).
    """
    a, b = np.atleast_2d(np.asarray(values, float)), np.atleast_2d(np.asarray(other, float))
    iv = corrected_interval(a, test_train_ratio, other=b, level=1 - alpha)
    keep = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    seed_var = sum(float(m[:, keep].mean(axis=1).var(ddof=1)) / m.shape[0]
                   for m in (a, b) if m.shape[0] > 1 and keep.sum() >= 2)
    single = [n for n, (is_learned, m) in enumerate(zip(learned, (a, b), strict=True))
              if is_learned and m.shape[0] < 2]
    undecidable = (ONE_RUN if single else
                   NO_REPLICATES if a.shape[0] < 2 and b.shape[0] < 2 else None)
    mdd = minimal_detectable_difference(iv.se, iv.df, alpha=alpha)
    return PairedComparison(
        estimate=iv.estimate, se=iv.se, low=iv.low, high=iv.high, p_value=iv.p_value,
        df=iv.df, n_runs=a.shape[0], other_n_runs=b.shape[0], seed_variance=seed_var,
        min_detectable_diff=mdd, undecidable=undecidable,
        verdict=decide(iv.estimate, iv.p_value, alpha=alpha, higher_is_better=higher_is_better,
                       undecidable=undecidable))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def holm_verdicts(family: Sequence[PairedComparison], *, alpha: float = 0.05,
                  higher_is_better: bool | Sequence[bool] = True) -> list[PairedComparison]:
    """Holm-adjust a family of comparisons and re-derive their verdicts from ``p_holm``.

    Comparisons that are undecidable (``undecidable`` set) are not tests and do not count in
    the family; they keep ``p_holm = None``.
    """
    hib = ([higher_is_better] * len(family) if isinstance(higher_is_better, bool)
           else list(higher_is_better))
    testable = [i for i, c in enumerate(family) if c.undecidable is None]
    adjusted = holm([family[i].p_value for i in testable])
    out = list(family)
    for i, p in zip(testable, adjusted, strict=True):
        c = family[i]
        out[i] = replace(c, p_holm=None if not np.isfinite(p) else float(p),
                         verdict=decide(c.estimate, p, alpha=alpha, higher_is_better=hib[i],
                                        adjusted=True))
    return out


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def verdict_sentence(task: str, method: str, verdicts: Sequence[tuple[str, str]]) -> str:
    """One sentence on what is decided for ``task``: ``verdicts`` are (other, verdict).

    Reads naturally whatever is decided, e.g. "status_y2: medimp is better than random_init;
    not decided against clinical_only (not significant)." or
    "status_y4: nothing is decided (clinical_only: not significant ...; image_ssl: one
    pretraining run)."
    """
    better = [o for o, v in verdicts if v == "better"]
    worse = [o for o, v in verdicts if v == "worse"]
    reasons: dict[str, list[str]] = {}
    for o, v in verdicts:
        if v not in ("better", "worse"):
            why = v.removeprefix("not decided").lstrip(": ").split(" (")[0]
            reasons.setdefault(why or "no test", []).append(o)
    parts = [f"{method} is {word} than {_names(names)}"
             for word, names in (("better", better), ("worse", worse)) if names]
    if not parts:
        if not reasons:
            return f"{task}: no comparison."
        said = "; ".join(f"{_names(names)}: {why}" for why, names in reasons.items())
        return f"{task}: nothing is decided ({said})."
    if reasons:
        said = ", ".join(f"{_names(names)} ({why})" for why, names in reasons.items())
        parts.append(f"not decided against {said}")
    return f"{task}: " + "; ".join(parts) + "."
