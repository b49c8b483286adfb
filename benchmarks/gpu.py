"""GPU benchmark at the paper's size: CLIP-RN50-3D, 96×144×192, 3 phases, bf16, channels-last.

For each variant (eager / ``torch.compile``; full batch / gradient caching) it times training
steps of the image tower + projection + CLIP loss against fixed text embeddings (the text tower
is negligible at this image size) and prints volumes/s and peak memory; then it finds the
largest contrastive batch whose graph fits in memory in one pass (doubling until out of
memory) and shows that gradient caching trains a larger one within the memory of a small
micro-batch. Meant to finish in under 5 minutes on one large GPU (H100/H200 class).

Without a CUDA device it prints why and exits with status 0 (nothing to measure).

Run: ``PYTHONPATH=src python benchmarks/gpu.py [--steps 5] [--max-batch 64] [--no-compile]``.
Writes ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import torch
from torch import nn
from torch.nn.functional import normalize

SHAPE = (96, 144, 192)
PHASES = 3
EMBED = 128


class Tower(nn.Module):
    """Image encoder + projection; text side: fixed random embeddings through a linear map."""

    def __init__(self) -> None:
        super().__init__()
        from medimp.models import ClipLoss, create_image_encoder

        self.encoder = create_image_encoder("clip_rn50_3d", PHASES, input_size=list(SHAPE))
        self.proj = nn.Linear(self.encoder.num_features, EMBED)
        self.text_proj = nn.Linear(768, EMBED)
        self.loss_fn = ClipLoss()

    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x = batch["image"].contiguous(memory_format=torch.channels_last_3d)
            img = self.proj(self.encoder(x))
            txt = self.text_proj(batch["text"])
        return normalize(img.float(), dim=-1), normalize(txt.float(), dim=-1)

    def loss(self, emb: tuple[torch.Tensor, torch.Tensor], batch: dict[str, Any]
             ) -> torch.Tensor:
        return self.loss_fn(*emb, groups=batch["patient_idx"])


def _batch(n: int) -> dict[str, torch.Tensor]:
    return {"image": torch.randn(n, PHASES, *SHAPE, device="cuda"),
            "text": torch.randn(n, 768, device="cuda"),
            "patient_idx": torch.arange(n, device="cuda")}


def _steps(model: Tower, opt: Any, batch_size: int, micro: int | None, steps: int
           ) -> dict[str, float]:
    from medimp.train.gradcache import gradcache_backward

    batch = _batch(batch_size)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        if micro is None:
            model.loss(model.embed(batch), batch).backward()
        else:
            gradcache_backward(model.embed, model.loss, batch, micro, modules=[model])
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    step = sorted(times[1:])[steps // 2]
    return {"batch": batch_size, "micro_batch": micro or batch_size, "step_s": step,
            "vol_per_s": batch_size / step,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "first_step_s": times[0]}


def _fits(model: Tower, opt: Any, n: int) -> bool:
    ok = True
    try:
        batch = _batch(n)
        model.loss(model.embed(batch), batch).backward()
        torch.cuda.synchronize()
    except torch.cuda.OutOfMemoryError:
        ok = False
    # out here the failed graph (held by the exception's traceback) is gone
    batch = None
    opt.zero_grad(set_to_none=True)
    gc.collect()
    torch.cuda.empty_cache()
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    ap.add_argument("--batch", type=int, default=8, help="contrastive batch of the timed runs")
    ap.add_argument("--micro", type=int, default=2, help="micro-batch of gradient caching")
    ap.add_argument("--max-batch", type=int, default=64, help="upper end of the batch search")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False); "
              "run it on a machine with an NVIDIA GPU. Nothing was measured.")
        return 0
    from _common import write_result

    t_start = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = Tower().cuda().to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    rows = []
    variants = [("eager", False), ("compiled", True)]
    for name, comp in variants:
        if comp and args.no_compile:
            continue
        enc = model.encoder
        if comp:
            model.encoder = torch.compile(enc)
        for micro in (None, args.micro):
            r = _steps(model, opt, args.batch, micro, args.steps)
            r["variant"] = name + (", gradient cache" if micro else "")
            rows.append(r)
            print(f"{r['variant']:28s} batch {r['batch']:3d} micro {r['micro_batch']:3d} "
                  f"{r['vol_per_s']:7.2f} vol/s  peak {r['peak_gib']:6.1f} GiB", flush=True)
        model.encoder = enc
    # largest contrastive batch whose graph fits in one pass
    largest, n = 0, 2
    while n <= args.max_batch and _fits(model, opt, n):
        largest, n = n, n * 2
    print(f"largest contrastive batch in one pass: {largest} (searched powers of 2 up to "
          f"{args.max_batch})", flush=True)
    big = None
    if largest:
        micro = max(1, largest // 2)
        big = _steps(model, opt, 4 * largest, micro, 1)
        print(f"gradient cache: contrastive batch {big['batch']} with micro-batch {micro}: "
              f"peak {big['peak_gib']:.1f} GiB, {big['vol_per_s']:.2f} vol/s", flush=True)
    write_result("gpu", {"device": torch.cuda.get_device_name(), "shape": list(SHAPE),
                         "phases": PHASES, "precision": "bf16-mixed", "channels_last": True,
                         "torch": torch.__version__, "variants": rows,
                         "largest_batch_one_pass": largest, "gradient_cache_large": big,
                         "seconds": time.perf_counter() - t_start})
    return 0


if __name__ == "__main__":
    sys.exit(main())
