"""DDP: two gloo processes on halves of a batch give the loss and the (averaged) gradients of
one process on the whole batch, because embeddings are gathered with gradients before the loss.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from medimp.train.module import PretrainModule
from tests._ddp import average_like_ddp, free_port, spawn

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

    spawn(_worker, (2, free_port(), str(tmp_path)), 2,
          [tmp_path / f"rank{r}.pt" for r in range(2)])
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
    # the checkpoint records the world; a resume in one process is refused, before training
    from medimp.train import TrainError
    from medimp.train.checkpoint import read_checkpoint

    world = read_checkpoint(run / "checkpoints" / "last.ckpt")["medimp_world"]
    assert world == {"world_size": 2, "batch_size": 2, "accumulate_grad_batches": 1,
                     "global_batch": 4}
    one = tiny_config("method=image_ssl", "augment={}", "epochs=1", "accelerator=cpu",
                      "devices=1", "batch_size=2")
    with pytest.raises(TrainError, match=r"trained on 2 process\(es\) \(global batch 4\) and "
                       r"this resume runs 1 \(global batch 2\)"):
        pretrain(simulated_cohort, run, one, resume=True, progress=False)


def test_non_finite_loss_stops_with_advice() -> None:
    from medimp.train import TrainError

    module = PretrainModule({**CFG, "precision": "32"}, in_channels=3)
    batch = _batch()
    batch["image"][0] = float("nan")
    with pytest.raises(TrainError, match=r"non-finite training loss.*lower optim\.lr"):
        module.training_step(batch, 0)


def test_bf16_skips_a_few_non_finite_steps_then_stops() -> None:
    """Under bf16 a non-finite loss or gradient drops the step (weights unchanged); five
    optimizer steps in a row are an error; in fp32 a non-finite gradient is an error at once,
    naming the weight."""
    from medimp.train import TrainError

    module = PretrainModule({**CFG, "precision": "bf16-mixed"}, in_channels=3)
    batch = _batch()
    batch["image"][0] = float("nan")
    for _ in range(5):
        loss = module.training_step(batch, 0)
        # a zero loss still connected to the weights: every process of a DDP run can join
        # the gradient all-reduce of its backward (None would leave the others waiting)
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in module.parameters()
                   if p.grad is not None)
        with pytest.warns(UserWarning, match="the step is skipped"):
            module.on_before_optimizer_step(None)
        assert all(p.grad is None for p in module.parameters())
    module.training_step(batch, 0).backward()
    with pytest.raises(TrainError, match=r"non-finite training loss.*6 steps in a row"):
        module.on_before_optimizer_step(None)

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
    with pytest.raises(TrainError, match=f"non-finite training gradient.*{name}"):
        module.on_before_optimizer_step(None)


def test_only_non_finite_gradients_stop_the_run() -> None:
    """Finite losses with non-finite gradients, step after step: skipped five times, then an
    error (the count is of optimizer steps in a row; a finite loss does not reset it, a step
    taken does)."""
    from medimp.train import TrainError

    module = PretrainModule({**CFG, "precision": "bf16-mixed"}, in_channels=3)

    def step_with_bad_gradient() -> None:
        module.zero_grad(set_to_none=True)
        module.training_step(_batch(), 0).backward()
        next(p for p in module.parameters() if p.grad is not None).grad[0] = float("inf")
        module.on_before_optimizer_step(None)

    for _ in range(4):
        with pytest.warns(UserWarning, match="non-finite gradient"):
            step_with_bad_gradient()
    module.zero_grad(set_to_none=True)
    module.training_step(_batch(), 0).backward()
    module.on_before_optimizer_step(None)  # a good step: the count starts again
    assert module._skipped_in_a_row == 0
    for _ in range(5):
        with pytest.warns(UserWarning, match="non-finite gradient"):
            step_with_bad_gradient()
    with pytest.raises(TrainError, match=r"non-finite training gradient.*6 steps in a row"):
        step_with_bad_gradient()


class _StepModel(torch.nn.Module):
    """What Lightning's DDP wrapper does: the forward of the wrapped module is its
    training_step, so DDP's gradient all-reduce follows the returned loss's backward."""

    def __init__(self, module: PretrainModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.module.training_step(batch, 0)


def _skip_worker(rank: int, world: int, port: int, folder: str) -> None:
    import datetime
    import gc
    import warnings

    from medimp.train import TrainError

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world,
                                         timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        module = PretrainModule({**CFG, "precision": "bf16-mixed"}, in_channels=3)
        ddp = torch.nn.parallel.DistributedDataParallel(_StepModel(module))
        per = N // world
        part = {k: v[rank * per:(rank + 1) * per] for k, v in _batch().items()}
        if rank == 0:
            part["image"][0] = float("nan")  # only rank 0's loss is non-finite
        before = {k: v.detach().clone() for k, v in module.named_parameters()}
        opt = torch.optim.AdamW(module.parameters(), lr=0.1)
        outcome = []
        for _ in range(7):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ddp(part).backward()  # both processes: a None on rank 0 would hang rank 1
                try:
                    module.on_before_optimizer_step(opt)
                except TrainError as exc:
                    outcome.append(str(exc))
                    break
            outcome.append("skipped" if all(p.grad is None for p in module.parameters())
                           else "stepped")
            opt.step()
            opt.zero_grad(set_to_none=True)
        same = all(torch.equal(before[k], v) for k, v in module.named_parameters())
        torch.save({"outcome": outcome, "unchanged": same}, Path(folder) / f"skip{rank}.pt")
        del ddp, part, opt  # the Reducer's reference to the group goes first (tests/_ddp.py)
        gc.collect()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # ~30 s on the shared machine: two processes import torch
def test_ddp_non_finite_loss_on_one_process_is_skipped_by_all(tmp_path) -> None:
    """Two gloo processes under DistributedDataParallel, a non-finite bf16 loss on rank 0 only:
    both run backward, both skip the step (the weights unchanged), and after five in a row
    both stop with the same error (none waits for the other)."""
    spawn(_skip_worker, (2, free_port(), str(tmp_path)), 2,
          [tmp_path / f"skip{r}.pt" for r in range(2)])
    got = [torch.load(tmp_path / f"skip{r}.pt", weights_only=True) for r in range(2)]
    for g in got:
        assert g["outcome"][:5] == ["skipped"] * 5, g["outcome"]
        assert len(g["outcome"]) == 6 and "6 steps in a row" in g["outcome"][5]
        assert g["unchanged"]


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


class _NonFiniteOnRankZero(PretrainModule):
    """A training loss that is non-finite on process 0 only, as an overflow in a part of the
    loss local to one process would be (a non-finite embedding reaches every process through
    the gathered negatives, so it cannot be made from the data alone)."""

    def compute_loss(self, batch: dict[str, torch.Tensor], stage: str = "train") -> torch.Tensor:
        loss = super().compute_loss(batch, stage)
        if stage == "train" and torch.distributed.get_rank() == 0:
            return loss * float("nan")
        return loss


class _RankBatches(torch.utils.data.Dataset):
    """Each process's half of ``_batch()``, whole, as its one batch per step."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rank, per = torch.distributed.get_rank(), N // 2
        return {k: v[rank * per:(rank + 1) * per] for k, v in _batch().items()}


