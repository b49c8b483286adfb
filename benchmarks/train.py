"""Pretraining throughput on the CPU: precision, channels-last 3D, frozen-text cache, data wait.

Measures training steps (forward + backward + AdamW) of the ``medimp`` objective with a small
3D encoder at 48³ × 3 phases, on 2 threads:

* volumes/s for fp32 / bf16 autocast, channels-last 3D off / on, frozen text encoder with its
  per-prompt cache off (MiniLM runs every step) / on (precomputed once);
* the achieved FLOP/s of a step (``torch.utils.flop_counter``) against the measured FLOP/s of a
  plain fp32 conv3d on this machine (the "peak" we can expect from PyTorch here);
* the share of step time spent waiting for data with the real data pipeline (simulated cohort,
  preprocessed-volume cache warm) through the DataLoader used by ``pretrain``.

Writes ``benchmarks/results/train.json`` and prints a table. Run:
``PYTHONPATH=src python benchmarks/train.py [--steps 6] [--batch 8]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from torch.utils.flop_counter import FlopCounterMode

from medimp._io import atomic_write_text
from medimp.train.config import load_config
from medimp.train.module import PretrainModule

ROOT = Path(__file__).resolve().parent
SHAPE = (48, 48, 48)
ENCODER = {"name": "resnet10_3d", "kwargs": {"widths": [16, 32, 64, 128]}}
PROMPTS = [f"The patient's GFR was found to be {w} at the {d} check-up. Creatinine levels "
           f"displayed {s} fluctuations."
           for w in ("low", "very low", "high", "medium") for d in ("first month", "first year")
           for s in ("stable", "marked")]


def _module(cache: bool, channels_last: bool) -> PretrainModule:
    cfg = load_config(None, {"method": "medimp", "image_encoder": ENCODER, "embed_dim": 64,
                             "text": {"freeze": "all", "cache": cache},
                             "channels_last": channels_last})
    torch.manual_seed(0)
    return PretrainModule(cfg.model_dump(mode="json"), in_channels=3)


def _batch(batch: int, step: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(step)
    return {"image": torch.randn(batch, 3, *SHAPE, generator=g),
            "patient_idx": torch.arange(batch), "index": torch.arange(batch) + step * batch,
            "prompts": [PROMPTS for _ in range(batch)]}


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def train_steps(module: PretrainModule, batch: int, steps: int, bf16: bool) -> dict[str, float]:
    """Median time of ``steps`` optimisation steps (after a warm-up step), in-memory batches."""
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    module.train()
    times = []
    for s in range(steps + 1):
        b = _batch(batch, s)
        t0 = time.perf_counter()
        with _autocast(bf16):
            loss = module.compute_loss(b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    # the median resists the other jobs of a shared machine better than the mean
    step_s = float(sorted(times[1:])[steps // 2])
    return {"step_s": step_s, "volumes_per_s": batch / step_s}


def step_flops(module: PretrainModule, batch: int) -> int:
    """FLOPs of one training step's forward + backward (image tower, heads, loss)."""
    b = _batch(batch, 0)
    with FlopCounterMode(display=False) as fc:
        loss = module.compute_loss(b)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def conv3d_peak(reps: int = 5) -> float:
    """FLOP/s of a plain fp32 conv3d (64->64, 3³, 24³ x 4) forward: the machine's practical peak."""
    conv = torch.nn.Conv3d(64, 64, 3, padding=1, bias=False)
    x = torch.randn(4, 64, 24, 24, 24)
    with torch.no_grad():
        conv(x)
        with FlopCounterMode(display=False) as fc:
            conv(x)
        flops = fc.get_total_flops()
        t0 = time.perf_counter()
        for _ in range(reps):
            conv(x)
        dt = (time.perf_counter() - t0) / reps
    return flops / dt


