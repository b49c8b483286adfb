"""Gradient caching gives the gradients of the whole contrastive batch in one pass.

Real medimp towers (a 3D CNN with batch norm, the tabular MLP with dropout, the projection head)
and the real patient-masked CLIP / SigLIP losses; the reference is one forward + backward over
the whole batch (or, where batch norm / dropout make micro-batches differ by construction, the
same micro-batches run one after the other with their graphs kept).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.functional import normalize

from medimp.models import ClipLoss, ProjectionHead, SigLipLoss, create_image_encoder
from medimp.models.distributed import gather_no_grad, gather_with_grad
from medimp.models.tabular import create_tabular_encoder
from medimp.train.gradcache import gradcache_backward, split_batch
from tests._ddp import average_like_ddp, free_port, spawn

N = 8
# patients 0 and 2 have two exams each: those pairs are masked, never negatives
GROUPS = torch.tensor([0, 1, 2, 0, 3, 4, 2, 5])


class Towers(nn.Module):
    """Image tower (3D CNN + projection) and tabular tower, as a medimp objective has them."""

    def __init__(self, loss: str = "clip", dropout: float = 0.0) -> None:
        super().__init__()
        self.image = create_image_encoder("tiny_cnn_3d", 2, widths=[4, 8])
        self.proj = ProjectionHead(self.image.num_features, 8)
        self.tab = create_tabular_encoder(5, 8, hidden=(16,), dropout=dropout)
        self.loss_fn = ClipLoss() if loss == "clip" else SigLipLoss()

    def embed(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        img = normalize(self.proj(self.image(batch["image"])), dim=-1)
        return img, normalize(self.tab(batch["tabular"]), dim=-1)

    def loss(self, emb: tuple[torch.Tensor, torch.Tensor], batch: dict) -> torch.Tensor:
        a, b = emb
        return self.loss_fn(gather_with_grad(a), gather_with_grad(b),
                            groups=gather_no_grad(batch["patient_idx"]))


def _batch(n: int = N) -> dict:
    g = torch.Generator().manual_seed(3)
    return {"image": torch.randn(n, 2, 16, 16, 16, generator=g),
            "tabular": torch.randn(n, 5, generator=g),
            "patient_idx": GROUPS[:n].clone(),
            "prompts": [[f"prompt {i}"] for i in range(n)]}


def _grads(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in m.named_parameters() if p.grad is not None}


def _models(loss: str = "clip", dropout: float = 0.0) -> tuple[Towers, Towers]:
    torch.manual_seed(0)
    a = Towers(loss, dropout)
    b = Towers(loss, dropout)
    b.load_state_dict(a.state_dict())
    return a, b


def _assert_same(got: dict, ref: dict, atol: float = 1e-5) -> None:
    assert got.keys() == ref.keys()
    for k, want in ref.items():
        assert torch.allclose(got[k], want, atol=atol, rtol=0), (
            k, (got[k] - want).abs().max().item())


@pytest.mark.parametrize("loss", ["clip", "siglip"])
@pytest.mark.parametrize("micro", [1, 3, 4, 8])
def test_equals_the_full_batch_in_one_pass(loss: str, micro: int) -> None:
    ref_m, gc_m = _models(loss)
    ref_m.eval()  # batch norm normalises with fixed statistics: micro == full batch exactly
    gc_m.eval()
    batch = _batch()
    ref_loss = ref_m.loss(ref_m.embed(batch), batch)
    ref_loss.backward()
    ref = _grads(ref_m)
    assert "loss_fn.logit_scale" in ref and "image.features.0.weight" in ref

    res = gradcache_backward(gc_m.embed, gc_m.loss, batch, micro, modules=[gc_m])
    assert res.n_micro == -(-N // micro)
    assert res.surrogate is None
    assert torch.allclose(res.loss, ref_loss.detach(), atol=1e-6)
    _assert_same(_grads(gc_m), ref)


def test_patient_mask_is_applied_across_micro_batches() -> None:
    """Rows 0 and 3 (patient 0) sit in different micro-batches: masking them still matters."""
    m, _ = _models()
    m.eval()
    batch = _batch()
    masked = gradcache_backward(m.embed, m.loss, batch, 2).loss
    unmasked_batch = {**batch, "patient_idx": torch.arange(N)}
    unmasked = gradcache_backward(m.embed, m.loss, unmasked_batch, 2).loss
    with torch.no_grad():
        emb = m.embed(batch)
        assert torch.allclose(masked, m.loss_fn(*emb, groups=GROUPS), atol=1e-6)
    assert not torch.allclose(masked, unmasked, atol=1e-4)


def _chunked_reference(m: Towers, batch: dict, micro: int) -> torch.Tensor:
    """The same micro-batches run one after the other with graphs kept (RNG consumed in the
    same order), then one loss and one backward."""
    parts = [m.embed(c) for c in split_batch(batch, micro)]
    emb = tuple(torch.cat([p[k] for p in parts]) for k in range(2))
    loss = m.loss(emb, batch)
    loss.backward()
    return loss


def test_dropout_masks_are_replayed_on_the_recompute() -> None:
    ref_m, gc_m = _models(dropout=0.5)
    ref_m.train()
    gc_m.train()
    batch = _batch()
    torch.manual_seed(123)
    ref_loss = _chunked_reference(ref_m, batch, 3)
    ref_rng = torch.get_rng_state()
    torch.manual_seed(123)
    res = gradcache_backward(gc_m.embed, gc_m.loss, batch, 3, modules=[gc_m])
    assert torch.allclose(res.loss, ref_loss.detach(), atol=1e-6)
    _assert_same(_grads(gc_m), _grads(ref_m))
    # the stream advanced as if every micro-batch had run once
    assert torch.equal(torch.get_rng_state(), ref_rng)


def test_batch_norm_statistics_are_updated_once_per_micro_batch() -> None:
    ref_m, gc_m = _models()
    ref_m.train()
    gc_m.train()
    batch = _batch()
    _chunked_reference(ref_m, batch, 4)
    gradcache_backward(gc_m.embed, gc_m.loss, batch, 4, modules=[gc_m])
    _assert_same(_grads(gc_m), _grads(ref_m))
    ref_bufs = dict(ref_m.named_buffers())
    for name, buf in gc_m.named_buffers():
        assert torch.allclose(buf.float(), ref_bufs[name].float(), atol=1e-6), name
    assert int(gc_m.image.features[1].num_batches_tracked) == 2


def test_deferred_last_backward_completes_the_step() -> None:
    ref_m, gc_m = _models("siglip")
    ref_m.eval()
    gc_m.eval()
    batch = _batch()
    ref_m.loss(ref_m.embed(batch), batch).backward()
    res = gradcache_backward(gc_m.embed, gc_m.loss, batch, 3, defer_last=True)
    assert res.surrogate is not None
    # before the caller's backward the last micro-batch and the loss parameters are missing
    assert gc_m.loss_fn.logit_bias.grad is None
    res.surrogate.backward()
    _assert_same(_grads(gc_m), _grads(ref_m))


def test_split_batch() -> None:
    batch = _batch(5)
    parts = split_batch({**batch, "step": 7, "scalar": torch.tensor(1.0)}, 2)
    assert [len(p["prompts"]) for p in parts] == [2, 2, 1]
    assert [p["image"].shape[0] for p in parts] == [2, 2, 1]
    assert torch.equal(torch.cat([p["tabular"] for p in parts]), batch["tabular"])
    assert all(p["step"] == 7 and p["scalar"].ndim == 0 for p in parts)
    with pytest.raises(ValueError, match="different lengths"):
        split_batch({**batch, "prompts": batch["prompts"][:4]}, 2)
    with pytest.raises(ValueError, match="micro_batch_size"):
        split_batch(batch, 0)


# ------------------------------------------------------------------------------- 2 processes
def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {}
        for loss in ("clip", "siglip"):
            m, _ = _models(loss)
            m.eval()
            batch = _batch()
            per = N // world
            part = {k: v[rank * per:(rank + 1) * per] for k, v in batch.items()}
            res = gradcache_backward(m.embed, m.loss, part, 3, modules=[m])
            grads = average_like_ddp(_grads(m), world)
            out[loss] = {"loss": res.loss, "grads": grads}
        torch.save(out, Path(folder) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_equal_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    spawn(_worker, (2, free_port(), str(tmp_path)), 2, [tmp_path / f"rank{r}.pt" for r in range(2)])
    for loss in ("clip", "siglip"):
        m, _ = _models(loss)
        m.eval()
        batch = _batch()
        ref_loss = m.loss(m.embed(batch), batch)
        ref_loss.backward()
        ref = _grads(m)
        for rank in range(2):
            got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)[loss]
            assert torch.allclose(got["loss"], ref_loss.detach(), atol=1e-6)
            _assert_same(got["grads"], ref)


# ------------------------------------------------------------------ the trainer's objectives
def _module_batch(method: str) -> dict:
    g = torch.Generator().manual_seed(5)
    img = torch.randn(6, 3, 16, 16, 16, generator=g)
    batch = {"image": img, "patient_idx": torch.tensor([0, 1, 2, 0, 3, 4]),
             "index": torch.arange(6)}
    if method == "image_ssl":
        batch["image2"] = img + 0.3 * torch.randn(img.shape, generator=g)
    else:
        batch["prompts"] = [[f"The kidney donor was {w} years of age.", "GFR was low."]
                            for w in ("young", "old", "middle", "young", "old", "unknown")]
    return batch


@pytest.mark.parametrize("method", ["image_ssl", "medimp"])
def test_pretrain_module_micro_batches_equal_the_chunked_reference(method: str) -> None:
    """The module's own embed/loss (medimp: MiniLM's trainable last layer with dropout; batch
    norm in the image tower, train mode) through the gradient cache."""
    from medimp.train.module import PretrainModule

    cfg = {"method": method, "embed_dim": 16, "preprocess": {"shape": [16, 16, 16]},
           "image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8]}}}
    torch.manual_seed(0)
    ref = PretrainModule(cfg, in_channels=3)
    got = PretrainModule(cfg, in_channels=3)
    got.load_state_dict(ref.state_dict())
    ref.train()
    got.train()
    batch = _module_batch(method)

    torch.manual_seed(11)
    parts = [ref.embed(c) for c in split_batch(batch, 4)]
    emb = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    ref_loss = ref.objective.loss(ref, emb, batch)
    ref_loss.backward()
    torch.manual_seed(11)
    res = got.cached_loss(batch, 4)
    assert torch.allclose(res.loss, ref_loss.detach(), atol=1e-6)
    want = _grads(ref)
    assert "loss_fn.logit_scale" in want
    if method == "medimp":
        assert any(k.startswith("text_encoder.") for k in want)  # the trainable layer
    _assert_same(_grads(got), want)


def test_pretrain_trains_with_micro_batches(simulated_cohort, tiny_config, tmp_path) -> None:
    import pandas as pd

    from medimp.train import load_run_info, pretrain

    cfg = tiny_config("method=image_ssl", "augment={}", "epochs=1", "batch_size=4",
                      "micro_batch_size=2")
    run = pretrain(simulated_cohort, tmp_path / "gc", cfg, progress=False)
    assert load_run_info(run)["epochs_trained"] == 1
    hist = pd.read_csv(run / "history.csv")
    assert hist["train_loss"].notna().all() and (hist["train_loss"] > 0).all()
