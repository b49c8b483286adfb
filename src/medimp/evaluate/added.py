"""Added value of the images over the clinical table: the ``clinical+NAME`` models.

For every image method NAME the evaluation fits a combined model on the clinical features
(``clinical_only``'s table) **plus** NAME's embedding reduced to k principal components inside
each training fold (:func:`medimp.evaluate.models.make_model` ``"combined"``). k is chosen with
the penalty by the inner CV from a small grid that includes 0, so a combined model whose
images do not help falls back to the clinical table alone (with k = 0 and the same penalty it
makes exactly ``clinical_only``'s predictions). Comparing ``clinical+NAME`` with
``clinical_only`` on the same folds answers "do the images add anything?".

:func:`combined_features` joins the two tables exam by exam (the combined table's first
``n_clinical`` columns are clinical); :class:`CombinedLogisticProbe` is the binary probe (the
continuous one is :class:`medimp.evaluate.regression.RidgeProbe` with
``method_kind="combined"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin

from medimp.evaluate.embeddings import feature_columns
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.metrics import AddedValue, Comparison
from medimp.evaluate.models import make_model
from medimp.evaluate.probes import ProbeError, group_mean, inner_splits, refit_threshold
from medimp.evaluate.scoring import auc
from medimp.evaluate.shared import combined_split, logistic_scores

__all__ = ["CombinedLogisticProbe", "added_name", "added_value_answers", "added_value_table",
           "combined_features", "regression_headline"]

PREFIX = "clinical+"


def added_name(method: str) -> str:
    """The combined model's method name, ``clinical+NAME``."""
    return f"{PREFIX}{method}"


def combined_features(clinical: pd.DataFrame, embedding: pd.DataFrame,
                      method: str = "embedding") -> tuple[pd.DataFrame, int]:
    """The clinical table and an embedding side by side, one row per exam.

    Args:
        clinical: ``clinical_only``'s table (exam rows, named feature columns, NaN allowed).
        embedding: a method's table (:func:`medimp.evaluate.embeddings.read_embeddings`);
            its exam rows are used, or its patient rows repeated at every exam when it has
            no exam rows.
        method: name for the error message.

    Returns:
        ``(table, n_clinical)``: ``patient_id``, ``exam``, ``level`` ("exam"), then the
        clinical columns (``c_<name>``), then the embedding's (``x_<name>``). Exams without
        an embedding are left out.
    """
    ccols, ecols = feature_columns(clinical), feature_columns(embedding)
    left = clinical[clinical["level"] == "exam"][["patient_id", "exam", *ccols]]
    left = left.rename(columns={c: f"c_{c}" for c in ccols})
    exam_rows = embedding[embedding["level"] == "exam"]
    if len(exam_rows):
        right, on = exam_rows[["patient_id", "exam", *ecols]], ["patient_id", "exam"]
    else:
        right = embedding.drop_duplicates("patient_id")[["patient_id", *ecols]]
        on = ["patient_id"]
    right = right.rename(columns={c: f"x_{c}" for c in ecols})
    out = left.merge(right, on=on, how="inner", validate="one_to_one" if len(on) == 2
                     else "many_to_one")
    if out.empty:
        raise EvaluationError(
            f"method {method!r}: no exam has both clinical features and an embedding; the "
            "embeddings' exam names must match exams.csv")
    out.insert(2, "level", "exam")
    return out.reset_index(drop=True), len(ccols)


