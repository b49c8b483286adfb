"""A fully frozen text encoder is run once per prompt before training, then only read."""

from __future__ import annotations

import torch

from medimp.train.callbacks import PrecomputeTextCallback
from medimp.train.module import PretrainModule

CFG = {
    "method": "medimp",
    "image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
    "embed_dim": 8,
    "text": {"freeze": "all", "cache": True},
}
PROMPTS = [f"The patient's GFR was found to be {w} at the {d} check-up."
           for w in ("low", "high", "very low") for d in ("first month", "first year")]


def test_precompute_fills_the_cache_and_training_only_reads_it() -> None:
    module = PretrainModule(CFG, in_channels=3)
    enc = module.text_encoder
    assert not any(p.requires_grad for p in enc.parameters())
    cb = PrecomputeTextCallback(PROMPTS, batch_size=4)
    cb.on_fit_start(None, module)
    info = enc.cache_info()
    assert info.size == len(PROMPTS) and info.misses == len(PROMPTS)
    batch = {"image": torch.randn(4, 3, 16, 16, 16), "patient_idx": torch.arange(4),
             "index": torch.arange(4), "prompts": [PROMPTS] * 4}
    for _ in range(3):  # three "epochs": every prompt comes from the cache
        loss = module.compute_loss(batch)
        loss.backward()
    after = enc.cache_info()
    assert after.misses == len(PROMPTS) and after.hits >= 12
    # the projection on top of the frozen encoder still learns
    assert module.text_proj.net.weight.grad is not None