def data_wait(batch: int, steps: int, workers: int) -> dict[str, float] | None:
    """Share of step time waiting for the DataLoader of ``pretrain`` on a simulated cohort."""
    try:
        from medimp.simulate import simulate_cohort
        from medimp.train.datamodule import PretrainDataModule
    except ImportError:
        return None
    tmp = Path(tempfile.mkdtemp(prefix="medimp-bench-"))
    cohort = simulate_cohort(tmp / "cohort", 12, shape=SHAPE, seed=0, workers=1, progress=False)
    cfg = load_config(None, {"method": "medimp", "image_encoder": ENCODER, "embed_dim": 64,
                             "text": {"freeze": "all"}, "batch_size": batch,
                             "val_fraction": 0.0, "num_workers": workers,
                             "preprocess": {"shape": list(SHAPE)}, "cache_dir": str(tmp / "c")})
    dm = PretrainDataModule(cohort, cfg, cache_dir=tmp / "c")
    dm.setup()
    for i in range(len(dm.train_set)):  # warm the preprocessed-volume cache
        dm.train_set.base.load(i)
    module = PretrainModule(cfg.model_dump(mode="json"), in_channels=dm.in_channels)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
    wait = comp = 0.0
    n = 0
    while n < steps + 1:
        it = iter(dm.train_dataloader())
        while n < steps + 1:
            t0 = time.perf_counter()
            try:
                b = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            loss = module.compute_loss(b)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t2 = time.perf_counter()
            if n > 0:
                wait += t1 - t0
                comp += t2 - t1
            n += 1
    return {"workers": workers, "wait_share": wait / (wait + comp),
            "step_s": (wait + comp) / steps, "volumes_per_s": batch * steps / (wait + comp)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    ap.add_argument("--batch", type=int, default=8, help="volumes per step")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    settings = [("fp32, text recomputed (baseline)", False, False, False),
                ("fp32, text cache", False, False, True),
                ("fp32, text cache, channels-last", False, True, True),
                ("bf16, text cache", True, False, True),
                ("bf16, text cache, channels-last", True, True, True),
                ("bf16, text recomputed", True, False, False)]
    rows = []
    for name, bf16, cl, cache in settings:
        module = _module(cache=cache, channels_last=cl)
        if cache:  # precompute every prompt once, as pretrain() does for a frozen encoder
            with torch.no_grad():
                module.text_encoder(PROMPTS)
        r = train_steps(module, args.batch, args.steps, bf16)
        rows.append({"setting": name, "bf16": bf16, "channels_last": cl, "text_cache": cache, **r})
        print(f"  {name:36s} {r['volumes_per_s']:7.2f} vol/s", flush=True)
    base = rows[0]["volumes_per_s"]
    for r in rows:
        r["speedup"] = r["volumes_per_s"] / base
    flops = step_flops(_module(cache=True, channels_last=False), args.batch)
    peak = conv3d_peak()
    for r in rows:
        r["achieved_flops_per_s"] = flops / r["step_s"]
        r["share_of_conv3d_peak"] = r["achieved_flops_per_s"] / peak
    waits = [w for w in (data_wait(args.batch, args.steps, k) for k in (0, 1)) if w]

    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "threads": args.threads, "torch": torch.__version__},
              "shape": list(SHAPE), "phases": 3, "batch": args.batch, "steps": args.steps,
              "encoder": ENCODER, "step_gflops": flops / 1e9,
              "conv3d_peak_gflops_per_s": peak / 1e9, "settings": rows, "data_wait": waits,
              "best_speedup_vs_fp32_no_cache": max(r["speedup"] for r in rows)}
    out = ROOT / "results" / "train.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")

    print(f"\nmedimp training step, {ENCODER['name']} {ENCODER['kwargs']}, {SHAPE} x 3 phases, "
          f"batch {args.batch}, {args.threads} threads; step = {flops / 1e9:.1f} GFLOP; "
          f"plain conv3d fp32 = {peak / 1e9:.1f} GFLOP/s")
    print(f"{'setting':38s} {'vol/s':>7s} {'speedup':>8s} {'GFLOP/s':>8s} {'% conv3d':>9s}")
    for r in rows:
        print(f"{r['setting']:38s} {r['volumes_per_s']:7.2f} {r['speedup']:7.2f}x "
              f"{r['achieved_flops_per_s'] / 1e9:8.1f} {100 * r['share_of_conv3d_peak']:8.1f}%")
    for w in waits:
        print(f"data wait with {w['workers']} worker(s): {100 * w['wait_share']:.1f}% of step "
              f"time ({w['volumes_per_s']:.2f} vol/s, fp32, text cached)")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
