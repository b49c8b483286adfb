"""Side by side in one run: a training loop built the way the original MEDIMP is built, and
``medimp pretrain``'s, on the same encoder and data; prints the throughput ratio.

The original loop (Milecki et al.'s code, as described in docs/train.md):

* every volume is decoded from its NIfTI file, resampled, normalised and augmented at every
  step (no preprocessed-volume cache): ``ExamDataset(cache_dir=False)``;
* the text encoder runs its 12 layers on every prompt at every step, although 11 are frozen
  (no frozen-prefix cache);
* fp32; a plain shuffled ``DataLoader`` (no worker, no patient-aware order).

medimp's loop: the preprocessed-volume cache (warm, as from the second epoch on), the
frozen-prefix text cache, ``precision: auto`` (bf16 autocast where the CPU computes bf16
natively) and channels-last 3D where chosen, the patient-interleaved sampler. Both take the same
augmentation, the same model (``clip_rn50_3d`` + a 12-layer BERT-sized text encoder with
random weights, ``first:11``), the same batch and optimizer; steps alternate between the two
loops, so the load of a shared machine falls on both alike, and the medians are compared.

Run: ``PYTHONPATH=src python benchmarks/versus_original.py [--steps 4] [--shape 32 48 64]``.
Writes ``benchmarks/results/versus_original.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from _common import add_setup_args, bert_and_cohort, write_result

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 5
BENCH_SMALL = ['--steps', '1', '--patients', '10']


def _config(shape: list[int], bert: Path, work: Path, ours: bool, encoder: str,
            precision: str, channels_last: bool) -> Any:
    from medimp.train.config import load_config

    kwargs = {"input_size": shape} if encoder == "clip_rn50_3d" else {}
    return load_config(None, {
        "method": "medimp", "seed": 0,
        "image_encoder": {"name": encoder, "kwargs": kwargs},
        "text": {"path": str(bert), "freeze": "first:11", "cache": ours}, "batch_size": 8,
        "optim": {"lr": 1e-4}, "precision": precision if ours else "32",
        "channels_last": channels_last and ours, "val_fraction": 0.0,
        "preprocess": {"shape": shape, "phase_mode": "single"},
        "cache_dir": str(work / "cache")})


def _step(module: Any, opt: Any, batch: dict[str, Any], bf16: bool) -> None:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        loss = module.compute_loss(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4, help="timed steps per loop")
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 48, 64])
    ap.add_argument("--encoder", default="clip_rn50_3d")
    ap.add_argument("--precision", default="auto", help="medimp's precision (auto: resolved)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last 3D for medimp")
    add_setup_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lightning.pytorch import seed_everything
    from torch.utils.data import DataLoader

    from medimp.data import ExamDataset
    from medimp.train.datamodule import PretrainDataModule, _Items, collate
    from medimp.train.module import PretrainModule, param_groups
    from medimp.train.precision import resolve_precision

    work = args.work
    shape = list(args.shape)
    bert, cohort = bert_and_cohort(work, args.patients, tuple(shape))
    precision = resolve_precision(args.precision)
    loops: dict[str, dict[str, Any]] = {}
    for name, ours in (("original", False), ("medimp", True)):
        cfg = _config(shape, bert, work, ours, args.encoder, precision, args.channels_last)
        seed_everything(0, workers=True, verbose=False)
        dm = PretrainDataModule(cohort, cfg, cache_dir=work / "cache")
        dm.setup()
        if ours:
            for i in range(len(dm.train_set)):  # the cache is warm from the second epoch on
                dm.train_set.base.load(i)
            loader = dm.train_dataloader()
        else:  # decode + preprocess + augment every volume every step; plain shuffled loader
            base = ExamDataset(dm.cohort, dm.preprocess, cache_dir=False, augment=dm.augment,
                               seed=0, keys=dm.train_keys)
            items = _Items(base, dm.patient_index, dm.train_set.fields)
            loader = DataLoader(items, batch_size=cfg.batch_size, shuffle=True,
                                collate_fn=collate, drop_last=True)
        module = PretrainModule(cfg.model_dump(mode="json"), in_channels=dm.in_channels)
        module.train()
        opt = torch.optim.AdamW(param_groups(module, cfg.optim), lr=cfg.optim.lr)
        loops[name] = {"module": module, "opt": opt, "loader": loader, "it": iter(loader),
                       "bf16": cfg.precision == "bf16-mixed", "times": []}

    def one(loop: dict[str, Any]) -> float:
        t0 = time.perf_counter()
        try:
            batch = next(loop["it"])
        except StopIteration:
            loop["it"] = iter(loop["loader"])
            batch = next(loop["it"])
        _step(loop["module"], loop["opt"], batch, loop["bf16"])
        return time.perf_counter() - t0

    for loop in loops.values():  # warm-up: first-step allocations, text cache fill
        one(loop)
    for s in range(args.steps):
        for name, loop in loops.items():
            loop["times"].append(one(loop))
            print(f"step {s} {name:8s} {loop['times'][-1]:7.2f} s", flush=True)
    res: dict[str, Any] = {"encoder": args.encoder, "shape": shape, "phase_mode": "single",
                           "batch": 8, "text": "BERT-base-sized, 12 layers, first:11",
                           "medimp_precision": precision,
                           "medimp_channels_last": args.channels_last,
                           "threads": args.threads, "steps": args.steps}
    for name, loop in loops.items():
        med = statistics.median(loop["times"])
        res[f"{name}_step_s"] = loop["times"]
        res[f"{name}_vol_per_s"] = 8 / med
    res["speedup"] = res["medimp_vol_per_s"] / res["original_vol_per_s"]
    write_result("versus_original", res)
    print(f"original {res['original_vol_per_s']:.2f} vol/s, medimp {res['medimp_vol_per_s']:.2f}"
          f" vol/s: {res['speedup']:.2f}x")


if __name__ == "__main__":
    main()