@pytest.mark.slow  # ~40 s on the shared machine: two processes import Lightning
def test_lightning_ddp_skips_a_loss_non_finite_on_one_process(tmp_path) -> None:
    """Under a real Lightning DDP fit (2 gloo processes, bf16), a loss non-finite on one
    process only: every process skips the step (the weights come back from process 0 as they
    were) and the fit ends; a process that logged its finite loss (an all-reduce) or ran its
    backward through the gathered negatives (another) would wait on the other's gradient
    all-reduce until the timeout."""
    import datetime

    import lightning.pytorch as pl
    from lightning.pytorch.strategies import DDPStrategy

    torch.manual_seed(0)
    module = _NonFiniteOnRankZero({**CFG, "precision": "bf16-mixed"}, in_channels=3)
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    loader = torch.utils.data.DataLoader(_RankBatches(3), batch_size=None)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, precision="bf16-mixed", max_steps=3,
        strategy=DDPStrategy(start_method="spawn", process_group_backend="gloo",
                             timeout=datetime.timedelta(seconds=60)),
        use_distributed_sampler=False, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=loader)  # the skips' warnings are the children's
    assert trainer.state.finished, trainer.state
    after = module.state_dict()
    for k, v in before.items():
        if v.is_floating_point() and "running" not in k:  # batch-norm statistics move
            assert torch.equal(v, after[k]), k


def _result_then_stuck(rank: int, folder: str) -> None:
    (Path(folder) / f"r{rank}").write_text("done")
    if rank == 1:
        time.sleep(600)  # stands for a gloo teardown that never returns


def _raises(rank: int, folder: str) -> None:
    raise RuntimeError(f"worker {rank} failed")


def test_spawn_helper_outlives_a_stuck_teardown_but_not_a_failure(tmp_path) -> None:
    """tests/_ddp.py's ``spawn``: results written and a process stuck after them go on (the
    process killed); a worker that raises still fails the test."""
    from torch.multiprocessing import ProcessRaisedException

    start = time.monotonic()
    spawn(_result_then_stuck, (str(tmp_path),), 2, [tmp_path / "r0", tmp_path / "r1"],
          grace=2.0)
    assert time.monotonic() - start < 120
    with pytest.raises(ProcessRaisedException, match=r"worker \d failed"):
        spawn(_raises, (str(tmp_path),), 2, [tmp_path / "never"], grace=2.0)
