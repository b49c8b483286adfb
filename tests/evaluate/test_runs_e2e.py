"""Evaluation of real pretraining runs (run dirs, not embeddings files)."""

from __future__ import annotations

import pytest

from medimp.evaluate import EvalConfig, evaluate, read_metrics

TINY = {"image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
        "embed_dim": 16, "epochs": 1, "batch_size": 8, "val_fraction": 0.25,
        "preprocess": {"shape": [16, 16, 16]}, "augment": None,
        "optim": {"lr": 1e-3, "warmup_epochs": 0}, "log_every_n_steps": 1}


@pytest.mark.slow
def test_evaluate_run_dirs(make_cohort, tmp_path) -> None:
    from medimp.report import write_report
    from medimp.train import load_config, pretrain
    from medimp.train.config import apply_overrides

    cohort = make_cohort(40, (16, 16, 16), 0)
    runs = {}
    for method in ("medimp", "random_init"):
        cfg = load_config(None, apply_overrides(
            {**TINY, "cache_dir": str(tmp_path / "cache")}, [f"method={method}"]))
        runs[method] = pretrain(cohort, tmp_path / method, cfg)
    res = evaluate(cohort, runs, tmp_path / "eval",
                   EvalConfig(n_splits=3, repeats=1, n_bootstrap=100, levels=["patient_mean"],
                              probes=["logistic"], survival=False))
    m = read_metrics(res.metrics_path)
    assert {r.method for r in m.records} >= {"medimp", "random_init", "oracle"}
    assert m.header.methods["medimp"] == str(runs["medimp"])
    [ret] = m.retrieval  # only the text-prompt run has a text tower
    assert ret.method == "medimp" and ret.heldout and 0 <= ret.r_at_1 <= ret.r_at_10 <= 1
    assert ret.zero_shot_chance == pytest.approx(0.2)
    html = write_report(res.out_dir).read_text(encoding="utf-8")
    assert "Training curves" in html and 'alt="training curves"' in html
