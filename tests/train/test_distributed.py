"""DDP: two gloo processes on halves of a batch give the loss and the (averaged) gradients of
one process on the whole batch, because embeddings are gathered with gradients before the loss.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from medimp.train.module import PretrainModule
from tests._ddp import average_like_ddp, free_port

CFG = {
    "method": "image_ssl",
    "image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
    "embed_dim": 16,
    "preprocess": {"shape": [16, 16, 16]},
}
N = 8


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    img = torch.randn(N, 3, 16, 16, 16, generator=g)
    return {"image": img, "image2": img + 0.3 * torch.randn(img.shape, generator=g),
            # two exams per patient, one on each rank: the mask must work across processes
            "patient_idx": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]),
            "index": torch.arange(N)}


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters()
            if p.grad is not None}


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        module = PretrainModule(CFG, in_channels=3)
        module.load_state_dict(torch.load(Path(folder) / "init.pt", weights_only=True))
        module.eval()  # batch-norm statistics would otherwise differ between half batches
        batch = _batch()
        per = N // world
        part = {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}
        loss = module.compute_loss(part)
        loss.backward()
        grads = average_like_ddp(_grads(module), world)
        torch.save({"loss": loss.detach(), "grads": grads}, Path(folder) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_match_one(tmp_path) -> None:
    torch.manual_seed(0)
    module = PretrainModule(CFG, in_channels=3)
    torch.save(module.state_dict(), tmp_path / "init.pt")
    module.eval()
    loss = module.compute_loss(_batch())
    loss.backward()
    ref = _grads(module)
    assert ref  # the image encoder, projection and temperature all get gradients

    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2,
                                join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        assert set(got["grads"]) == set(ref)
        for name, g in ref.items():
            torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_lightning_ddp_spawn_fit(simulated_cohort, tiny_config, tmp_path) -> None:
    """A real Lightning fit with 2 CPU processes (gloo) runs and exports a model."""
    from medimp.train import load_run_info, pretrain

    cfg = tiny_config("method=image_ssl", "augment={}", "epochs=1", "strategy=ddp_spawn",
                      "accelerator=cpu", "devices=2", "batch_size=2")
    run = pretrain(simulated_cohort, tmp_path / "ddp", cfg, progress=False)
    assert load_run_info(run)["epochs_trained"] == 1
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_non_finite_loss_stops_with_advice() -> None:
    from medimp.train import TrainError

    module = PretrainModule({**CFG, "precision": "32"}, in_channels=3)
    batch = _batch()
    batch["image"][0] = float("nan")
    with pytest.raises(TrainError, match=r"non-finite training loss.*lower optim\.lr"):
        module.training_step(batch, 0)


def test_bf16_skips_a_few_non_finite_steps_then_stops() -> None:
    """Under bf16 a non-finite loss or gradient drops the step (weights unchanged); five in a
    row are an error; in fp32 a non-finite gradient is an error at once, naming the weight."""
    from medimp.train import TrainError

    module = PretrainModule({**CFG, "precision": "bf16-mixed"}, in_channels=3)
    batch = _batch()
    batch["image"][0] = float("nan")
    for _ in range(5):
        with pytest.warns(UserWarning, match="the step is skipped"):
            assert module.training_step(batch, 0) is None
    with pytest.raises(TrainError, match="non-finite training loss"):
        module.training_step(batch, 0)

    module = PretrainModule({**CFG, "precision": "bf16-mixed"}, in_channels=3)
    module.compute_loss(_batch()).backward()
    first = next(p for p in module.parameters() if p.grad is not None)
    first.grad[0] = float("inf")
    with pytest.warns(UserWarning, match="non-finite gradient"):
        module.on_before_optimizer_step(None)
    assert all(p.grad is None for p in module.parameters())  # nothing for the optimizer

    module = PretrainModule({**CFG, "precision": "32"}, in_channels=3)
    module.compute_loss(_batch()).backward()
    name, param = next((n, p) for n, p in module.named_parameters() if p.grad is not None)
    param.grad[0] = float("nan")
    with pytest.raises(TrainError, match=f"non-finite gradient.*{name}"):
        module.on_before_optimizer_step(None)


@pytest.mark.slow
def test_lightning_ddp_spawn_fit_with_micro_batches(simulated_cohort, tiny_config,
                                                     tmp_path) -> None:
    """Gradient caching under DDP: the micro-batches' backward runs inside the step, the last
    one in the trainer's synchronised backward; 2 CPU processes train and export a model."""
    import pandas as pd

    from medimp.train import load_run_info, pretrain

    cfg = tiny_config("method=image_ssl", "augment={}", "epochs=1", "strategy=ddp_spawn",
                      "accelerator=cpu", "devices=2", "batch_size=4", "micro_batch_size=2")
    run = pretrain(simulated_cohort, tmp_path / "ddp", cfg, progress=False)
    assert load_run_info(run)["epochs_trained"] == 1
    assert pd.read_csv(run / "history.csv")["train_loss"].notna().all()
