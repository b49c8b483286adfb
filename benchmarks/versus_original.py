"""Side by side in one run: a training loop built the way the original MEDIMP is built, and
``medimp pretrain``'s in fp32 and (where the CPU has bf16 instructions) in bf16, on the same
encoder and data; prints the throughput ratios against the original loop.

The original loop (Milecki et al.'s code, as described in docs/train.md):

* every volume is decoded from its NIfTI file, resampled, normalised and augmented at every
  step (no preprocessed-volume cache): ``ExamDataset(cache_dir=False)``;
* the text encoder runs its 12 layers on every prompt at every step, although 11 are frozen
  (no frozen-prefix cache);
* fp32; a plain shuffled ``DataLoader`` (no worker, no patient-aware order).

medimp's loop: the preprocessed-volume cache and the frozen-prefix text cache (both warm, as
from the second epoch on: one untimed epoch first), channels-last 3D where asked, the
patient-interleaved sampler; once in fp32 and once in bf16 autocast, each its own model (same
initial weights) and optimizer. bf16 runs only where the CPU has bf16 instructions
(``amx_bf16`` or ``avx512_bf16`` in ``/proc/cpuinfo``) and no environment variable keeps the
kernels off them (``ONEDNN_MAX_CPU_ISA=AVX2``, ``ATEN_CPU_CAPABILITY=avx2``: the AVX2-only
emulation); elsewhere bf16 would be emulated, and it is reported as not run. All loops take the
same augmentation, the same model (``clip_rn50_3d`` + a 12-layer BERT-sized text encoder with
random weights, ``first:11``), the same batch and optimizer.

Measured in alternating rounds: each round runs one step of every loop, the loop that goes
first rotating from round to round, so that the load of a shared machine falls on all alike.
The figures are each loop's median step, and the ratios are computed both from those medians
and round by round (the median and range of the per-round ratios: a load that changes between
rounds moves both sides of a round alike).

Run: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/versus_original.py --threads 1
[--rounds 6] [--shape 32 48 64]``. Writes ``benchmarks/results/versus_original.json`` (with
``--tag``: ``versus_original<tag>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from _common import Timer, add_setup_args, bert_and_cohort, write_result

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 10
BENCH_SMALL = ['--rounds', '1', '--patients', '10']

BATCH = 8


def _config(shape: list[int], bert: Path, work: Path, ours: bool, encoder: str,
            precision: str, channels_last: bool) -> Any:
    from medimp.train.config import load_config

    kwargs = {"input_size": shape} if encoder == "clip_rn50_3d" else {}
    return load_config(None, {
        "method": "medimp", "seed": 0,
        "image_encoder": {"name": encoder, "kwargs": kwargs},
        "text": {"path": str(bert), "freeze": "first:11", "cache": ours}, "batch_size": BATCH,
        "optim": {"lr": 1e-4}, "precision": precision,
        "channels_last": channels_last and ours, "val_fraction": 0.0,
        "preprocess": {"shape": shape, "phase_mode": "single"},
        "cache_dir": str(work / "cache")})


def _step(module: Any, opt: Any, batch: dict[str, Any], bf16: bool) -> float:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        loss = module.compute_loss(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def _cpu() -> dict[str, Any]:
    from medimp.train.precision import cpu_bf16_flags, isa_limit

    return {"bf16_flags": list(cpu_bf16_flags()), "isa_limit": isa_limit(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _figures(loops: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each loop's step times and median throughput, and the ratios: from the medians, and
    round by round (median and range)."""
    res: dict[str, Any] = {}
    for name, loop in loops.items():
        res[f"{name}_step_s"] = [round(t, 3) for t in loop["times"]]
        res[f"{name}_vol_per_s"] = BATCH / statistics.median(loop["times"])
        res[f"{name}_losses"] = [round(x, 5) for x in loop["losses"]]

    def ratio(slow: str, fast: str) -> None:
        key = "bf16_vs_fp32" if slow == "medimp_fp32" else f"{fast}_vs_original"
        per_round = [a / b for a, b in zip(loops[slow]["times"], loops[fast]["times"],
                                           strict=True)]
        res[key] = res[f"{fast}_vol_per_s"] / res[f"{slow}_vol_per_s"]
        res[f"{key}_rounds"] = {"median": statistics.median(per_round), "min": min(per_round),
                                "max": max(per_round), "all": [round(x, 3) for x in per_round]}

    for name in loops:
        if name != "original":
            ratio("original", name)
    if "medimp_fp32" in loops and "medimp_bf16" in loops:
        ratio("medimp_fp32", "medimp_bf16")
    return res


