"""Run by ``torchrun`` in tests/train/test_torchrun.py (not a test module itself): each process
computes the loss and gradients of its half of the batch of tests/train/test_distributed.py,
averages the gradients over the processes as DDP does, and saves them for the test to compare
with one process on the whole batch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch


def main(folder: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
    from medimp.train.module import PretrainModule
    from tests.train.test_distributed import CFG, N, _batch, _grads

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")  # rank, world, master from torchrun's env
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    assert int(os.environ["LOCAL_RANK"]) == rank
    try:
        module = PretrainModule(CFG, in_channels=3)
        module.load_state_dict(torch.load(Path(folder) / "init.pt", weights_only=True))
        module.eval()  # batch-norm statistics would otherwise differ between half batches
        per = N // world
        part = {k: v[rank * per:(rank + 1) * per] for k, v in _batch().items()}
        loss = module.compute_loss(part)
        loss.backward()
        grads = _grads(module)
        for g in grads.values():
            torch.distributed.all_reduce(g)
            g /= world
        torch.save({"loss": loss.detach(), "grads": grads, "world": world},
                   Path(folder) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
