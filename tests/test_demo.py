"""End-to-end: the demo at tiny size, checked against the evaluation contract of docs/design.md."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medimp.demo import DemoConfig, run_demo
from medimp.evaluate import read_metrics

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(
        n_patients=30, shape=(16, 16, 16), epochs=1, batch_size=8, folds=3, repeats=1, seeds=2,
        bootstrap=50, workers=1, embed_dim=32, encoder="tiny_cnn_3d", encoder_kwargs={},
        evaluation={"levels": ["patient_mean"], "probes": ["logistic"],
                    "survival_event": "poor_status"},
    )
    return run_demo(out, cfg, overwrite=True, progress=False, log=lambda m: None)


def test_demo_writes_every_stage(demo) -> None:
    assert (demo.cohort / "study.yaml").is_file()
    assert set(demo.runs) == {"medimp", "random_init", "image_ssl", "tabular_clip"}
    for runs in demo.runs.values():
        assert [r.name for r in runs] == ["seed0", "seed1"]
        for run in runs:
            assert (run / "model.safetensors").is_file()
            assert (run / "model.json").is_file()
    html = demo.report.read_text()
    assert "<img" in html and 'src="http' not in html
    assert not demo.headline.empty
    assert list(demo.headline["runs"].loc[["medimp", "clinical_only"]]) == [2, 1]
    assert "What is and is not decided" in html


def test_seed_aware_records_and_comparisons(demo) -> None:
    m = read_metrics(demo.eval_dir / "metrics.json")
    agg = [r for r in m.records if r.method == "medimp" and r.run is None]
    assert agg and all(r.n_runs == 2 for r in agg)
    assert {r.run for r in m.records if r.method == "medimp"} == {None, "seed0", "seed1"}
    assert all(c.seed_variance for c in m.comparisons)
    # every comparison has a verdict, and the demo says them in one sentence per task
    assert all(c.verdict for c in m.comparisons if c.metric == "auc")
    tasks = {c.task for c in m.comparisons if c.metric == "auc" and c.level == "patient_mean"
             and c.probe == "logistic"}
    assert sorted(s.split(":")[0] for s in demo.decided) == sorted(tasks)


def test_metrics_schema_and_cis(demo) -> None:
    raw = json.loads((demo.eval_dir / "metrics.json").read_text())
    metrics = read_metrics(demo.eval_dir / "metrics.json")  # validates the schema
    assert metrics.header.horizons == [2, 3, 4]
    required = {"task", "method", "n", "n_pos", "auc", "auc_ci_low", "auc_ci_high",
                "balanced_accuracy", "f1"}
    assert raw["records"], "no metrics records"
    methods = {r["method"] for r in raw["records"]}
    assert {"medimp", "random_init", "image_ssl", "tabular_clip", "clinical_only",
            "oracle"} <= methods
    for rec in raw["records"]:
        assert required <= rec.keys()
        assert 0 < rec["n_pos"] < rec["n"]
        assert rec["auc_ci_low"] <= rec["auc"] <= rec["auc_ci_high"], rec


def test_no_patient_on_both_sides_of_any_fold(demo) -> None:
    folds = pd.read_parquet(demo.eval_dir / "folds.parquet")
    assert not folds.empty
    for _, g in folds.groupby(["task", "repeat", "fold"]):
        train = set(g.loc[g["side"] == "train", "patient_id"])
        test = set(g.loc[g["side"] == "test", "patient_id"])
        assert train and test
        assert not train & test


def test_demo_refuses_to_overwrite_without_flag(demo) -> None:
    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(Path(demo.out_dir), DemoConfig(n_patients=10), progress=False)


def test_demo_prints_the_clinic_tables(demo) -> None:
    """The eGFR R² table, the added-value comparisons and the answer, for the CLI to print."""
    assert set(demo.regression.columns) == {"egfr_y2", "egfr_y3", "egfr_y4"}
    assert {"medimp", "clinical_only", "clinical+medimp"} <= set(demo.regression.index)
    assert set(demo.added_value["model"]) == {f"clinical+{m}" for m in demo.runs}
    assert {a.method for a in demo.added_value_answers} == set(demo.runs)
