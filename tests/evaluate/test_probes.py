"""Probes follow the scikit-learn contract and choose thresholds on training data only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from medimp.data import read_cohort
from medimp.evaluate import KNNProbe, LogisticProbe, ProbeError
from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.labels import make_labels
from tests.evaluate.conftest import truth_embeddings


def _data(seed=0, n_pat=30, per=3):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n_pat)
    y_pat = (z > 0).astype(int)
    groups = np.repeat([f"P{i}" for i in range(n_pat)], per)
    X = np.repeat(z, per)[:, None] + rng.normal(0, 0.5, (n_pat * per, 4))
    return X, np.repeat(y_pat, per), groups


@pytest.mark.parametrize("cls", [LogisticProbe, KNNProbe])
def test_sklearn_contract(cls) -> None:
    X, y, g = _data()
    probe = cls(seed=3)
    assert clone(probe).get_params() == probe.get_params()
    assert not any(k.endswith("_") for k in vars(probe))  # __init__ stores hyper-params only
    assert probe.fit(X, y, groups=g) is probe
    learned = {k for k in vars(probe) if k not in probe.get_params()}
    assert learned and all(k.endswith("_") for k in learned)
    assert 0 <= probe.threshold_ <= 1
    assert ((probe.predict_proba(X)[:, 1] >= probe.threshold_) == probe.predict(X)).all()
    assert (probe.predict(X) == y).mean() > 0.8


def test_nan_and_single_class_are_refused() -> None:
    X, y, g = _data()
    X2 = X.copy()
    X2[0, 0] = np.nan
    with pytest.raises(ProbeError, match="NaN"):
        LogisticProbe().fit(X2, y, groups=g)
    LogisticProbe(impute=True).fit(X2, y, groups=g)  # clinical tables may have gaps
    with pytest.raises(ProbeError, match="2 patients of each class"):
        LogisticProbe().fit(X, np.zeros_like(y), groups=g)


def test_test_fold_labels_do_not_reach_the_threshold(eval_cohort) -> None:
    """Flipping the labels of one test fold changes nothing that fold's probe learned."""
    tables = read_cohort(eval_cohort)
    lab = make_labels(tables, 3)
    lab = lab[lab["known"]]
    patients, y = lab["patient_id"].to_numpy(str), lab["label"].to_numpy(int)
    splits = make_splits(patients, y, n_splits=3, repeats=1, seed=0)
    emb = truth_embeddings(eval_cohort, noise=1.0)
    flipped = y.copy()
    flipped[splits[0].test] = 1 - flipped[splits[0].test]

    def run(labels):
        return cross_validate(emb, patients, labels, level="exam", tables=tables,
                              splits=splits, make_probe=lambda: LogisticProbe(seed=0))

    a, b = run(y), run(flipped)
    assert a.folds[0].threshold == b.folds[0].threshold
    assert a.folds[0].param == b.folds[0].param
    test = splits[0].test
    np.testing.assert_array_equal(a.scores[0, test], b.scores[0, test])
    # the other folds train on the flipped patients, so their probes do change
    assert any(fa.threshold != fb.threshold or fa.param != fb.param
               for fa, fb in zip(a.folds[1:], b.folds[1:], strict=True)) or not np.allclose(
        a.scores[0, splits[1].test], b.scores[0, splits[1].test])