def _rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for name in res["loops"]:
        vps = res[f"{name}_vol_per_s"]
        ratio = res.get(f"{name}_vs_original")
        rounds = res.get(f"{name}_vs_original_rounds")
        span = (f"{rounds['median']:.2f} ({rounds['min']:.2f}-{rounds['max']:.2f})"
                if rounds else "")
        rows.append((name, f"{statistics.median(res[f'{name}_step_s']):.2f}", f"{vps:.3f}",
                     f"{ratio:.2f}x" if ratio else "", span))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6,
                    help="timed rounds (one step of every loop each, after a warm-up round)")
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 48, 64])
    ap.add_argument("--encoder", default="clip_rn50_3d")
    ap.add_argument("--precisions", nargs="+", choices=["32", "bf16-mixed"], default=None,
                    help="medimp's precisions (default: 32, plus bf16-mixed where the CPU has "
                         "bf16 instructions that the kernels may use)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last 3D for medimp")
    ap.add_argument("--tag", default="", help="suffix of the result file's name")
    add_setup_args(ap)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    torch.set_num_threads(args.threads)

    from lightning.pytorch import seed_everything
    from torch.utils.data import DataLoader

    from medimp.data import ExamDataset
    from medimp.train.datamodule import PretrainDataModule, _Items, collate
    from medimp.train.module import PretrainModule, param_groups
    from medimp.train.precision import cpu_supports_bf16

    work = args.work
    shape = list(args.shape)
    cpu = _cpu()
    bf16_native = cpu_supports_bf16()
    precisions = args.precisions or (["32"] + (["bf16-mixed"] if bf16_native else []))
    bert, cohort = bert_and_cohort(work, args.patients, tuple(shape))
    setups = [("original", False, "32")] + [
        ("medimp_" + ("bf16" if p == "bf16-mixed" else "fp32"), True, p) for p in precisions]
    loops: dict[str, dict[str, Any]] = {}
    for name, ours, precision in setups:
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
                       "bf16": precision == "bf16-mixed", "times": [], "losses": []}

    def one(loop: dict[str, Any]) -> float:
        with Timer() as clock:
            try:
                batch = next(loop["it"])
            except StopIteration:
                loop["it"] = iter(loop["loader"])
                batch = next(loop["it"])
            loop["losses"].append(_step(loop["module"], loop["opt"], batch, loop["bf16"]))
        return clock.seconds

    names = list(loops)
    # warm-up, untimed: the original loop one step (first-step allocations); medimp's loops one
    # epoch, after which their frozen-prefix text cache holds every prompt the timed steps draw
    # (outside Lightning the step counter stays 0, so an item draws the same paraphrase every
    # epoch), as a real run's cache holds them all from its first epochs on
    for name in names:
        for _ in range(len(loops[name]["loader"]) if name != "original" else 1):
            one(loops[name])
    loads = []
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            loops[name]["times"].append(one(loops[name]))
        loads.append(round(os.getloadavg()[0], 2))
        print(f"round {r}: " + ", ".join(f"{n} {loops[n]['times'][-1]:.2f} s" for n in names)
              + f" (load {loads[-1]})", flush=True)

    res: dict[str, Any] = {
        "encoder": args.encoder, "shape": shape, "phase_mode": "single", "batch": BATCH,
        "text": "BERT-base-sized, 12 layers, first:11", "original_precision": "32",
        "medimp_precisions": precisions, "bf16_native": bf16_native, **cpu,
        "bf16_not_run": None if "bf16-mixed" in precisions else (
            "the CPU has no bf16 instructions the kernels may use: bf16 would be emulated"),
        "medimp_channels_last": args.channels_last, "threads": args.threads,
        "rounds": args.rounds, "load_average_per_round": loads, "loops": names,
        **_figures(loops)}
    write_result("versus_original" + args.tag, res, show=False)

    head = ("loop", "median step s", "vol/s", "vs original", "per round: median (range)")
    rows = [head, *_rows(res)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if "bf16_vs_fp32" in res:
        print(f"medimp bf16 vs fp32: {res['bf16_vs_fp32']:.2f}x "
              f"(per round {res['bf16_vs_fp32_rounds']['median']:.2f}x)")
    if res["bf16_not_run"]:
        print(f"bf16 not run: {res['bf16_not_run']}")


if __name__ == "__main__":
    main()
