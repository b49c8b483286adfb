"""Pretraining throughput on the CPU: precision, channels-last 3D, frozen-text cache, compile,
data wait.

Measures training steps (forward + backward + AdamW) of the ``medimp`` objective with a 3D
encoder (default: the config's default, ``resnet10_3d`` of widths 64-512) at 48³ × 3 phases:

* volumes/s for fp32 / bf16 autocast, channels-last 3D off / on, frozen text encoder with its
  per-prompt cache off (MiniLM runs every step) / on (precomputed once), and ``torch.compile``
  of the image encoder (``--compile``);
* the achieved FLOP/s of a step (``torch.utils.flop_counter``: forward + backward) next to the
  measured FLOP/s of a plain conv3d forward on this machine **in the same dtype and memory
  layout** (the practical peak of PyTorch here), and the share of it reached;
* the share of step time spent waiting for data with the real data pipeline (simulated cohort,
  preprocessed-volume cache warm) through the DataLoader used by ``pretrain``.

Writes ``benchmarks/results/train.json`` and prints a table. Run:
``PYTHONPATH=src python benchmarks/train.py [--steps 6] [--batch 8]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from _common import write_result
from torch.utils.flop_counter import FlopCounterMode

from medimp.train.config import load_config
from medimp.train.module import PretrainModule

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 10
BENCH_SMALL = ['--steps', '1', '--batch', '2']

ROOT = Path(__file__).resolve().parent
SHAPE = (48, 48, 48)
ENCODERS = {"default": {"name": "resnet10_3d", "kwargs": {}},
            "small": {"name": "resnet10_3d", "kwargs": {"widths": [16, 32, 64, 128]}}}
ENCODER = ENCODERS["default"]
PROMPTS = [f"The patient's GFR was found to be {w} at the {d} check-up. Creatinine levels "
           f"displayed {s} fluctuations."
           for w in ("low", "very low", "high", "medium") for d in ("first month", "first year")
           for s in ("stable", "marked")]


def _module(cache: bool, channels_last: bool, compile_: bool = False) -> PretrainModule:
    cfg = load_config(None, {"method": "medimp", "image_encoder": ENCODER, "embed_dim": 64,
                             "text": {"freeze": "all", "cache": cache},
                             "channels_last": channels_last})
    torch.manual_seed(0)
    module = PretrainModule(cfg.model_dump(mode="json"), in_channels=3)
    if compile_:
        module.image_encoder = torch.compile(module.image_encoder)
    return module


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


def conv3d_peak(bf16: bool = False, channels_last: bool = False, reps: int = 5) -> float:
    """FLOP/s of a plain conv3d forward (64->64, 3³, 4 x 24³) in the given dtype and layout:
    the practical peak of PyTorch on this machine (best of ``reps``, against the noise of a
    shared machine)."""
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    conv = torch.nn.Conv3d(64, 64, 3, padding=1, bias=False).to(memory_format=fmt)
    x = torch.randn(4, 64, 24, 24, 24).contiguous(memory_format=fmt)
    with torch.no_grad(), _autocast(bf16):
        conv(x)
        with FlopCounterMode(display=False) as fc:
            conv(x)
        flops = fc.get_total_flops()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
    return flops / best


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
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="default",
                    help="'default': the config's resnet10_3d (widths 64-512); 'small': 16-128")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile of the image encoder (bf16, channels-last)")
    ap.add_argument("--no-data-wait", action="store_true", help="skip the data-wait runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global ENCODER  # noqa: PLW0603 - the helpers above read the chosen encoder
    ENCODER = ENCODERS[args.encoder]

    settings = [("fp32, text recomputed (baseline)", False, False, False, False),
                ("fp32, text cache", False, False, True, False),
                ("fp32, text cache, channels-last", False, True, True, False),
                ("bf16, text cache", True, False, True, False),
                ("bf16, text cache, channels-last", True, True, True, False),
                ("bf16, text recomputed", True, False, False, False)]
    if args.compile:
        settings.append(("bf16, text cache, channels-last, compiled", True, True, True, True))
    peaks = {(bf16, cl): conv3d_peak(bf16, cl) for bf16 in (False, True) for cl in (False, True)}
    rows = []
    for name, bf16, cl, cache, comp in settings:
        module = _module(cache=cache, channels_last=cl, compile_=comp)
        if cache:  # precompute every prompt once, as pretrain() does for a frozen encoder
            with torch.no_grad():
                module.text_encoder(PROMPTS)
        t0 = time.perf_counter()
        if comp:  # compilation happens on the first steps: timed apart
            train_steps(module, args.batch, 1, bf16)
        warm = time.perf_counter() - t0
        r = train_steps(module, args.batch, args.steps, bf16)
        rows.append({"setting": name, "bf16": bf16, "channels_last": cl, "text_cache": cache,
                     "compiled": comp, "compile_s": warm if comp else 0.0, **r})
        print(f"  {name:42s} {r['volumes_per_s']:7.2f} vol/s", flush=True)
    base = rows[0]["volumes_per_s"]
    for r in rows:
        r["speedup"] = r["volumes_per_s"] / base
    flops = step_flops(_module(cache=True, channels_last=False), args.batch)
    for r in rows:
        peak = peaks[(r["bf16"], r["channels_last"])]
        r["achieved_flops_per_s"] = flops / r["step_s"]
        r["conv3d_peak_flops_per_s"] = peak
        r["share_of_conv3d_peak"] = r["achieved_flops_per_s"] / peak
        r["share_of_bf16_conv3d_peak"] = r["achieved_flops_per_s"] / max(
            peaks[(True, False)], peaks[(True, True)])
    waits = ([] if args.no_data_wait else
             [w for w in (data_wait(args.batch, args.steps, k) for k in (0, 1)) if w])

    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "threads": args.threads, "torch": torch.__version__},
              "shape": list(SHAPE), "phases": 3, "batch": args.batch, "steps": args.steps,
              "encoder": ENCODER, "step_gflops": flops / 1e9,
              "conv3d_peak_gflops_per_s": {f"{'bf16' if b else 'fp32'}"
                                           f"{', channels-last' if c else ''}": p / 1e9
                                           for (b, c), p in peaks.items()},
              "settings": rows, "data_wait": waits,
              "best_speedup_vs_fp32_no_cache": max(r["speedup"] for r in rows)}
    write_result("train", result, show=False)

    print(f"\nmedimp training step, {ENCODER['name']} {ENCODER['kwargs']}, {SHAPE} x 3 phases, "
          f"batch {args.batch}, {args.threads} threads; step = {flops / 1e9:.1f} GFLOP "
          "(forward + backward)")
    print("plain conv3d forward peak (GFLOP/s): " + ", ".join(
        f"{k} {v:.0f}" for k, v in result["conv3d_peak_gflops_per_s"].items()))
    print(f"{'setting':44s} {'vol/s':>7s} {'speedup':>8s} {'GFLOP/s':>8s} {'peak':>7s} "
          f"{'% peak':>7s} {'% bf16':>7s}")
    for r in rows:
        print(f"{r['setting']:44s} {r['volumes_per_s']:7.2f} {r['speedup']:7.2f}x "
              f"{r['achieved_flops_per_s'] / 1e9:8.1f} {r['conv3d_peak_flops_per_s'] / 1e9:7.0f} "
              f"{100 * r['share_of_conv3d_peak']:6.1f}% "
              f"{100 * r['share_of_bf16_conv3d_peak']:6.1f}%")
        if r["compiled"]:
            print(f"{'':44s} (compilation: {r['compile_s']:.0f} s, first step)")
    for w in waits:
        print(f"data wait with {w['workers']} worker(s): {100 * w['wait_share']:.1f}% of step "
              f"time ({w['volumes_per_s']:.2f} vol/s, fp32, text cached)")


if __name__ == "__main__":
    main()
