"""Multi-process training through the real launcher, ``torchrun --nproc_per_node 2`` (gloo, CPU):
the same result as one process, as tests/train/test_distributed.py checks with
``torch.multiprocessing.spawn``; and a whole ``medimp pretrain`` run under torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medimp.train.module import PretrainModule
from tests._ddp import free_port
from tests.train.test_distributed import CFG, _batch, _grads

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or \
    shutil.which("torchrun")
WORKER = Path(__file__).with_name("_torchrun_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                      env.get("PYTHONPATH")]))
    return env


def _torchrun(*args: str, timeout: int) -> subprocess.CompletedProcess:
    assert TORCHRUN, "torchrun not found next to the Python interpreter"
    cmd = [TORCHRUN, "--nproc_per_node", "2", "--nnodes", "1", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--max-restarts", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                          check=False)


@pytest.mark.slow  # ~70 s on the shared 2-core machine: two interpreters import torch
def test_torchrun_two_processes_match_one(tmp_path) -> None:
    torch.manual_seed(0)
    module = PretrainModule(CFG, in_channels=3)
    torch.save(module.state_dict(), tmp_path / "init.pt")
    module.eval()
    loss = module.compute_loss(_batch())
    loss.backward()
    ref = _grads(module)

    res = _torchrun(str(WORKER), str(tmp_path), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["world"] == 2
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        assert set(got["grads"]) == set(ref)
        for name, g in ref.items():
            torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_torchrun_medimp_pretrain(simulated_cohort, tiny_config, tmp_path) -> None:
    """`torchrun --no-python ... medimp pretrain`: rank 0 owns (locks, writes, exports) the run
    folder, rank 1 trains beside it; the run is that of one process on the same split."""
    from medimp.train import load_run_info, pretrain, save_config

    single = pretrain(simulated_cohort, tmp_path / "single",
                      tiny_config("method=tabular_clip", "epochs=1"), progress=False)
    cfg = tiny_config("method=tabular_clip", "epochs=1", "strategy=ddp", "accelerator=cpu",
                      "devices=2")
    save_config(cfg, tmp_path / "cfg.yaml")
    out = tmp_path / "ddp"
    medimp = str(Path(sys.executable).with_name("medimp"))
    res = _torchrun("--no-python", medimp, "pretrain", "--cohort", str(simulated_cohort),
                    "--out", str(out), "--config", str(tmp_path / "cfg.yaml"), "--no-progress",
                    timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    info, ref = load_run_info(out), load_run_info(single)
    assert info["epochs_trained"] == 1 and (out / "checkpoints" / "last.ckpt").is_file()
    assert info["train_patients"] == ref["train_patients"]
    assert info["val_patients"] == ref["val_patients"]
    # rank 0 held the folder's lock; released and removed with its holder file at the end
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ddp")) == []
