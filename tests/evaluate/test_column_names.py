"""A clinic's column names (spaces, parentheses, units, accents) reach every stage intact.

A cohort exported by a clinic names its columns ``eGFR (mL/min/1.73m2)`` or ``Âge donneur
(années)``: not Python identifiers. Every stage reads a column by its name, never as an
attribute of a row, so the evaluation of a text-prompt run (retrieval and zero-shot read the
eGFR column of exams.csv) and of the clinical table must work on them as on ``egfr``.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from medimp.evaluate import EvalConfig, evaluate, read_metrics
from medimp.study import load_study

TINY = {"image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
        "embed_dim": 16, "epochs": 1, "batch_size": 8, "val_fraction": 0.25,
        "preprocess": {"shape": [16, 16, 16]}, "augment": None,
        "optim": {"lr": 1e-3, "warmup_epochs": 0}, "log_every_n_steps": 1}

EGFR = "eGFR (mL/min/1.73m2)"
AGE = "Âge donneur (années)"


def rename_columns(src, dst):
    """Copy a simulated cohort, renaming its eGFR and donor-age columns as a clinic would."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".medimp_cache"))
    exams = pd.read_csv(dst / "exams.csv", dtype={"patient_id": str})
    exams.rename(columns={"egfr": EGFR}).to_csv(dst / "exams.csv", index=False)
    pats = pd.read_csv(dst / "patients.csv", dtype={"patient_id": str})
    pats.rename(columns={"donor_age": AGE}).to_csv(dst / "patients.csv", index=False)
    raw = yaml.safe_load((dst / "study.yaml").read_text(encoding="utf-8"))
    for var in raw["variables"]:
        var["column"] = {"egfr": EGFR, "donor_age": AGE}.get(var["column"], var["column"])
    raw["exam_columns"] = [EGFR if c == "egfr" else c for c in raw["exam_columns"]]
    raw["baseline_columns"] = [AGE if c == "donor_age" else c for c in raw["baseline_columns"]]
    (dst / "study.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert load_study(dst / "study.yaml").variable("gfr").column == EGFR
    return dst


@pytest.mark.slow
def test_evaluate_a_text_run_on_non_identifier_columns(make_cohort, tmp_path) -> None:
    from medimp.train import load_config, pretrain
    from medimp.train.config import apply_overrides

    cohort = rename_columns(make_cohort(24, (16, 16, 16), 0), tmp_path / "clinic")
    cfg = load_config(None, apply_overrides({**TINY, "cache_dir": str(tmp_path / "cache")},
                                            ["method=medimp"]))
    run = pretrain(cohort, tmp_path / "run", cfg)
    res = evaluate(cohort, {"medimp": run}, tmp_path / "eval",
                   EvalConfig(n_splits=3, repeats=1, levels=["patient_mean"],
                              probes=["logistic"], survival=False))
    m = read_metrics(res.metrics_path)
    assert {r.method for r in m.records} >= {"medimp", "clinical_only"}
    [ret] = m.retrieval  # zero-shot read the renamed eGFR column by its name
    assert ret.method == "medimp" and ret.zero_shot_accuracy is not None
    assert not [s for s in m.skipped if "eGFR" in s.reason or "Âge" in s.reason]
