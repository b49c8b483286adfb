"""Kill pretraining with SIGKILL mid-run: the last checkpoint is intact and --resume finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from medimp.train import load_run_info, pretrain
from medimp.train.checkpoint import read_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.slow
def test_sigkill_during_epoch_two_then_resume(simulated_cohort, tiny_config, tmp_path) -> None:
    cfg = tiny_config("epochs=6", "batch_size=2", "method=tabular_clip")
    run = tmp_path / "run"
    script = ("import json, sys\nfrom medimp.train import pretrain, PretrainConfig\n"
              "cfg = PretrainConfig.model_validate(json.loads(sys.argv[3]))\n"
              "pretrain(sys.argv[1], sys.argv[2], cfg, progress=False)\n")
    path = [p for p in (os.environ.get("PYTHONPATH"), str(SRC)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(simulated_cohort), str(run),
                             json.dumps(cfg.model_dump(mode="json"))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    try:
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert last.exists(), proc.stderr.read().decode() if proc.poll() is not None else "slow"
        os.kill(proc.pid, signal.SIGKILL)  # during epoch 2: epoch 1's checkpoint just landed
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "model.json").exists()  # it did not finish
    ckpt = read_checkpoint(last)
    done = ckpt["epoch"] + 1
    assert 1 <= done < 6
    leftovers = [p.name for p in last.parent.iterdir() if ".tmp" in p.name]
    assert not leftovers or all(p.startswith(".") for p in leftovers)

    pretrain(simulated_cohort, run, cfg, resume=True, progress=False)
    assert load_run_info(run)["epochs_trained"] == 6
    hist = pd.read_csv(run / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3, 4, 5, 6]
