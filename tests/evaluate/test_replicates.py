"""Several pretraining runs per method: per-run and aggregate records, seed-aware tests."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from medimp.evaluate import EvalConfig, EvaluationError, evaluate, read_metrics
from medimp.evaluate.intervals import corrected_interval
from medimp.evaluate.replicates import check_replicates, expand_methods
from tests.evaluate.conftest import noise_embeddings, truth_embeddings

QUICK = {"n_splits": 3, "repeats": 2, "levels": ["patient_mean"], "probes": ["logistic"],
         "horizons": [2, 3], "survival": False, "retrieval": False, "oracle": False,
         "clinical_only": False}


@pytest.fixture(scope="module")
def multi(eval_cohort, tmp_path_factory):
    runs = [truth_embeddings(eval_cohort, noise=n, seed=s)
            for s, n in enumerate((0.8, 1.0, 1.4))]
    methods = {"medimp": runs, "random_init": noise_embeddings(eval_cohort)}
    return evaluate(eval_cohort, methods, tmp_path_factory.mktemp("multi"), EvalConfig(**QUICK))


def test_one_record_per_run_and_an_aggregate(multi) -> None:
    m = read_metrics(multi.metrics_path)
    for task in ("status_y2", "status_y3"):
        per_run = [r for r in m.records if r.task == task and r.method == "medimp" and r.run]
        [agg] = [r for r in m.records if r.task == task and r.method == "medimp" and not r.run]
        assert sorted(r.run for r in per_run) == ["run0", "run1", "run2"]
        assert agg.n_runs == 3 and agg.auc_sd is not None and agg.auc_sd > 0
        assert agg.auc == pytest.approx(np.mean([r.auc for r in per_run]))
        assert agg.auc_sd == pytest.approx(np.std([r.auc for r in per_run], ddof=1))
        assert agg.auc_ci_low <= agg.auc <= agg.auc_ci_high
    assert m.header.runs["medimp"].keys() == {"run0", "run1", "run2"}
    assert any("random_init: one pretraining run" in n for n in m.header.notes)
    head = multi.headline()
    assert list(head["runs"]) == [3, 1] and "sd" in head.loc["medimp", "status_y2"]
    assert set(multi.predictions["run"]) == {"run0", "run1", "run2", ""}


def test_paired_comparison_carries_seed_variance(multi) -> None:
    comps = [c for c in multi.metrics.comparisons if c.other == "random_init"]
    assert comps and all(c.n_runs == 3 and c.other_n_runs == 1 and c.seed_variance
                         for c in comps)
    for c in comps:
        assert c.ci_low <= c.auc_diff <= c.ci_high and c.min_detectable_diff > 0
        # random_init is one pretraining run: its seed variance is unknown, nothing is decided
        assert c.verdict == "not decided: one pretraining run" and c.p_holm is None
    table = multi.comparison_table()
    assert set(table["runs"]) == {"3 vs 1"}
    assert set(table["verdict"]) == {"not decided: one pretraining run"}
    assert multi.decided() == [f"{t}: nothing is decided (random_init: one pretraining run)."
                               for t in ("status_y2", "status_y3")]


def test_a_fixed_table_is_compared_without_seed_variance_and_decided(eval_cohort,
                                                                     tmp_path) -> None:
    runs = [truth_embeddings(eval_cohort, noise=n, seed=s)
            for s, n in enumerate((0.8, 1.0, 1.4))]
    res = evaluate(eval_cohort, {"medimp": runs, "random_init": noise_embeddings(eval_cohort)},
                   tmp_path, EvalConfig(**QUICK, fixed_methods=["random_init"]))
    comps = res.metrics.comparisons
    assert comps and all(c.p_holm is not None and c.p_holm >= c.p_value for c in comps)
    for c in comps:
        assert c.verdict == ("better" if c.p_holm < 0.05 else
                             f"not decided: not significant (Holm p = {c.p_holm:.2g})")
    assert any(c.verdict == "better" for c in comps)
    assert not any("random_init: one pretraining run" in n for n in res.metrics.header.notes)


def test_seed_variance_widens_the_interval() -> None:
    rng = np.random.default_rng(0)
    folds = rng.normal(0.7, 0.05, 10)
    one = corrected_interval(folds, 0.25)
    spread = corrected_interval(np.stack([folds - 0.1, folds, folds + 0.1]), 0.25)
    assert spread.estimate == pytest.approx(one.estimate)
    assert spread.se > one.se and spread.seed_sd == pytest.approx(0.1)
    assert spread.df < one.df  # few runs: fewer degrees of freedom


def _fake_run(path, **over) -> None:
    path.mkdir(parents=True)
    info = {"format": "medimp-model/1", "method": "medimp",
            "image_encoder": {"name": "resnet10_3d", "kwargs": {}},
            "preprocess": {"shape": [32, 32, 32]}, "embed_dim": 64,
            "cohort_fingerprint": "abc", "config": {"epochs": 30, "seed": 0}}
    info.update(over)
    (path / "model.json").write_text(json.dumps(info))


def test_a_folder_of_seeds_and_a_glob_expand(tmp_path) -> None:
    for s in range(3):
        _fake_run(tmp_path / "runs" / f"seed{s}")
    members = expand_methods({"medimp": tmp_path / "runs"})
    assert [m.run for m in members] == ["seed0", "seed1", "seed2"]
    members = expand_methods({"medimp": str(tmp_path / "runs" / "seed[01]")})
    assert [m.run for m in members] == ["seed0", "seed1"]
    with pytest.raises(EvaluationError, match="matches no file"):
        expand_methods({"medimp": str(tmp_path / "nothing*")})
    [single] = expand_methods({"medimp": tmp_path / "runs" / "seed0"})
    assert single.run is None  # one run dir: the method's only run, as before


@pytest.mark.parametrize(("field", "value", "what"), [
    ("image_encoder", {"name": "vit_tiny_3d", "kwargs": {}}, "encoder"),
    ("preprocess", {"shape": [48, 48, 48]}, "preprocessing"),
    ("cohort_fingerprint", "zzz", "training cohort"),
])
def test_runs_that_are_not_replicates_are_refused(tmp_path, field, value, what) -> None:
    _fake_run(tmp_path / "a")
    _fake_run(tmp_path / "b", **{field: value})
    members = expand_methods({"medimp": [tmp_path / "a", tmp_path / "b"]})
    with pytest.raises(EvaluationError, match=f"differ in {what}"):
        check_replicates(members)


def test_report_shows_runs_and_what_is_decided(multi) -> None:
    from medimp.report import write_report

    page = write_report(multi.out_dir).read_text(encoding="utf-8")
    assert 'alt="runs"' in page  # the strip plot of per-run AUCs
    assert "What is and is not decided" in page
    assert re.search(r"<b>2 years \(n=\d+, \d+ poor\)</b>: nothing is decided \(random_init: "
                     r"one pretraining run\)\.", page)
    assert "better than no method" not in page
    assert "would usually go undetected" in page
    assert "one pretraining run" in page  # the note on random_init
    assert "† sd " in page and "<th>runs</th>" in page  # the seed-aware rows and their count


def test_a_broken_run_is_skipped_and_the_others_still_count(eval_cohort, tmp_path) -> None:
    good = truth_embeddings(eval_cohort, noise=1.0)
    broken = good.copy()
    broken.loc[3, "e1"] = np.nan
    res = evaluate(eval_cohort, {"medimp": [good, broken]}, tmp_path,
                   EvalConfig(**{**QUICK, "horizons": [2]}))
    [skip] = [s for s in res.metrics.skipped if s.method == "medimp"]
    assert skip.run == "run1" and "NaN" in skip.reason
    [own] = [r for r in res.metrics.records if r.method == "medimp" and r.run is None]
    assert own.n_runs == 1  # the method is still in the headline, from its one good run
    assert "medimp" in res.headline().index
