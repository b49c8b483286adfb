"""`evaluate --out`: a non-empty folder is refused without --overwrite; with it, the old
results are replaced only once the new ones are complete; a busy folder is refused."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.evaluate import EvalConfig, EvaluationError, evaluate, read_metrics
from tests.evaluate.conftest import truth_embeddings

FAST = EvalConfig(n_splits=3, repeats=1, n_bootstrap=50, levels=["patient_mean"],
                  probes=["logistic"], horizons=[2], survival=False, retrieval=False)


def _args(cohort, emb, out, *extra: str) -> list[str]:
    return ["evaluate", "--cohort", str(cohort), "--embeddings", f"medimp={emb}", "--out",
            str(out), "--folds", "3", "--repeats", "1", "--bootstrap", "50", "--no-knn",
            "--horizon", "2", "--no-survival", "--no-report", *extra]


def test_non_empty_out_needs_overwrite(eval_cohort, tmp_path) -> None:
    emb = tmp_path / "medimp.parquet"
    truth_embeddings(eval_cohort, noise=1.0).to_parquet(emb)
    out = tmp_path / "results"
    out.mkdir()
    (out / "metrics.json").write_text("my earlier results")
    (out / "embeddings").mkdir()
    (out / "embeddings" / "medimp.parquet").write_bytes(b"mine")
    runner = CliRunner()
    res = runner.invoke(app, _args(eval_cohort, emb, out))
    assert res.exit_code == 1, res.output
    assert str(out) in res.output and "--overwrite" in res.output
    assert (out / "metrics.json").read_text() == "my earlier results"
    assert (out / "embeddings" / "medimp.parquet").read_bytes() == b"mine"

    res = runner.invoke(app, _args(eval_cohort, emb, out, "--overwrite"))
    assert res.exit_code == 0, res.output
    assert {r.method for r in read_metrics(out / "metrics.json").records} >= {"medimp"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".results.")
                and not p.name.startswith(".results.medimp-lock")]


def test_failed_overwrite_keeps_the_old_results(eval_cohort, tmp_path) -> None:
    out = tmp_path / "results"
    first = evaluate(eval_cohort, {"medimp": truth_embeddings(eval_cohort, noise=1.0)}, out,
                     FAST)
    before = first.metrics_path.read_bytes()
    assert first.out_dir == out and first.metrics_path == out / "metrics.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate(eval_cohort, {"medimp": _Interrupt()}, out, FAST, overwrite=True)
    assert (out / "metrics.json").read_bytes() == before


class _Interrupt:
    """A method source whose loading is interrupted (Ctrl-C while evaluating)."""

    def __fspath__(self) -> str:
        raise KeyboardInterrupt


def test_busy_out_is_refused(eval_cohort, tmp_path) -> None:
    from medimp._io import folder_lock

    out = tmp_path / "results"
    with folder_lock(out, "evaluation folder"), pytest.raises(EvaluationError, match="in use"):
        evaluate(eval_cohort, {"medimp": truth_embeddings(eval_cohort, noise=1.0)}, out, FAST)
    assert not out.exists()


def test_out_may_not_hold_an_input(eval_cohort, tmp_path) -> None:
    """--overwrite on the cohort folder (or a folder holding it, or a method's embeddings)
    would delete what the evaluation reads: refused, nothing touched."""
    import shutil

    cohort = tmp_path / "data" / "cohort"
    shutil.copytree(eval_cohort, cohort)
    emb = tmp_path / "data" / "medimp.parquet"
    truth_embeddings(eval_cohort, noise=1.0).to_parquet(emb)
    for out, methods in ((cohort, {}), (tmp_path / "data", {}),
                         (tmp_path / "other", {"medimp": emb})):
        if methods:
            (tmp_path / "other").mkdir()
            emb = shutil.move(emb, tmp_path / "other" / "medimp.parquet")
            methods = {"medimp": emb}
        with pytest.raises(EvaluationError, match="an input of this command"):
            evaluate(cohort, methods, out, FAST, overwrite=True)
    assert (cohort / "study.yaml").is_file() and (tmp_path / "other" / "medimp.parquet").is_file()


def test_overwrite_refuses_a_folder_with_the_users_files(eval_cohort, tmp_path) -> None:
    """--overwrite replaces an earlier evaluation, never a folder holding other files (found by
    the review: `evaluate --out ~/work --overwrite` deleted everything there)."""
    emb = tmp_path / "medimp.parquet"
    truth_embeddings(eval_cohort, noise=1.0).to_parquet(emb)
    out = tmp_path / "home"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    (out / "sub" / "data.csv").write_text("p")
    res = CliRunner().invoke(app, _args(eval_cohort, emb, out, "--overwrite"))
    assert res.exit_code == 1, res.output
    assert "thesis.tex" in res.output and "Traceback" not in res.output
    assert (out / "thesis.tex").read_text() == "precious"
    assert (out / "sub" / "data.csv").read_text() == "p"
