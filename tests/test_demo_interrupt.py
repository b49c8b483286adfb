"""Ctrl-C during the demo's parallel pretraining stops every worker and evaluates nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medimp._io import folder_lock
from tests._proc import MAIN_WITH_SIGINT

pytestmark = pytest.mark.slow


def test_ctrl_c_stops_every_pretraining_worker(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, "-c", MAIN_WITH_SIGINT, "demo", "--out", str(out), "--patients",
           "20", "--shape", "16", "16", "16", "--epochs", "500", "--seeds", "2", "--repeats",
           "1", "--bootstrap", "20", "--jobs", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    # both workers are training (each has written a checkpoint) when the signal comes
    while (len(list(out.glob("runs/*/seed*/checkpoints/last.ckpt"))) < 2
           and proc.poll() is None and time.monotonic() < deadline):
        time.sleep(0.2)
    # only the demo's own process gets it (as `kill -INT`): it must stop its workers itself
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("interrupted during pretraining (0 of 8 runs had "
                                            "finished); nothing was evaluated")
    assert not (out / "eval").exists()
    runs = sorted(p for p in out.glob("runs/*/seed*") if p.is_dir())
    assert len(runs) >= 2
    for run in runs:
        assert not (run / "model.json").exists()  # no run was exported half-trained
        with folder_lock(run):  # no worker holds a run any more
            pass
