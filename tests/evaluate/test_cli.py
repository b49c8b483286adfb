"""`medimp evaluate` from the command line."""

from __future__ import annotations

from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.evaluate import read_metrics
from tests.evaluate.conftest import truth_embeddings


def test_evaluate_command(eval_cohort, tmp_path) -> None:
    emb = tmp_path / "medimp.parquet"
    truth_embeddings(eval_cohort, noise=1.0).to_parquet(emb)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        "evaluate", "--cohort", str(eval_cohort), "--embeddings", f"medimp={emb}",
        "--out", str(out), "--folds", "3", "--repeats", "1", "--bootstrap", "50",
        "--no-knn", "--horizon", "2"])
    assert res.exit_code == 0, res.output
    assert "status_y2" in res.output and "report:" in res.output
    m = read_metrics(out / "metrics.json")
    assert {r.method for r in m.records} >= {"medimp", "clinical_only", "oracle"}
    assert (out / "report.html").is_file()
    # --bootstrap is still accepted, says once that it is ignored, and no longer claims a role
    warnings = [ln for ln in res.stderr.splitlines() if "--bootstrap" in ln]
    assert len(warnings) == 1 and "deprecated and ignored" in warnings[0]
    for command in ("evaluate", "demo"):
        text = CliRunner().invoke(app, [command, "--help"], terminal_width=200).output
        assert "--bootstrap" in text and "Deprecated" in text
        assert "resamples for the CIs" not in text


def test_bad_arguments_exit_2(eval_cohort, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--cohort", str(eval_cohort), "--embeddings",
                              "medimp", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "NAME=PATH" in res.output
    res = runner.invoke(app, ["evaluate", "--cohort", str(tmp_path), "--embeddings",
                              f"x={tmp_path}", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "study.yaml" in res.output


def test_nothing_evaluated_exits_non_zero_with_the_reasons(tmp_path) -> None:
    from tests.evaluate.conftest import write_cohort

    cohort = write_cohort(tmp_path / "small", n_patients=6)  # too few for 5 folds
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["evaluate", "--cohort", str(cohort), "--out", str(out),
                                   "--folds", "5", "--repeats", "1", "--bootstrap", "20",
                                   "--no-report"])
    assert res.exit_code == 2, res.output
    assert "Empty DataFrame" not in res.output and "Traceback" not in res.output
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("error: nothing could be evaluated")
    skipped = [ln for ln in err if ln.startswith("skipped (status_y")]
    assert len(skipped) == 3 and all("fewer than the 5 folds" in ln for ln in skipped)
    assert (out / "metrics.json").is_file()  # the reasons are kept there too
