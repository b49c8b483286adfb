"""The strict serializer: fitted scikit-learn pipelines round-trip exactly, anything else is
refused when saving and when loading."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from medimp.prognosis.serialize import SerializationError, dump_estimator, load_estimator


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 7))
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 3:] = rng.normal(size=(60, 4))  # the "image" part has no missing values
    y = (np.nan_to_num(X[:, 0]) + X[:, 4] + rng.normal(0, 0.5, 60) > 0).astype(int)
    return X, y


def combined(estimator) -> Pipeline:
    clinical = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                             StandardScaler())
    image = make_pipeline(StandardScaler(), PCA(n_components=2, whiten=True))
    ct = ColumnTransformer([("clinical", clinical, slice(0, 3)), ("image", image, slice(3, None))])
    return Pipeline([("features", ct), ("model", estimator)])


def roundtrip(est):
    spec, arrays = dump_estimator(est, "m")
    import json

    spec = json.loads(json.dumps(spec, allow_nan=False))  # it is plain JSON
    return load_estimator(spec, arrays)


def test_logistic_pipeline_roundtrips_exactly() -> None:
    X, y = data()
    est = combined(LogisticRegression(C=0.3)).fit(X, y)
    back = roundtrip(est)
    Xn, _ = data(1)
    np.testing.assert_array_equal(est.predict_proba(Xn), back.predict_proba(Xn))
    np.testing.assert_array_equal(est.decision_function(Xn), back.decision_function(Xn))


def test_ridge_and_drop_column_roundtrip_exactly() -> None:
    X, _ = data()
    target = X[:, 4] * 3 + 1
    ct = ColumnTransformer([("clinical", make_pipeline(SimpleImputer(), StandardScaler()),
                             slice(0, 3)), ("image", "drop", slice(3, None))])
    est = Pipeline([("features", ct), ("model", Ridge(alpha=2.0))]).fit(X, target)
    Xn, _ = data(2)
    np.testing.assert_array_equal(est.predict(Xn), roundtrip(est).predict(Xn))


@pytest.mark.parametrize("bad", [KNeighborsClassifier(n_neighbors=3),
                                 make_pipeline(FunctionTransformer(np.log1p),
                                               LogisticRegression())])
def test_other_components_are_refused_when_saving(bad) -> None:
    X, y = data()
    bad.fit(np.nan_to_num(np.abs(X)), y)
    with pytest.raises(SerializationError, match=r"cannot be saved|not one of"):
        dump_estimator(bad, "m")


def test_unknown_class_in_a_spec_is_refused_when_loading() -> None:
    X, y = data()
    spec, arrays = dump_estimator(make_pipeline(StandardScaler(), LogisticRegression()).fit(
        np.nan_to_num(X), y), "m")
    spec["state"]["steps"][1]["__tuple__"][1]["__estimator__"] = "FunctionTransformer"
    with pytest.raises(SerializationError, match="not one of"):
        load_estimator(spec, arrays)
