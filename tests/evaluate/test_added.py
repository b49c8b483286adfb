"""clinical+NAME models: the combined table, the factory's pipelines, the k = 0 fallback."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from medimp.data import read_cohort
from medimp.evaluate import LogisticProbe
from medimp.evaluate.added import CombinedLogisticProbe, combined_features
from medimp.evaluate.baselines import clinical_features
from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.labels import make_labels
from medimp.evaluate.models import make_model
from medimp.evaluate.regression import (
    RidgeProbe,
    cross_validate_regression,
    fold_scores,
    make_targets,
)

from .conftest import noise_embeddings, truth_embeddings


@pytest.fixture(scope="module")
def setup(eval_cohort):
    tables = read_cohort(eval_cohort)
    lab = make_labels(tables, 2)
    known = lab[lab["known"]]
    patients, y = known["patient_id"].to_numpy(str), known["label"].to_numpy(int)
    return tables, patients, y, make_splits(patients, y, 3, 1, 0)


def _leaves(est):
    if hasattr(est, "steps"):
        return [leaf for _, step in est.steps for leaf in _leaves(step)]
    if hasattr(est, "transformers"):
        return [leaf for _, t, _ in est.transformers if t != "drop" for leaf in _leaves(t)]
    return [est]


@pytest.mark.parametrize("task", ["binary", "continuous"])
@pytest.mark.parametrize("kind", ["embedding", "clinical", "combined"])
def test_factory_builds_standard_sklearn_pipelines(task, kind):
    model = make_model(task, kind, n_clinical=3, k=2)
    names = {type(leaf).__name__ for leaf in _leaves(model)}
    assert all(type(leaf).__module__.startswith("sklearn.") for leaf in _leaves(model))
    assert ("LogisticRegression" if task == "binary" else "Ridge") in names
    assert ("PCA" in names) == (kind == "combined")
    assert ("SimpleImputer" in names) == (kind != "embedding")
    clone(model)  # a plain estimator: parameters only, no state
    with pytest.raises(ValueError, match="task kind"):
        make_model("survival", kind)  # type: ignore[arg-type]


def test_combined_table_layout(eval_cohort, setup):
    tables = setup[0]
    clin = clinical_features(tables)
    emb = truth_embeddings(eval_cohort, noise=0.5)
    table, n_clin = combined_features(clin, emb, "x")
    assert n_clin == len(clin.columns) - 3
    feats = [c for c in table.columns if c not in ("patient_id", "exam", "level")]
    assert all(c.startswith("c_") for c in feats[:n_clin])
    assert feats[n_clin:] == [f"x_e{i}" for i in range(8)]
    assert len(table) == len(emb)  # every exam kept
    # an embedding with patient rows only is repeated at every exam of the patient
    pat = emb.groupby("patient_id", as_index=False)[[f"e{i}" for i in range(8)]].mean()
    pat.insert(1, "exam", None)
    pat.insert(2, "level", "patient")
    table2, _ = combined_features(clin, pat, "x")
    assert len(table2) == len(clin)


def test_k0_falls_back_to_the_clinical_table_exactly(eval_cohort, setup):
    tables, patients, y, splits = setup
    clin = clinical_features(tables)
    table, n_clin = combined_features(clin, noise_embeddings(eval_cohort), "noise")
    alone = cross_validate(clin, patients, y, level="patient_mean", tables=tables,
                           splits=splits, make_probe=lambda: LogisticProbe(impute=True))
    fallback = cross_validate(table, patients, y, level="patient_mean", tables=tables,
                              splits=splits,
                              make_probe=lambda: CombinedLogisticProbe(n_clin, ks=(0,)))
    assert fallback.scores == pytest.approx(alone.scores, abs=1e-6)
    assert [f.threshold for f in fallback.folds] == pytest.approx(
        [f.threshold for f in alone.folds])


def test_informative_images_are_used(eval_cohort, setup):
    """Images that carry the latent truth add to a clinical table that already holds the
    exam's eGFR: the combined ridge model keeps components and explains more variance."""
    tables, patients, _, splits = setup
    clin = clinical_features(tables)
    table, n_clin = combined_features(clin, truth_embeddings(eval_cohort, noise=0.1), "t")
    tg = make_targets(tables, 2).set_index("patient_id").loc[patients, "target"]
    tests = [(s.repeat, s.test) for s in splits]

    def r2_of(features, probe):
        res = cross_validate_regression(features, patients, tg.to_numpy(float),
                                        level="patient_mean", tables=tables, splits=splits,
                                        make_probe=probe)
        return float(np.mean(fold_scores(res.y, res.predictions, tests)["r2"])), res

    both, res = r2_of(table, lambda: RidgeProbe(method_kind="combined", n_clinical=n_clin,
                                                ks=(0, 2, 4)))
    alone, _ = r2_of(clin, lambda: RidgeProbe(method_kind="clinical"))
    assert sum(k > 0 for _, k in res.params) >= 2
    assert both > alone + 0.03


