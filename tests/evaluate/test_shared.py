"""Work the evaluation shares or shortens gives the very numbers of the work it replaces.

Every check is bit for bit (``np.array_equal``, ``==``) on real data (the simulator's clinical
table, a simulated cohort), except the closed-form ridge path, which is checked against
scikit-learn's own cross-validation to 1e-9 (another order of the same arithmetic).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from medimp.data import Cohort, read_cohort
from medimp.evaluate import EvalConfig, evaluate
from medimp.evaluate.baselines import clinical_features
from medimp.evaluate.embeddings import feature_columns, level_data
from medimp.evaluate.intervals import _given_v
from medimp.evaluate.labels import make_labels
from medimp.evaluate.models import make_model, make_preprocessor
from medimp.evaluate.probes import KNNProbe, group_mean, inner_splits
from medimp.evaluate.regression import RidgeProbe, _strata, make_targets
from medimp.evaluate.shared import clear, combined_split, logistic_scores, scaled_split


@pytest.fixture(scope="module")
def cohort(make_cohort) -> Cohort:
    return read_cohort(make_cohort(40, (16, 16, 16), 0, "nifti"))


@pytest.fixture(scope="module")
def clinical(cohort) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A simulated cohort's clinical table at every exam (NaN where a value is missing or not
    yet known), an 'embedding' of 12 columns drawn beside it, and the status at 2 years."""
    feats = clinical_features(cohort)
    rows = feats[feats["level"] == "exam"]
    X = rows[feature_columns(rows)].to_numpy(float)
    X[::5, -1] = np.nan  # missing values, as a clinic's export has: the imputer is exercised
    emb = np.random.default_rng(0).normal(size=(len(X), 12))
    lab = make_labels(cohort, 2).set_index("patient_id")["label"]
    return X, emb, lab.loc[rows["patient_id"]].fillna(0).to_numpy(int)


def test_combined_split_is_the_column_transformer(clinical) -> None:
    X, emb, _ = clinical
    Xc = np.hstack([X, emb])
    tr, te = np.arange(0, 100), np.arange(100, len(Xc))
    for k in (0, 3, 8):
        clear()
        pre = make_preprocessor("combined", n_clinical=X.shape[1], k=k, seed=0)
        want_tr, want_te = pre.fit_transform(Xc[tr]), pre.transform(Xc[te])
        for _ in range(2):  # computed, then the clinical part looked up
            got_tr, got_te = combined_split(Xc[tr], Xc[te], X.shape[1], k, 0)
            assert np.array_equal(got_tr, want_tr) and np.array_equal(got_te, want_te)


@pytest.mark.parametrize("impute", [True, False])
def test_scaled_split_is_the_probe_pipeline(clinical, impute) -> None:
    X, emb, _ = clinical
    data = X if impute else emb
    pipe = make_preprocessor("clinical" if impute else "embedding").fit(data[:100])
    got = scaled_split(data[:100], data[100:], impute)
    assert np.array_equal(got[0], pipe.transform(data[:100]))
    assert np.array_equal(got[1], pipe.transform(data[100:]))
    assert not got[0].flags.writeable  # shared: nobody may change it


def test_logistic_scores_are_a_fresh_fit(clinical) -> None:
    _, emb, y = clinical
    from sklearn.linear_model import LogisticRegression

    want = LogisticRegression(C=0.1, max_iter=2000).fit(emb[:100], y[:100]).predict_proba(
        emb[100:])[:, 1]
    for _ in range(2):
        assert np.array_equal(logistic_scores(emb[:100], y[:100], emb[100:], 0.1, 2000), want)


def test_one_knn_fit_serves_every_k(clinical) -> None:
    _, emb, y = clinical
    probe = KNNProbe(ks=(5, 10, 20))
    got = probe._inner_scores(emb[:100], y[:100], emb[100:], probe.ks)
    for g, k in enumerate(probe.ks):  # a fresh fit per k, algorithm left to scikit-learn
        knn = KNeighborsClassifier(n_neighbors=k, weights="distance", metric="cosine")
        assert np.array_equal(got[g], knn.fit(emb[:100], y[:100]).predict_proba(emb[100:])[:, 1])


def test_rejection_integrand_is_scipy_stats() -> None:
    for df in (1.0, 1.7, 2.5, 4.0, 14.0):
        crit = float(stats.t.ppf(0.975, df))
        for nc in (0.0, 1.3, 6.0):
            for v in (1e-8, 0.3, 1.0, 2.2, 7.5, 40.0):
                c = crit * np.sqrt(v / df)
                want = (stats.norm.sf(c - nc) + stats.norm.cdf(-c - nc)) * stats.chi2.pdf(v, df)
                assert _given_v(v, crit, df, nc) == float(want)


