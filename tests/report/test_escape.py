"""A hostile method name or cohort column never reaches the page as markup."""

from __future__ import annotations

import json
from pathlib import Path

from medimp.evaluate import EvalConfig, evaluate, read_metrics
from medimp.report import write_report
from tests.evaluate.conftest import truth_embeddings

HOSTILE = "<img src=x onerror=alert(1)>"  # no "/": it also names embeddings/<method>.parquet


def test_a_method_named_like_markup_is_escaped(eval_dir, tmp_path) -> None:
    cohort = Path(read_metrics(eval_dir / "metrics.json").header.cohort)  # the fixture's
    evaluate(cohort, {HOSTILE: truth_embeddings(cohort, noise=1.0)}, tmp_path / "e",
             EvalConfig(n_splits=3, repeats=1, levels=["patient_mean"], probes=["logistic"],
                        horizons=[2], survival=False, retrieval=False,
                        reference_method=HOSTILE))
    page = write_report(tmp_path / "e").read_text(encoding="utf-8")
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_script_in_an_old_metrics_file_is_escaped(eval_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "eval"
    shutil.copytree(eval_dir, copy)
    data = json.loads((copy / "metrics.json").read_text(encoding="utf-8"))
    script = "<script>alert('x')</script>"
    for rec in data["records"]:
        rec["method"] = rec["method"].replace("random_init", script)
    data["header"]["notes"].append(f"a note with {script}")
    data["skipped"].append({"task": script, "method": script, "run": None, "reason": script})
    (copy / "metrics.json").write_text(json.dumps(data), encoding="utf-8")
    page = write_report(copy).read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
