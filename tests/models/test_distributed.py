"""gather_with_grad: 2 gloo processes on CPU equal one process on the concatenated batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medimp.models import ClipLoss, SigLipLoss
from medimp.models.distributed import gather_no_grad, gather_with_grad, is_distributed

SIZES = (3, 5)  # unequal shards: the last batch of an epoch is often smaller
GROUPS = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5])  # patients 0 and 2 have a row on each rank


def _setup():
    torch.manual_seed(0)
    img, txt = nn.Linear(6, 4), nn.Linear(5, 4)
    losses = {"clip": ClipLoss(), "siglip": SigLipLoss()}
    x = torch.randn(sum(SIZES), 6)
    t = torch.randn(sum(SIZES), 5)
    return img, txt, losses, x, t


def _run(img, txt, losses, x, t, groups, gather):
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


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        img, txt, losses, x, t = _setup()
        start = sum(SIZES[:rank])
        sl = slice(start, start + SIZES[rank])
        out = _run(img, txt, losses, x[sl], t[sl], GROUPS[sl], gather_with_grad)
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


def test_two_processes_match_one_process(tmp_path):
    out_file = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(out_file)), nprocs=2,
             join=True)
    got = torch.load(out_file, weights_only=True)
    assert got["flags"]["is_distributed"] is True
    assert got["flags"]["nograd"].tolist() == [0, 1]

    img, txt, losses, x, t = _setup()
    ref = _run(img, txt, losses, x, t, GROUPS, gather_with_grad)  # identity here
    for name in ("clip", "siglip"):
        assert torch.equal(got[name]["ids"], GROUPS)
        assert torch.allclose(got[name]["loss"], ref[name]["loss"], atol=1e-6)
        for pname, g in ref[name]["grads"].items():
            assert torch.allclose(got[name]["grads"][pname], g, atol=1e-6), (name, pname)


def test_identity_outside_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert not is_distributed()
    assert gather_with_grad(x) is x
    assert gather_no_grad(x) is x