@pytest.mark.parametrize("kind", ["clinical", "combined"])
def test_ridge_path_matches_scikit_learn_cross_validation(cohort, kind) -> None:
    """The probe's closed-form inner CV (one SVD per inner fold for every alpha) gives the
    out-of-fold MSE that scikit-learn's ``cross_val_predict`` of the same ``Ridge`` pipeline
    gives on the same inner folds, for every alpha (and k), so it chooses the same alpha."""
    feats = clinical_features(cohort)
    first = level_data(feats, "patient_mean", cohort, cohort.patients["patient_id"].to_numpy(str))
    tg = make_targets(cohort, 3).set_index("patient_id")
    keep = [p for p in first.patient_id if tg.loc[p, "known"]]
    X = first.X[np.isin(first.patient_id, keep)]
    y = tg.loc[keep, "target"].to_numpy(float)
    n_clin, ks = X.shape[1], (0,)
    if kind == "combined":  # an image part that carries some of the target
        rng = np.random.default_rng(1)
        X = np.hstack([X, y[:, None] * rng.normal(1, 0.3, (1, 6)) + rng.normal(0, 20, (len(y), 6))])
        ks = (0, 2, 4)
    groups = np.array(keep)
    alphas = (0.1, 1.0, 10.0, 100.0, 1000.0)
    probe = RidgeProbe(alphas, method_kind=kind, n_clinical=n_clin if kind == "combined" else 0,
                       ks=ks).fit(X, y, groups=groups)
    cv = list(inner_splits(_strata(y, groups), groups, 3, 0))
    want = np.empty((len(ks), len(alphas)))
    for i, k in enumerate(ks):
        for a, alpha in enumerate(alphas):
            model = make_model("continuous", kind, alpha=alpha, n_clinical=n_clin, k=k)
            pred = cross_val_predict(model, X, y, cv=cv)
            want[i, a] = np.mean((group_mean(pred, groups)[1] - group_mean(y, groups)[1]) ** 2)
    assert probe.inner_mse_ == pytest.approx(want, rel=1e-9)
    i, a = np.unravel_index(int(np.argmin(want)), want.shape)
    assert probe.best_param_ == alphas[a] and probe.best_k_ == ks[i]


def _outputs(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["header"].pop("created")
    metrics["header"]["protocol"].pop("n_jobs")  # the one setting that differs
    return (metrics, pd.read_parquet(folder / "predictions.parquet"),
            pd.read_parquet(folder / "egfr_predictions.parquet"))


def test_jobs_1_and_2_write_the_same_results(make_cohort, tmp_path) -> None:
    """Two pretraining runs of two methods (so the clinical+NAME models share their clinical
    part and k = 0 fits), both probes: one process and two write the same files."""
    cohort = make_cohort(30, (16, 16, 16), 0, "nifti")
    exams = pd.read_csv(cohort / "exams.csv", dtype={"patient_id": str, "exam": str})
    rng = np.random.default_rng(0)
    methods: dict[str, list[pd.DataFrame]] = {}
    for name in ("medimp", "image_ssl"):
        for _ in range(2):
            df = exams[["patient_id", "exam"]].assign(level="exam").reset_index(drop=True)
            methods.setdefault(name, []).append(pd.concat(
                [df, pd.DataFrame(rng.normal(size=(len(df), 6)),
                                  columns=[f"e{i}" for i in range(6)])], axis=1))
    cfg = {"n_splits": 3, "repeats": 1, "horizons": [3], "levels": ["patient_mean"],
           "survival": False, "retrieval": False, "oracle": False}
    out = {}
    for jobs in (1, 2):
        clear()  # each run computes everything itself
        evaluate(cohort, methods, tmp_path / str(jobs), EvalConfig(**cfg, n_jobs=jobs))
        out[jobs] = _outputs(tmp_path / str(jobs))
    m1, p1, e1 = out[1]
    m2, p2, e2 = out[2]
    assert m1 == m2
    pd.testing.assert_frame_equal(p1, p2, check_exact=True)
    pd.testing.assert_frame_equal(e1, e2, check_exact=True)
    methods_seen = {r["method"] for r in m1["records"]}
    assert {"clinical+medimp", "clinical+image_ssl"} <= methods_seen and m1["regression"]


def test_store_is_bounded_in_bytes(monkeypatch):
    """A repeat returns the very arrays stored; the same values in another memory layout are
    another entry (their result may differ in its last bits); past MAX_BYTES the oldest
    entries are dropped and computed again."""
    from medimp.evaluate import shared

    clear()
    rng = np.random.default_rng(0)
    xs = [(rng.normal(size=(40, 6)), rng.normal(size=(10, 6))) for _ in range(3)]
    first = scaled_split(*xs[0], False)
    assert scaled_split(*xs[0], False)[0] is first[0]
    assert scaled_split(np.asfortranarray(xs[0][0]), xs[0][1], False)[0] is not first[0]
    clear()
    first = scaled_split(*xs[0], False)
    one_entry = first[0].nbytes + first[1].nbytes
    monkeypatch.setattr(shared, "MAX_BYTES", 2 * one_entry)
    last = [scaled_split(*x, False) for x in xs][-1]
    assert scaled_split(*xs[-1], False)[0] is last[0]  # kept
    again = scaled_split(*xs[0], False)  # dropped as the oldest: computed again, same values
    assert again[0] is not first[0]
    np.testing.assert_array_equal(again[0], first[0])
    clear()


def test_stored_logistic_scores_do_not_depend_on_the_layout_seen_first():
    """Whichever layout of the same values was computed first (an F-ordered table, as pandas
    hands it out, or a C-ordered copy), each call gets the bits a fresh LogisticRegression
    computes for its own arrays (they differ here)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    c_order = rng.normal(size=(40, 12)), rng.normal(size=(15, 12))
    y = (c_order[0][:, 0] + rng.normal(size=40) > 0).astype(int)
    f_order = np.asfortranarray(c_order[0]), np.asfortranarray(c_order[1])
    fresh = {id(pair): LogisticRegression(C=1.0).fit(pair[0], y).predict_proba(pair[1])[:, 1]
             for pair in (f_order, c_order)}
    assert fresh[id(f_order)].tobytes() != fresh[id(c_order)].tobytes()
    for order in ((f_order, c_order), (c_order, f_order)):
        clear()
        for pair in order:
            assert logistic_scores(pair[0], y, pair[1], 1.0, 100).tobytes() == \
                fresh[id(pair)].tobytes()
    clear()
