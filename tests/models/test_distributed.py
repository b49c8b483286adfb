"""gather_with_grad: 2 gloo processes on CPU equal one process on the concatenated batch."""

from __future__ import annotations

import torch
import torch.multiprocessing as mp

from medimp.models.distributed import gather_no_grad, gather_with_grad, is_distributed
from tests.models._ddp_worker import GROUPS, run, setup, worker


def test_two_processes_match_one_process(tmp_path):
    out_file = tmp_path / "rank0.pt"
    mp.spawn(worker, args=(2, str(tmp_path / "rendezvous"), str(out_file)), nprocs=2,
             join=True)
    got = torch.load(out_file, weights_only=True)
    assert got["flags"]["is_distributed"] is True
    assert got["flags"]["nograd"].tolist() == [0, 1]

    img, txt, losses, x, t = setup()
    ref = run(img, txt, losses, x, t, GROUPS, gather_with_grad)  # identity in one process
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