def test_probe_registry_builds_from_the_config() -> None:
    from medimp.evaluate import EvalConfig, ProbeError, create_probe, list_probes, register_probe

    assert {"logistic", "knn"} <= set(list_probes())
    cfg = EvalConfig(Cs=[0.5, 2.0], knn_ks=[3], inner_splits=4, seed=7)
    lr = create_probe("logistic", cfg, impute=True)
    assert isinstance(lr, LogisticProbe)
    assert (lr.Cs, lr.inner_splits, lr.seed, lr.impute) == ((0.5, 2.0), 4, 7, True)
    knn = create_probe("knn", cfg)
    assert isinstance(knn, KNNProbe) and knn.ks == (3,) and knn.seed == 7
    assert create_probe("logistic").get_params() == LogisticProbe().get_params()
    with pytest.raises(ProbeError, match=r"unknown probe 'svm'; choose one of: .*logistic"):
        create_probe("svm")
    with pytest.raises(ProbeError, match=r"probe 'knn': .*Cs"):
        create_probe("knn", Cs=(1.0,))
    with pytest.raises(ProbeError, match="already registered"):
        register_probe(KNNProbe, name="logistic")
    assert register_probe(LogisticProbe, name="logistic") is LogisticProbe  # idempotent


@pytest.mark.parametrize("groups", [np.repeat([f"P{i:02d}" for i in range(20)], 3),
                                    np.repeat(np.arange(20), 3),
                                    np.repeat(np.array([f"P{i}" for i in range(20)],
                                                       dtype=object), 3)])
def test_inner_splits_are_scikit_learns_and_memoised(groups) -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    from medimp.evaluate.probes import inner_splits

    rng = np.random.default_rng(0)
    y = np.repeat(rng.integers(0, 2, 20), 3)
    want = list(StratifiedGroupKFold(3, shuffle=True, random_state=5).split(
        np.zeros((len(y), 1)), y, groups))
    got = inner_splits(y, groups, 3, 5)
    assert len(got) == len(want)
    for (tr, te), (wtr, wte) in zip(got, want, strict=True):
        np.testing.assert_array_equal(tr, wtr)
        np.testing.assert_array_equal(te, wte)
    assert inner_splits(y.copy(), groups.copy(), 3, 5) is got  # same inputs: computed once
    # other labels, another seed or other groups: other splits, never a stale entry
    y2 = y.copy()
    y2[:3] = 1 - y2[:3]
    for args in ((y2, groups, 3, 5), (y, groups, 3, 6), (y, groups[::-1].copy(), 3, 5)):
        want = list(StratifiedGroupKFold(args[2], shuffle=True, random_state=args[3]).split(
            np.zeros((len(y), 1)), args[0], args[1]))
        for (tr, te), (wtr, wte) in zip(inner_splits(*args), want, strict=True):
            np.testing.assert_array_equal(tr, wtr)
            np.testing.assert_array_equal(te, wte)


@pytest.mark.parametrize("cls", [LogisticProbe, KNNProbe])
def test_threshold_is_the_refitted_models_own(cls) -> None:
    """Youden's J on the inner-CV predictions fixes how many training patients to call
    positive; the threshold makes the *refitted* model call exactly that many of them
    positive. The inner models' cut-off, in their probability units, did not: the refitted
    model (more data, same penalty) gives more extreme probabilities."""
    from medimp.evaluate.probes import group_mean

    X, y, g = _data(seed=4, n_pat=40)
    X = X + np.random.default_rng(5).normal(0, 1.5, X.shape)  # overlapping classes
    probe = cls(seed=0).fit(X, y, groups=g)
    own = group_mean(probe._own_scores(X, y, g), g)[1]
    assert probe.n_called_ > 0
    assert int((own >= probe.threshold_).sum()) == probe.n_called_
    assert ((probe.predict_proba(X)[:, 1] >= probe.threshold_) == probe.predict(X)).all()

    def differs(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        z = rng.normal(size=40)
        Xh = np.column_stack([z + rng.normal(0, 1, 40), rng.normal(size=(40, 15))])
        yh = (z > 0).astype(int)
        p = cls(seed=0).fit(Xh, yh)
        return int((p._own_scores(Xh, yh, np.arange(40)) >= p.inner_threshold_).sum()
                   ) != p.n_called_

    # with many features the refitted model's scale differs from the inner models': their
    # cut-off, used as it was before, would call another number of patients positive
    assert any(differs(seed) for seed in range(4))