def test_probes_refit_the_factory_pipelines(setup):
    """The fitted models of the probes are make_model's pipelines (exportable without
    pickles): the same steps, and the predictions of a fresh make_model fit."""
    tables, patients, y, _ = setup
    clin = clinical_features(tables)
    from medimp.evaluate.embeddings import level_data

    data = level_data(clin, "patient_mean", tables, patients)
    probe = LogisticProbe(impute=True).fit(data.X, y)
    ref = make_model("binary", "clinical", C=probe.C_).fit(data.X, y)
    assert [n for n, _ in probe.model_.steps] == [n for n, _ in ref.steps]
    assert probe.predict_proba(data.X) == pytest.approx(ref.predict_proba(data.X))
    ridge = RidgeProbe(method_kind="clinical").fit(data.X, y.astype(float))
    assert [n for n, _ in ridge.model_.steps] == ["features", "model"]


def _comp(metric, diff, verdict, mdd=0.1, p_holm=0.5, n_runs=3):
    from medimp.evaluate.metrics import Comparison

    return Comparison(task="status_y2" if metric != "r2" else "egfr_y2",
                      method="clinical+img", other="clinical_only", level="patient_mean",
                      probe="logistic", n=40, metric=metric, **{f"{metric}_diff": diff},
                      ci_low=diff - 0.1, ci_high=diff + 0.1, p_value=p_holm, p_holm=p_holm,
                      min_detectable_diff=mdd, verdict=verdict, n_runs=n_runs)


def test_the_answer_reads_the_verdicts():
    from medimp.evaluate.added import added_value_answers

    open_ = "not decided: not significant after Holm's adjustment (p = 0.5)"
    [yes] = added_value_answers([_comp("auc", 0.02, open_, 0.15),
                                 _comp("r2", 0.08, "better", 0.05, p_holm=0.01)])
    assert yes.answer == "yes" and "egfr_y2 ΔR² +0.080" in yes.sentence
    [no] = added_value_answers([_comp("brier", 0.05, "worse", p_holm=0.02),
                                _comp("auc", 0.0, open_)])
    assert no.answer == "no"
    [undecided] = added_value_answers([_comp("auc", 0.02, open_, 0.15),
                                       _comp("brier", -0.01, open_, 0.04),
                                       _comp("r2", 0.01, open_, 0.06)])
    assert undecided.answer == "not decided"
    assert "ΔAUC 0.150, ΔBrier 0.040, ΔR² 0.060 goes unseen" in undecided.sentence
    assert undecided.min_detectable == {"auc": 0.15, "brier": 0.04, "r2": 0.06}
    [one] = added_value_answers([_comp("auc", 0.3, "not decided: one pretraining run",
                                       n_runs=1)])
    assert one.answer == "not decided" and "one pretraining run" in one.sentence
