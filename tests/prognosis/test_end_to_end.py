"""A prognosis model you can validate elsewhere and apply, end to end on simulated files:
simulate DEV and EXT (another site), pretrain on DEV, `evaluate --external`, `fit-prognosis`,
blank EXT's outcomes and `predict`: predict's estimates give exactly the external figures."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import medimp
from medimp.cli.main import app
from medimp.evaluate.labels import make_labels
from medimp.evaluate.metrics import read_metrics
from medimp.evaluate.scoring import auc
from medimp.prognosis import PREDICTION_COLUMNS, PrognosisError
from medimp.simulate import simulate_cohort

pytestmark = pytest.mark.slow

TINY = {"image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
        "embed_dim": 8, "epochs": 1, "batch_size": 8, "val_fraction": 0.25,
        "preprocess": {"shape": [16, 16, 16]}, "augment": {},
        "optim": {"lr": 1e-3, "warmup_epochs": 0}, "log_every_n_steps": 1}
OUTCOMES = ["egfr_y2", "egfr_y3", "egfr_y4", "graft_loss", "graft_loss_days", "followup_days"]


def cli(*args: str):
    return CliRunner().invoke(app, list(map(str, args)))


def tiny_run(cohort: Path, out: Path, seed: int, cache: Path) -> Path:
    from medimp.train import load_config, pretrain
    from medimp.train.config import apply_overrides

    cfg = load_config(None, apply_overrides({**TINY, "cache_dir": str(cache)},
                                            ["method=image_ssl", f"seed={seed}"]))
    return pretrain(cohort, out, cfg, progress=False)


@pytest.fixture(scope="module")
def world(make_cohort, tmp_path_factory) -> dict[str, Path]:
    """DEV (site 0), EXT (site 1, other patients), two pretraining runs on DEV, evaluated
    with --external and fitted with fit-prognosis."""
    root = tmp_path_factory.mktemp("prognosis")
    dev = make_cohort(24, (16, 16, 16), 0)
    ext = simulate_cohort(root / "ext", 16, shape=(16, 16, 16), seed=1, workers=1,
                          progress=False, site=1)
    runs = root / "runs"
    for s in (0, 1):
        tiny_run(dev, runs / f"seed{s}", s, root / "cache")
    res = cli("evaluate", "--cohort", dev, "--external", ext, "--runs", f"ssl={runs}",
              "--out", root / "eval", "--folds", "2", "--repeats", "1", "--no-knn",
              "--no-survival", "--no-report")
    assert res.exit_code == 0, res.output
    assert "external validation" in res.output
    res = cli("fit-prognosis", "--cohort", dev, "--runs", f"ssl={runs}", "--out", root / "model",
              "--threads", "1")
    assert res.exit_code == 0, res.output
    blank = root / "ext_blank"
    shutil.copytree(ext, blank)
    pats = pd.read_csv(blank / "patients.csv", dtype={"patient_id": str})
    pats[OUTCOMES] = np.nan
    pats.to_csv(blank / "patients.csv", index=False)
    return {"root": root, "dev": dev, "ext": ext, "blank": blank, "runs": runs,
            "eval": root / "eval", "model": root / "model"}


def test_predict_reproduces_the_external_figures(world) -> None:
    out = world["root"] / "predictions.csv"
    res = cli("predict", world["model"], "--cohort", world["blank"], "--out", out,
              "--threads", "1")
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out, dtype={"patient_id": str}, keep_default_na=False,
                       na_values=[""])
    assert list(pred.columns) == PREDICTION_COLUMNS
    assert (pred["low"] <= pred["estimate"]).all() and (pred["estimate"] <= pred["high"]).all()
    metrics = read_metrics(world["eval"] / "metrics.json")
    assert {r.split for r in metrics.records} == {"cv"}
    checked = set()
    for rec in metrics.external:
        if rec.auc is None or (rec.run is None and rec.n_runs > 1):
            continue  # the aggregate of several runs is the mean of the runs' AUCs
        model = rec.method + (f"#{rec.run}" if rec.run else "")
        lab = make_labels(world["ext"], int(rec.task.removeprefix("status_y")))
        lab = lab[lab["known"]]
        rows = pred[(pred["model"] == model) & (pred["task"] == rec.task)]
        est = rows.set_index("patient_id").loc[lab["patient_id"], "estimate"].to_numpy()
        assert float(auc(lab["label"].to_numpy(), est)) == pytest.approx(rec.auc, abs=1e-6)
        checked.add(model)
    assert checked == {"clinical_only", "ssl#seed0", "ssl#seed1", "clinical+ssl#seed0",
                       "clinical+ssl#seed1"}
    aggregate = [r for r in metrics.external if r.method == "ssl" and r.run is None
                 and r.auc is not None]
    for r in aggregate:
        runs = [x.auc for x in metrics.external if x.method == "ssl" and x.task == r.task
                and x.run is not None]
        assert r.n_runs == 2 and r.auc == pytest.approx(np.mean(runs))
        assert r.auc_ci_low <= r.auc <= r.auc_ci_high
    # the same table from Python
    table = medimp.predict(world["model"], world["blank"])
    pd.testing.assert_frame_equal(table.reset_index(drop=True),
                                  pred.fillna({"flags": ""}).reset_index(drop=True),
                                  check_dtype=False)


def test_external_records_have_every_metric(world) -> None:
    m = read_metrics(world["eval"] / "metrics.json")
    assert m.header.external_fingerprint and m.header.external_cohort
    binary = [r for r in m.external if r.task.startswith("status_")]
    cont = [r for r in m.external if r.task.startswith("egfr_")]
    assert binary and cont
    assert all(r.brier is not None and r.auc is not None for r in binary)
    assert all(r.r2 is not None and r.mae is not None and r.auc is None for r in cont)
    assert any(r.c_index is not None for r in binary)
    assert {r.method for r in m.external} == {"clinical_only", "ssl", "clinical+ssl"}


def test_model_card_says_which_interval_each_figure_has(world, tmp_path) -> None:
    """fit-prognosis --external puts EXT's figures into the card, and the card says how each
    CI was made: AUC, Brier and R² by a bootstrap over EXT's patients, the calibration
    intercept and slope by the Wald variance of the recalibration fit (a symmetric interval,
    the same figures as evaluate --external's records)."""
    from medimp.prognosis.card import INTERVALS

    res = cli("fit-prognosis", "--cohort", world["dev"], "--runs", f"ssl={world['runs']}",
              "--external", world["ext"], "--out", tmp_path / "model")
    assert res.exit_code == 0, res.output
    card = (tmp_path / "model" / "model_card.md").read_text(encoding="utf-8")
    validation = card[card.index("## Validation"):card.index("## Not validated")]
    assert "bootstrap over its patients (1000 resamples)" in INTERVALS[0]
    assert INTERVALS[1].startswith("- calibration intercept and slope: not a bootstrap, a "
                                   "normal interval from the Wald variance")
    assert all(line in validation.splitlines() for line in INTERVALS)
    assert "95% CIs from a bootstrap over its patients" not in card  # not for every figure
    header = next(line for line in validation.splitlines() if line.startswith("| model"))
    assert header == ("| model | task | n | AUC (bootstrap) | Brier (bootstrap) | calibration "
                      "intercept (Wald) | slope (Wald) | R² (bootstrap) |")
    rows = {(cells[0], cells[1]): cells for line in validation.splitlines()
            if line.startswith("| ") and not line.startswith("| model")
            and (cells := [c.strip() for c in line.strip("|").split("|")])}
    metrics = read_metrics(world["eval"] / "metrics.json")
    checked = 0
    for rec in metrics.external:
        if rec.run is not None or rec.calibration_intercept is None:
            continue
        cells = rows[(rec.method, rec.task)]
        for cell, (est, lo, hi) in (
                (cells[5], (rec.calibration_intercept, rec.calibration_intercept_ci_low,
                            rec.calibration_intercept_ci_high)),
                (cells[6], (rec.calibration_slope, rec.calibration_slope_ci_low,
                            rec.calibration_slope_ci_high))):
            if est is None:  # undefined (e.g. perfect separation): said, not NaN
                assert cell == "–"
                continue
            assert cell == f"{est:.3f} [{lo:.3f}, {hi:.3f}]"
            assert hi - est == pytest.approx(est - lo, rel=1e-6)  # Wald: symmetric
        assert cells[3] == f"{rec.auc:.3f} [{rec.auc_ci_low:.3f}, {rec.auc_ci_high:.3f}]"
        checked += 1
    assert checked >= 3  # clinical_only, ssl and clinical+ssl at least once


def test_predict_refuses_other_phases(world, tmp_path) -> None:
    other = tmp_path / "other"
    shutil.copytree(world["blank"], other)
    study = (other / "study.yaml").read_text()
    (other / "study.yaml").write_text(study.replace("name: tubular", "name: late"))
    man = pd.read_csv(other / "manifest.csv", dtype=str)
    man["phase"] = man["phase"].replace({"tubular": "late"})
    man.to_csv(other / "manifest.csv", index=False)
    res = cli("predict", world["model"], "--cohort", other, "--out", tmp_path / "p.csv")
    assert res.exit_code != 0
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "phases" in lines[0] and "late" in lines[0]
    assert not (tmp_path / "p.csv").exists()


class _Boom:
    """Unpickling this creates a file (what a malicious pickle could do)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "unpickled"))


def test_model_folder_with_a_pickle_is_refused_unopened(world, tmp_path) -> None:
    model = tmp_path / "model"
    shutil.copytree(world["model"], model)
    marker = tmp_path / "UNPICKLED"
    (model / "extra.pkl").write_bytes(pickle.dumps(_Boom(str(marker))))
    res = cli("predict", model, "--cohort", world["blank"], "--out", tmp_path / "p.csv")
    assert res.exit_code != 0 and "extra.pkl" in res.output
    assert not marker.exists() and not (tmp_path / "p.csv").exists()
    with pytest.raises(PrognosisError, match="unexpected entries"):
        medimp.predict(model, world["blank"])
    assert not marker.exists()


def test_changed_run_and_changed_arrays_are_refused(world, tmp_path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(world["runs"], runs)
    model = tmp_path / "model"
    res = cli("fit-prognosis", "--cohort", world["dev"], "--runs", f"ssl={runs / 'seed0'}",
              "--out", model, "--horizon", "2")
    assert res.exit_code == 0, res.output
    info = runs / "seed0" / "model.json"
    info.write_text(info.read_text() + "\n")
    res = cli("predict", model, "--cohort", world["blank"], "--out", tmp_path / "p.csv")
    assert res.exit_code != 0 and "changed" in res.output and "seed0" in res.output
    assert not (tmp_path / "p.csv").exists()
    doc = json.loads((model / "model.json").read_text())
    doc["files"]["arrays.safetensors"] = "0" * 64
    (model / "model.json").write_text(json.dumps(doc))
    with pytest.raises(PrognosisError, match="hash"):
        medimp.predict(model, world["blank"])


def test_evaluate_external_refuses_leakage(world, tmp_path) -> None:
    ext_run = tiny_run(world["ext"], tmp_path / "ext_run", 0, world["root"] / "cache")
    res = cli("evaluate", "--cohort", world["dev"], "--external", world["ext"], "--runs",
              f"leaky={ext_run}", "--out", tmp_path / "eval", "--folds", "2", "--repeats", "1",
              "--no-knn", "--no-survival", "--no-report")
    assert res.exit_code != 0 and "leaked" in res.output
    assert not (tmp_path / "eval").exists()
    res = cli("evaluate", "--cohort", world["dev"], "--external", world["dev"], "--runs",
              f"ssl={world['runs']}", "--out", tmp_path / "eval", "--no-report")
    assert res.exit_code != 0 and "same patients" in res.output


def test_run_of_a_third_cohort_gets_a_note(world, tmp_path) -> None:
    from medimp.prognosis.external import external_notes

    third = tmp_path / "third"  # EXT without its first patient: another cohort
    shutil.copytree(world["blank"], third)
    for name in ("patients.csv", "manifest.csv"):
        df = pd.read_csv(third / name, dtype={"patient_id": str})
        df[df["patient_id"] != df["patient_id"].iloc[0]].to_csv(third / name, index=False)
    notes = external_notes(world["ext"], third, {"ssl": world["runs"]})
    assert len(notes) == 2 and all("third cohort" in n for n in notes)


def test_report_shows_the_external_validation(world) -> None:
    from medimp.report import write_report

    page = write_report(world["eval"], world["root"] / "report.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="external">'):page.index('<section id="flow">')]
    m = read_metrics(world["eval"] / "metrics.json")
    assert m.header.external_cohort in section
    for r in m.external:
        if r.run is None and r.auc is not None:  # each model's external AUC, as recorded
            assert f"{r.auc:.3f} [{r.auc_ci_low:.3f}, {r.auc_ci_high:.3f}]" in section
    assert "Internal validation only" not in page
    # the TRIPOD+AI item is covered now
    assert "<td>External validation</td><td>External validation</td>" in page