class CombinedLogisticProbe(ClassifierMixin, BaseEstimator):
    """``make_model("binary", "combined")``: clinical columns + k principal components of the
    image columns → L2 logistic regression; ``C``, ``k`` and the decision threshold from an
    inner patient-grouped CV on the training data (as :class:`~medimp.evaluate.LogisticProbe`:
    patient-level AUC; ties go to the fewest components, then the strongest penalty).

    Args:
        n_clinical: leading clinical columns.
        ks: image components tried (0 = the clinical table alone; capped at the image
            columns and the training size).
        Cs: inverse penalties tried.
        inner_splits: folds of the inner CV.
        seed: inner CV shuffling.
        max_iter: solver iterations.
    """

    def __init__(self, n_clinical: int = 1, *, ks: Sequence[int] = (0, 2, 4, 8),
                 Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), inner_splits: int = 3,
                 seed: int = 0, max_iter: int = 2000) -> None:
        self.n_clinical = n_clinical
        self.ks = ks
        self.Cs = Cs
        self.inner_splits = inner_splits
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None):
        """Choose (k, C) and the threshold by inner CV on (X, y), then refit on all of it."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if not np.all(np.isfinite(X[:, self.n_clinical:])):
            raise ProbeError("image features contain NaN or infinite values")
        _, pos = group_mean(y.astype(float), groups)
        n_min = int(min((pos > 0.5).sum(), (pos <= 0.5).sum()))
        if n_min < 2:
            raise ProbeError(f"need at least 2 patients of each class to fit a probe, got "
                             f"{n_min} in the minority class")
        self.classes_ = np.array([0, 1])
        n_image = X.shape[1] - self.n_clinical
        ks = sorted({int(k) for k in self.ks})
        grid = [(k, float(c)) for k in ks for c in self.Cs]
        oof = np.full((len(grid), len(y)), np.nan)
        with config_context(skip_parameter_validation=True):
            for tr, te in inner_splits(y, groups, min(self.inner_splits, n_min), self.seed):
                if len(np.unique(y[tr])) < 2:
                    continue
                kmax = int(max(0, min(max(ks), n_image, len(tr) - 1)))
                # the clinical part is shared by every image method's model, and so are the
                # k = 0 fits on it (each computed once, medimp.evaluate.shared)
                z_tr, z_te = combined_split(X[tr], X[te], self.n_clinical, kmax, self.seed)
                for g, (k, c) in enumerate(grid):
                    cols = self.n_clinical + min(k, kmax)
                    oof[g, te] = logistic_scores(z_tr[:, :cols], y[tr], z_te[:, :cols], c,
                                                 self.max_iter)
        done = np.all(np.isfinite(oof), axis=0)
        _, yg = group_mean(y[done].astype(float), groups[done])
        yg = (yg > 0.5).astype(int)
        per_patient = np.stack([group_mean(oof[g, done], groups[done])[1]
                                for g in range(len(grid))])
        scores = auc(yg[None, :], per_patient)
        best = int(np.nanargmax(scores)) if np.any(np.isfinite(scores)) else 0
        k, c = grid[best]
        self.inner_scores_ = scores
        self.best_param_ = c
        self.best_k_ = int(max(0, min(k, n_image, len(y) - 1)))
        self.model_ = make_model("binary", "combined", C=c, n_clinical=self.n_clinical,
                                 k=self.best_k_, seed=self.seed,
                                 max_iter=self.max_iter).fit(X, y)
        self.threshold_ = 0.5
        if len(np.unique(yg)) == 2:  # from the refitted model's own scores of its patients
            own = self.model_.predict_proba(X)[:, 1]
            self.threshold_ = refit_threshold(yg, per_patient[best],
                                              group_mean(own[done], groups[done])[1])[0]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of class 0 and 1."""
        return self.model_.predict_proba(np.asarray(X, dtype=float))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 where the probability reaches the threshold chosen in ``fit``."""
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)


# --- "do the images add anything?" ----------------------------------------------------------

_WORDS = {"auc": "ΔAUC", "r2": "ΔR²", "brier": "ΔBrier"}


def _diff(c: Comparison) -> float:
    return float(getattr(c, f"{c.metric}_diff"))


def added_value_answers(comparisons: Sequence[Comparison]) -> list[AddedValue]:
    """One answer per image method: "yes", "no" or "not decided" (with the differences that
    would go unseen), from its ``clinical+NAME`` vs ``clinical_only`` comparisons.

    The comparisons carry their verdicts (:func:`medimp.evaluate.compare.holm_verdicts`,
    Holm within the method's family of tasks × metrics): "yes" when one is "better" (the
    images improve the AUC or the R², or lower the Brier score); "no" when one is "worse" and
    none better; otherwise "not decided", naming per metric the smallest minimal detectable
    difference over the tasks — or the reason, e.g. a method with a single pretraining run,
    whose interval has no seed variance.
    """
    by_method: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_method.setdefault(c.method.removeprefix(PREFIX), []).append(c)
    out = []
    for method, comps in by_method.items():
        better = [c for c in comps if c.verdict == "better"]
        worse = [c for c in comps if c.verdict == "worse"]
        mdd: dict[str, float] = {}
        for c in comps:  # identical predictions (k = 0 everywhere) detect nothing: skipped
            if c.min_detectable_diff is not None and c.min_detectable_diff > 0:
                mdd[c.metric] = min(mdd.get(c.metric, np.inf), c.min_detectable_diff)
        unseen = ", ".join(f"{_WORDS[m]} {v:.3f}" for m, v in sorted(mdd.items()))
        reasons = sorted({(c.verdict or "").removeprefix("not decided: ") for c in comps
                          if (c.verdict or "").startswith("not decided")
                          and " (p = " not in (c.verdict or "")
                          and "not significant" not in (c.verdict or "")})
        if better:
            answer = "yes"
            sentence = "yes: " + "; ".join(_said(c) for c in better)
        elif worse:
            answer = "no"
            sentence = "no, the images made the clinical model worse: " + "; ".join(
                _said(c) for c in worse)
        elif reasons:
            answer, sentence = "not decided", f"not decided: {'; '.join(reasons)}"
        else:
            answer = "not decided"
            sentence = (f"not decided at this size (a difference below {unseen} goes unseen)"
                        if unseen else "not decided: the combined model kept the clinical "
                        "table alone (no image component) in every fold")
        out.append(AddedValue(method=method, answer=answer, sentence=sentence,
                              min_detectable=mdd, n_runs=max(c.n_runs for c in comps)))
    return out


def _said(c: Comparison) -> str:
    return (f"{c.task} {_WORDS[c.metric]} {_diff(c):+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]"
            f" (p after Holm within the method {c.p_holm:.3g})")


# --- printed tables ------------------------------------------------------------------------

def regression_headline(metrics: Any, level: str = "patient_mean") -> pd.DataFrame:
    """Methods × ``egfr_yK`` table of "R² [low, high]" (the methods' own records)."""
    rows = [r for r in metrics.regression if r.level == level and r.run is None]
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame({"method": [r.method for r in rows], "task": [r.task for r in rows],
                       "cell": [f"{r.r2:.3f} [{r.r2_ci_low:.3f}, {r.r2_ci_high:.3f}]"
                                for r in rows]})
    table = df.pivot(index="method", columns="task", values="cell")
    given = [m for m in metrics.header.methods if m in table.index]
    return table.loc[given + [m for m in table.index if m not in given]]


def added_value_table(metrics: Any) -> pd.DataFrame:
    """``clinical+NAME`` minus ``clinical_only``: task, method, Δ [CI], p, minimal detectable."""
    rows = [{"task": c.task, "model": c.method, "difference": _WORDS[c.metric],
             "estimate [95% CI]": f"{_diff(c):+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]",
             "p": round(c.p_value, 4),
             "detectable": None if c.min_detectable_diff is None
             else round(c.min_detectable_diff, 3)}
            for c in metrics.added_value]
    return pd.DataFrame(rows, columns=["task", "model", "difference", "estimate [95% CI]", "p",
                                       "detectable"])
