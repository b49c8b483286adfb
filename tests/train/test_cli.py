"""``medimp pretrain`` and ``medimp embed`` from the command line."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from tests._proc import MAIN_WITH_SIGINT


def _tiny_config_file(folder, cache):
    """A config.yaml for a tiny, fast run on the simulated cohort (cache shared by the tests)."""
    cfg = folder / "cfg.yaml"
    cfg.write_text("image_encoder: {name: tiny_cnn_3d, kwargs: {widths: [4, 8, 16]}}\n"
                   "embed_dim: 8\npreprocess: {shape: [16, 16, 16]}\naugment: null\n"
                   f"cache_dir: {cache}\n")
    return cfg


def test_pretrain_and_embed_commands(simulated_cohort, train_cache, tmp_path) -> None:
    cfg = _tiny_config_file(tmp_path, train_cache)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                   str(run), "--config", str(cfg), "--method", "tabular_clip",
                                   "--epochs", "1", "--batch-size", "4", "--set",
                                   "optim.lr=1e-3", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "run written to" in res.output
    saved = (run / "config.yaml").read_text()
    assert "tabular_clip" in saved and "0.001" in saved
    out = tmp_path / "emb.parquet"
    res = CliRunner().invoke(app, ["embed", "--run", str(run), "--cohort", str(simulated_cohort),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pd.read_parquet(out)
    assert set(df["level"]) == {"exam", "patient", "patient_latest"}
    # running again into the same folder without --resume is refused, nothing overwritten
    before = (run / "model.safetensors").read_bytes()
    res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                   str(run), "--config", str(cfg), "--no-progress"])
    assert res.exit_code == 1 and "already holds a run" in res.output
    assert (run / "model.safetensors").read_bytes() == before


def test_bad_override_is_one_line_exit_1(simulated_cohort, tmp_path) -> None:
    res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                   str(tmp_path / "r"), "--set", "optim.lr_max=1"])
    assert res.exit_code == 1
    assert "optim.lr_max" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["embed", "--run", str(tmp_path / "nothing"), "--cohort",
                                   str(simulated_cohort),
                                   "--out", str(tmp_path / "e.parquet")])
    assert res.exit_code == 1 and "model.json" in res.output


def test_resume_from_the_command_line(simulated_cohort, train_cache, tmp_path) -> None:
    run = tmp_path / "run"
    common = ["--cohort", str(simulated_cohort), "--out", str(run), "--no-progress"]
    res = CliRunner().invoke(app, ["pretrain", *common, "--method", "tabular_clip",
                                   "--epochs", "2", "--batch-size", "4",
                                   "--set", "image_encoder.name=tiny_cnn_3d",
                                   "--set", "preprocess.shape=[16,16,16]",
                                   "--set", "augment=null", "--set", f"cache_dir={train_cache}",
                                   "--set", "stop_after_epochs=1"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(run / "history.csv")) == 1
    # --resume reads the run's config.yaml; overrides still apply
    res = CliRunner().invoke(app, ["pretrain", *common, "--resume", "--set",
                                   "stop_after_epochs=null"])
    assert res.exit_code == 0, res.output
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == [1, 2]


def test_pretrain_seeds_writes_one_replicate_per_seed(simulated_cohort, train_cache,
                                                      tmp_path) -> None:
    import json

    from medimp.data.cohort.fingerprint import cohort_fingerprint
    from medimp.evaluate.replicates import check_replicates, expand_methods

    cfg = _tiny_config_file(tmp_path, train_cache)
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                   str(out), "--config", str(cfg), "--method", "random_init",
                                   "--no-progress", "--seeds", "0", "1", "2"])
    assert res.exit_code == 0, res.output
    infos = [json.loads((out / f"seed{s}" / "model.json").read_text()) for s in range(3)]
    assert [i["config"]["seed"] for i in infos] == [0, 1, 2]
    assert {i["cohort_fingerprint"] for i in infos} == {cohort_fingerprint(simulated_cohort)}
    members = expand_methods({"random_init": out})  # the folder of seeds: three replicates
    assert [m.run for m in members] == ["seed0", "seed1", "seed2"]
    check_replicates(members)
    for bad in (["--seeds", "0", "x"], ["--seeds", "1", "--seed", "1"], ["--seeds", "0,0"]):
        res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                       str(tmp_path / "bad"), *bad])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # a subprocess that trains until its first checkpoint: about a minute
def test_ctrl_c_during_training_says_how_to_resume(simulated_cohort, train_cache,
                                                   tmp_path) -> None:
    import re
    import signal
    import subprocess
    import sys
    import time

    from medimp.train.checkpoint import read_checkpoint

    run = tmp_path / "run"
    cmd = [sys.executable, "-c", MAIN_WITH_SIGINT, "pretrain", "--cohort",
           str(simulated_cohort), "--out", str(run), "--no-progress", "--method",
           "tabular_clip", "--epochs", "500", "--batch-size", "4",
           "--set", "image_encoder.name=tiny_cnn_3d", "--set", "preprocess.shape=[16,16,16]",
           "--set", "augment=null", "--set", f"cache_dir={train_cache}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # into a later epoch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    done = int(read_checkpoint(last)["epoch"]) + 1
    assert err.strip().splitlines()[-1] == f"interrupted after epoch {done}; resume with --resume"
    assert re.search(r"interrupted after epoch \d+", err)
    res = CliRunner().invoke(app, ["pretrain", "--cohort", str(simulated_cohort), "--out",
                                   str(run), "--no-progress", "--resume", "--set",
                                   f"stop_after_epochs={done + 1}"])
    assert res.exit_code == 0, res.output
    assert list(pd.read_csv(run / "history.csv")["epoch"]) == list(range(1, done + 2))
