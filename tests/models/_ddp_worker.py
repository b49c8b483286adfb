"""Process body for the 2-process gloo test; imports only torch and the light models modules,
so that spawning stays cheap."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from medimp.models.distributed import gather_no_grad, gather_with_grad, is_distributed
from medimp.models.losses import ClipLoss, SigLipLoss

SIZES = (3, 5)  # unequal shards: the last batch of an epoch is often smaller
GROUPS = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5])  # patients 0 and 2 have a row on each rank


def setup():
    """Identical models, losses and global batch in every process."""
    torch.manual_seed(0)
    img, txt = nn.Linear(6, 4), nn.Linear(5, 4)
    losses = {"clip": ClipLoss(), "siglip": SigLipLoss()}
    x = torch.randn(sum(SIZES), 6)
    t = torch.randn(sum(SIZES), 5)
    return img, txt, losses, x, t


def run(img, txt, losses, x, t, groups, gather):
    """Loss and parameter gradients of each loss on (gathered) features."""
    out = {}
    for name, loss_fn in losses.items():
        for m in (img, txt, loss_fn):
            m.zero_grad(set_to_none=True)
        fi, ft = gather(img(x)), gather(txt(t))
        loss = loss_fn(fi, ft, gather(groups))
        loss.backward()
        params = [*img.named_parameters(), *txt.named_parameters(),
                  *loss_fn.named_parameters(prefix="loss")]
        out[name] = {"loss": loss.detach(), "ids": gather(groups),
                     "grads": {n: p.grad.clone() for n, p in params}}
    return out


def worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    """One rank: its shard, gathered features, DDP-style gradient averaging; rank 0 saves."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        img, txt, losses, x, t = setup()
        start = sum(SIZES[:rank])
        sl = slice(start, start + SIZES[rank])
        out = run(img, txt, losses, x[sl], t[sl], GROUPS[sl], gather_with_grad)
        for res in out.values():  # what DDP does with parameter gradients: average them
            for g in res["grads"].values():
                dist.all_reduce(g)
                g /= world
        out["flags"] = {"is_distributed": is_distributed(),
                        "nograd": gather_no_grad(torch.tensor([rank]))}
        if rank == 0:
            torch.save(out, out_file)
    finally:
        dist.destroy_process_group()
