"""Probes on frozen embeddings: logistic regression and k-NN, scikit-learn estimators.

Each probe picks its hyper-parameter (the penalty ``C``, or ``k``) and its decision threshold
from an inner, patient-grouped cross-validation on the data it is fitted on, i.e. on the
training folds of the outer cross-validation only. The threshold maximises Youden's J
(sensitivity + specificity - 1) on the inner out-of-fold probabilities, averaged per patient
when several samples (exams) belong to one patient. Nothing from a test fold reaches ``fit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from medimp._registry import Registry
from medimp.evaluate.errors import ProbeError
from medimp.evaluate.fastlogit import logistic_proba
from medimp.evaluate.models import make_model
from medimp.evaluate.scoring import auc
from medimp.evaluate.shared import scaled_split

__all__ = ["KNNProbe", "LogisticProbe", "ProbeError", "create_probe", "group_mean",
           "list_probes", "refit_threshold", "register_probe", "youden_threshold"]


# --- registry (medimp._registry, the mechanism of every registry) -------------------------------

_PROBES: Registry[tuple[type, dict[str, str]]] = Registry("probe", ProbeError)
#: Options every probe takes from the evaluation config (argument -> config field).
_COMMON_OPTIONS = {"inner_splits": "inner_splits", "seed": "seed"}


def register_probe(cls: type | None = None, *, name: str | None = None,
                   options: Mapping[str, str] | None = None) -> Any:
    """Register a probe class under ``name`` (default: the class name).

    Usable as ``@register_probe`` or ``@register_probe(name="...", options={...})``.

    Args:
        cls: a scikit-learn classifier taking ``seed``, ``inner_splits`` and ``impute``.
        name: the name in ``EvalConfig.probes`` and ``metrics.json``.
        options: constructor argument -> field of the evaluation config that sets it (e.g.
            ``{"Cs": "Cs"}``), besides ``inner_splits`` and ``seed``.
    """

    opts = {**_COMMON_OPTIONS, **(options or {})}
    return _PROBES.decorator(cls, name=name, entry=lambda c: (c, opts))


def list_probes() -> list[str]:
    """Names accepted by :func:`create_probe`, sorted."""
    return _PROBES.names()


def create_probe(name: str, config: Any = None, **kw: Any) -> BaseEstimator:
    """Build the probe ``name``, its options taken from ``config`` then ``kw``.

    Args:
        name: a registered name, see :func:`list_probes`.
        config: an ``EvalConfig`` (any object with the probe's option fields), or None.
        **kw: constructor arguments that win over ``config`` (e.g. ``impute=True``).

    Raises:
        ProbeError: unknown name (the message lists the known ones) or invalid option.
    """
    cls, options = _PROBES.lookup(name)
    args: dict[str, Any] = {}
    if config is not None:
        for arg, fld in options.items():
            value = getattr(config, fld)
            args[arg] = tuple(value) if isinstance(value, list) else value
    args.update(kw)
    try:
        return cls(**args)
    except TypeError as exc:  # an option the probe does not know
        raise ProbeError(f"probe {name!r}: {exc}") from exc


def group_mean(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per group; returns (unique groups, means) in sorted group order."""
    uniq, inv = np.unique(groups, return_inverse=True)
    sums = np.bincount(inv, weights=values, minlength=len(uniq))
    counts = np.bincount(inv, minlength=len(uniq))
    return uniq, sums / counts


def youden_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """Score cut-off maximising sensitivity + specificity - 1 (predict positive if >= cut)."""
    fpr, tpr, thr = roc_curve(y, scores)
    j = tpr - fpr
    best = int(np.argmax(j))
    cut = float(thr[best])
    return min(cut, 1.0) if np.isfinite(cut) else 1.0


def refit_threshold(y: np.ndarray, inner: np.ndarray, own: np.ndarray
                    ) -> tuple[float, float, int]:
    """The decision threshold of a refitted model, from its own scores of its training
    patients.

    Youden's J on the inner-CV out-of-fold scores ``inner`` (labels ``y``) sets the share of
    training patients to call positive; the threshold is the score at which the refitted
    model, scoring the same patients (``own``), calls that share positive. The inner models
    were fitted on fewer patients, so their probabilities are on another scale than the
    refitted model's (less extreme): a cut-off in probability units taken from them shifted
    balanced accuracy and F1 of the refitted model.

    Returns:
        (threshold for the refitted model, the inner cut-off, patients called positive).
    """
    cut = youden_threshold(y, inner)
    k = int(np.sum(inner >= cut))
    if k == 0:
        return 1.0, cut, 0  # call nobody positive, as the inner cut-off did
    ranked = np.sort(np.asarray(own, dtype=float))[::-1]
    return float(ranked[min(k, len(ranked)) - 1]), cut, k


_SPLITS: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}


