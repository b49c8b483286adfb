"""The one factory of the evaluation's fitted models: plain scikit-learn pipelines.

Every model the evaluation fits on a training fold, and every model a user fits on a whole
cohort to apply elsewhere, is built here by :func:`make_model`, from standard scikit-learn
components only (``SimpleImputer``, ``StandardScaler``, ``PCA``, ``ColumnTransformer``,
``LogisticRegression``, ``Ridge``). So a fitted model is fully described by the factory's
arguments plus the fitted attributes of those components (``statistics_``, ``mean_``,
``scale_``, ``components_``, ``coef_``, ``intercept_``...), which can be saved as JSON or
safetensors and loaded without a pickle.

=========================  =======================================================================
``method_kind``            pipeline (the last step is ``LogisticRegression(C)`` for ``"binary"``,
                           ``Ridge(alpha)`` for ``"continuous"``)
=========================  =======================================================================
``"embedding"``            ``StandardScaler`` → estimator
``"clinical"``             ``SimpleImputer(median)`` → ``StandardScaler`` → estimator
``"combined"``             ``ColumnTransformer``: the first ``n_clinical`` columns through
                           ``SimpleImputer(median)`` → ``StandardScaler``, the others (an image
                           embedding) through ``StandardScaler`` → ``PCA(k, whiten=True)``, or
                           dropped when ``k == 0`` → estimator
=========================  =======================================================================

The hyper-parameters (``C``, ``alpha``, ``k``) are chosen by the probes' inner cross-validation
(:mod:`medimp.evaluate.probes`, :mod:`medimp.evaluate.regression`,
:mod:`medimp.evaluate.added`); docs/evaluate.md "Protocol" describes them.
"""

from __future__ import annotations

from typing import Literal

from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["METHOD_KINDS", "TASK_KINDS", "make_model", "make_preprocessor"]

TaskKind = Literal["binary", "continuous"]
MethodKind = Literal["embedding", "clinical", "combined"]
TASK_KINDS = ("binary", "continuous")
METHOD_KINDS = ("embedding", "clinical", "combined")


def _scaler() -> StandardScaler:
    return StandardScaler()


def _imputer() -> SimpleImputer:
    # keep_empty_features: a column empty in a training fold stays (as 0 after scaling), so
    # the column layout never depends on the fold
    return SimpleImputer(strategy="median", keep_empty_features=True)


def make_preprocessor(method_kind: MethodKind, *, n_clinical: int = 0, k: int = 0,
                      seed: int = 0) -> Pipeline | ColumnTransformer:
    """The feature steps of :func:`make_model` (everything before the estimator).

    Args:
        method_kind: "embedding", "clinical" or "combined".
        n_clinical: for "combined", how many leading columns are clinical features.
        k: for "combined", principal components kept of the image columns (0: drop them).
        seed: PCA's ``random_state`` (the full SVD solver is deterministic anyway).
    """
    if method_kind == "embedding":
        return Pipeline([("scale", _scaler())])
    if method_kind == "clinical":
        return Pipeline([("impute", _imputer()), ("scale", _scaler())])
    if method_kind != "combined":
        raise ValueError(f"unknown method kind {method_kind!r}; choose from {METHOD_KINDS}")
    if n_clinical < 1:
        raise ValueError("a combined model needs at least one clinical column (n_clinical)")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    clinical = Pipeline([("impute", _imputer()), ("scale", _scaler())])
    image: Pipeline | str = "drop" if k == 0 else Pipeline([
        ("scale", _scaler()),
        ("pca", PCA(n_components=int(k), whiten=True, svd_solver="full", random_state=seed))])
    return ColumnTransformer([("clinical", clinical, slice(0, n_clinical)),
                              ("image", image, slice(n_clinical, None))],
                             remainder="drop", verbose_feature_names_out=False)


def make_model(task_kind: TaskKind, method_kind: MethodKind, *, C: float = 1.0,
               alpha: float = 1.0, n_clinical: int = 0, k: int = 0, seed: int = 0,
               max_iter: int = 2000) -> Pipeline:
    """An unfitted scikit-learn ``Pipeline`` for one task kind and one kind of features.

    Args:
        task_kind: "binary" (``LogisticRegression(C=C)``, L2) or "continuous"
            (``Ridge(alpha=alpha)``).
        method_kind: "embedding" (a learned embedding: scaled), "clinical" (the clinical
            table: median-imputed, scaled) or "combined" (``n_clinical`` clinical columns
            followed by an image embedding reduced to ``k`` whitened principal components).
        C: inverse L2 penalty of the logistic regression.
        alpha: L2 penalty of the ridge regression.
        n_clinical: see ``method_kind``.
        k: see ``method_kind``; 0 keeps the clinical columns alone.
        seed: PCA's ``random_state``.
        max_iter: solver iterations of the logistic regression.

    Returns:
        ``Pipeline([("features", preprocessor), ("model", estimator)])``: every step a
        standard scikit-learn component, so the fitted model can be exported without pickles.
    """
    if task_kind == "binary":
        est: LogisticRegression | Ridge = LogisticRegression(C=float(C), max_iter=max_iter)
    elif task_kind == "continuous":
        est = Ridge(alpha=float(alpha))
    else:
        raise ValueError(f"unknown task kind {task_kind!r}; choose from {TASK_KINDS}")
    pre = make_preprocessor(method_kind, n_clinical=n_clinical, k=k, seed=seed)
    return Pipeline([("features", pre), ("model", est)])