def inner_splits(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The inner CV's ``StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)``
    (train, test) indices for labels ``y`` and ``groups``.

    Memoised: the splits depend on ``y``, ``groups`` and the seed only, and every method, probe
    and run of an outer fold fits on the same patients, so one evaluation asks for the same
    splits dozens of times (computing them was ~10 % of the evaluation's time). The indices
    are the same read-only arrays every time.
    """
    y = np.asarray(y)
    groups = np.asarray(groups)
    gkey: Any = tuple(groups.tolist()) if groups.dtype == object else \
        (groups.dtype.str, groups.shape, groups.tobytes())
    key = (y.dtype.str, y.shape, y.tobytes(), gkey, int(n_splits), int(seed))
    splits = _SPLITS.get(key)
    if splits is None:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = []
        for tr, te in cv.split(np.zeros((len(y), 1)), y, groups):
            tr.setflags(write=False)
            te.setflags(write=False)
            splits.append((tr, te))
        if len(_SPLITS) >= 512:  # bounded: one evaluation needs ~tasks x levels x folds
            _SPLITS.clear()
        _SPLITS[key] = splits
    return splits


def _prep(impute: bool) -> list:
    steps: list = [SimpleImputer(strategy="median", keep_empty_features=True)] if impute else []
    return [*steps, StandardScaler()]


class _InnerCVProbe(ClassifierMixin, BaseEstimator):
    """Shared fit logic: inner grouped CV over a grid, then Youden threshold, then refit."""

    _param: str = ""

    def _grid(self) -> Sequence[float | int]:
        raise NotImplementedError

    def _classifier(self, value: float | int, n_train: int) -> BaseEstimator:
        raise NotImplementedError

    def _make(self, value: float | int, n_train: int) -> Pipeline:
        return make_pipeline(*_prep(self.impute), self._classifier(value, n_train))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None):
        """Choose the hyper-parameter and threshold by inner CV on (X, y), then refit on all.

        Args:
            X: features, one row per sample.
            y: 0/1 labels.
            groups: patient of each sample; samples of one patient stay on one side of every
                inner split and their probabilities are averaged for the threshold.
        """
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        if not self.impute and not np.all(np.isfinite(X)):
            raise ProbeError("features contain NaN or infinite values")
        _, pos_per_group = group_mean(y.astype(float), groups)
        n_min = int(min((pos_per_group > 0.5).sum(), (pos_per_group <= 0.5).sum()))
        if n_min < 2:
            raise ProbeError(
                f"need at least 2 patients of each class to fit a probe, got {n_min} in the "
                "minority class"
            )
        self.classes_ = np.array([0, 1])
        n_inner = min(self.inner_splits, n_min)
        grid = list(self._grid())
        oof = np.full((len(grid), len(y)), np.nan)
        with config_context(skip_parameter_validation=True):
            for tr, te in inner_splits(y, groups, n_inner, self.seed):
                if len(np.unique(y[tr])) < 2:
                    continue
                # the same scaled folds for every probe of this table (computed once)
                x_tr, x_te = scaled_split(X[tr], X[te], self.impute)
                oof[:, te] = self._inner_scores(x_tr, y[tr], x_te, grid)
        done = np.all(np.isfinite(oof), axis=0)
        _, yg = group_mean(y[done].astype(float), groups[done])
        yg = (yg > 0.5).astype(int)
        per_patient = np.stack([group_mean(oof[g, done], groups[done])[1]
                                for g in range(len(grid))])
        scores = auc(yg[None, :], per_patient)  # NaN if the inner folds saw one class
        # ties go to the first grid value: the strongest penalty / the fewest neighbours
        best = int(np.nanargmax(scores)) if np.any(np.isfinite(scores)) else 0
        self.best_param_ = grid[best]
        self.inner_scores_ = scores
        self.model_ = self._make(self.best_param_, len(y)).fit(X, y)
        self.threshold_, self.inner_threshold_, self.n_called_ = 0.5, 0.5, -1
        if len(np.unique(yg)) == 2:  # from the refitted model's own scores of its patients
            _, own = group_mean(self._own_scores(X, y, groups)[done], groups[done])
            self.threshold_, self.inner_threshold_, self.n_called_ = refit_threshold(
                yg, per_patient[best], own)
        return self

    def _inner_scores(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      grid: Sequence[float | int]) -> np.ndarray:
        """``[len(grid), n_test]`` probabilities of class 1 of one inner fold's classifier per
        grid value (``x_train``/``x_test`` already scaled)."""
        return np.stack([self._classifier(value, len(y_train)).fit(x_train, y_train)
                         .predict_proba(x_test)[:, 1] for value in grid])

    def _own_scores(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The refitted model's scores of its training samples."""
        return self.model_.predict_proba(X)[:, 1]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of class 0 and 1."""
        return self.model_.predict_proba(np.asarray(X, dtype=float))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """1 where the probability reaches the threshold chosen in ``fit``."""
        return (self.predict_proba(X)[:, 1] >= self.threshold_).astype(int)


@register_probe(name="logistic", options={"Cs": "Cs"})
class LogisticProbe(_InnerCVProbe):
    """StandardScaler + L2 logistic regression; ``C`` and threshold from inner grouped CV.

    Args:
        Cs: inverse penalty strengths tried.
        inner_splits: folds of the inner CV (lowered when a class has fewer patients).
        seed: inner CV shuffling.
        max_iter: solver iterations.
        impute: fill missing values with the training median (clinical tables); embeddings
            must not have any.
    """

    def __init__(self, Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0), inner_splits: int = 3,
                 seed: int = 0, max_iter: int = 2000, impute: bool = False) -> None:
        self.Cs = Cs
        self.inner_splits = inner_splits
        self.seed = seed
        self.max_iter = max_iter
        self.impute = impute

    def _grid(self) -> Sequence[float]:
        return tuple(self.Cs)

    def _classifier(self, value: float | int, n_train: int) -> BaseEstimator:
        return LogisticRegression(C=float(value), max_iter=self.max_iter)

    def _make(self, value: float | int, n_train: int) -> Pipeline:
        """The refitted model: :func:`medimp.evaluate.models.make_model` (exportable)."""
        return make_model("binary", "clinical" if self.impute else "embedding", C=float(value),
                          max_iter=self.max_iter)

    def _inner_scores(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      grid: Sequence[float | int]) -> np.ndarray:
        """Each C's ``LogisticRegression`` scores, bit for bit, by
        :func:`medimp.evaluate.fastlogit.logistic_proba` (the scikit-learn estimator's checks
        were most of the evaluation's time)."""
        return np.stack([logistic_proba(x_train, y_train, x_test, float(c), self.max_iter)
                         for c in grid])

    @property
    def C_(self) -> float:  # noqa: N802 - scikit-learn's name (LogisticRegressionCV.C_)
        """The chosen inverse penalty."""
        return float(self.best_param_)


@register_probe(name="knn", options={"ks": "knn_ks"})
class KNNProbe(_InnerCVProbe):
    """StandardScaler + k-nearest-neighbours (cosine); ``k`` and threshold from inner CV.

    Args:
        ks: neighbour counts tried (capped at the training size).
        inner_splits: folds of the inner CV.
        seed: inner CV shuffling.
        impute: fill missing values with the training median.
    """

    def __init__(self, ks: Sequence[int] = (5, 10, 20), inner_splits: int = 3,
                 seed: int = 0, impute: bool = False) -> None:
        self.ks = ks
        self.inner_splits = inner_splits
        self.seed = seed
        self.impute = impute

    def _grid(self) -> Sequence[int]:
        return tuple(self.ks)

    def _classifier(self, value: float | int, n_train: int) -> BaseEstimator:
        k = max(1, min(int(value), n_train - 1))
        # brute force: what "auto" chooses for the cosine metric anyway; explicit, because
        # _inner_scores fits once for every k (the fitted state does not depend on k then)
        return KNeighborsClassifier(n_neighbors=k, weights="distance", metric="cosine",
                                    algorithm="brute")

    def _inner_scores(self, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      grid: Sequence[float | int]) -> np.ndarray:
        """One brute-force fit (it stores the training samples) asked for each k in turn:
        the same probabilities as one fit per k."""
        clf = self._classifier(grid[0], len(y_train)).fit(x_train, y_train)
        out = np.empty((len(grid), len(x_test)))
        for g, value in enumerate(grid):
            clf.set_params(n_neighbors=self._classifier(value, len(y_train)).n_neighbors)
            out[g] = clf.predict_proba(x_test)[:, 1]
        return out

    def _own_scores(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """The refitted k-NN's scores of its training samples, each from its k nearest
        samples of *other* patients (a sample is its own nearest neighbour at distance 0,
        which would return its label)."""
        Xt = self.model_[:-1].transform(np.asarray(X, dtype=float))
        knn = self.model_[-1]
        k = knn.n_neighbors
        _, per_group = np.unique(groups, return_counts=True)
        dist, idx = knn.kneighbors(Xt, n_neighbors=min(len(y), k + int(per_group.max())))
        out = np.empty(len(y))
        for i in range(len(y)):
            other = groups[idx[i]] != groups[i]
            d, j = dist[i][other][:k], idx[i][other][:k]
            w = 1.0 / np.maximum(d, 1e-12)
            out[i] = float(w @ y[j] / w.sum()) if len(j) else 0.5
        return out

    @property
    def k_(self) -> int:
        """The chosen neighbour count."""
        return int(self.best_param_)
