"""Where one training step's time goes: a per-op-family profile (``torch.profiler``) of
``medimp pretrain``'s step, with the real data loader, at the paper's encoder and at the demo's.

Setups (both the ``medimp`` objective, the module and loader ``pretrain`` builds):

* ``paper``: CLIP-RN50-3D at 32×48×64, one phase per item, batch 8, a BERT-base-sized text
  encoder (12 layers, random weights, 11 frozen with the frozen-prefix cache), as
  benchmarks/versus_original.py;
* ``demo``: the demo's narrow ResNet-10 (widths 8-64) at 32³ × 3 phases, batch 16, MiniLM with
  its last layer trained, augmentation on (``medimp.demo``).

For each setup and precision (fp32; bf16 autocast only where ``precision: auto`` would choose
it, i.e. the CPU computes bf16 natively and no ``ONEDNN_MAX_CPU_ISA``/``ATEN_CPU_CAPABILITY``
keeps the kernels off it) it runs one warm-up step, then ``--steps`` profiled steps, and reports:

* the step's wall time split into data wait (the DataLoader's ``next``), the forward pass, the
  backward pass and the optimizer step;
* the self CPU time of every op, grouped into families (convolution forward / backward,
  normalisation, activations, pooling, matrix products, element-wise and copies, optimizer,
  loss); a family's share is of the profiled op time of the step;
* the step's FLOPs (``torch.utils.flop_counter``, forward + backward) per second of compute
  (step minus data wait), against the best of a conv3d forward and a matrix product measured on
  this machine in the same dtype (the practical peak of PyTorch here).

Emulate a CPU without bf16 (AVX2 only) with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_step.py``: the
result file then ends in ``_avx2``. Run it under ``nice`` on a shared machine; the load average
is recorded before and after. Writes ``benchmarks/results/profile_step[_avx2].json`` and prints
the tables. Never timed in a test.

    PYTHONPATH=src nice python benchmarks/profile_step.py [--setups paper demo] [--steps 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from _common import add_setup_args, bert_and_cohort, write_result
from torch.utils.flop_counter import FlopCounterMode

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 5
BENCH_SMALL = ['--setups', 'demo', '--steps', '1']

FAMILIES = [  # first match wins; matched against the op name in lower case
    ("conv backward", r"convolution_backward|conv.*backward"),
    ("conv forward", r"conv|mkldnn_convolution"),
    ("normalisation", r"norm"),
    ("activations", r"relu|gelu|threshold|sigmoid|silu|tanh|softmax"),
    ("pooling", r"pool"),
    ("matrix products", r"addmm|\bmm\b|bmm|matmul|linear|baddbmm|aten::mm"),
    ("optimizer", r"_foreach|adam|lerp|addcdiv|addcmul|sqrt|_fused"),
    ("copies, layout", r"copy_|contiguous|clone|\bto\b|_to_copy|cat|stack|empty|zero|fill|"
                       r"permute|view|reshape|transpose|expand|as_strided|select|slice|index"),
    ("element-wise", r"add|mul|div|sub|neg|exp|log|pow|where|clamp|sum|mean|max|min|eq|ne|"
                     r"ge|gt|lt|le"),
]


def _family(name: str) -> str:
    n = name.lower()
    for fam, pat in FAMILIES:
        if re.search(pat, n):
            return fam
    return "other"


def machine() -> dict[str, Any]:
    from medimp.train.precision import cpu_bf16_flags, isa_limit

    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "bf16_flags": list(cpu_bf16_flags()),
            "isa_limit": isa_limit(), "torch": torch.__version__,
            "aten_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def peak_flops(bf16: bool, reps: int = 5) -> dict[str, float]:
    """GFLOP/s of a conv3d forward (64->64, 3³, 4 × 24³) and of a 2048² matrix product in the
    given dtype: best of ``reps`` (against the noise of a shared machine)."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    out = {}
    conv = torch.nn.Conv3d(64, 64, 3, padding=1, bias=False).to(dtype)
    x = torch.randn(4, 64, 24, 24, 24, dtype=dtype)
    a = torch.randn(2048, 2048, dtype=dtype)
    for name, fn in (("conv3d", lambda: conv(x)), ("matmul", lambda: a @ a)):
        with torch.no_grad():
            fn()
            with FlopCounterMode(display=False) as fc:
                fn()
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
        out[name] = fc.get_total_flops() / best / 1e9
    return out


def _config(setup: str, bert: Path, work: Path, shape: list[int], precision: str,
            args: argparse.Namespace) -> Any:
    from medimp.train.config import apply_overrides, load_config

    channels_last = args.channels_last
    extra = [f"num_workers={args.workers}", f"optim.fused={'true' if args.fused else 'null'}",
             f"in_memory={args.in_memory}"]
    if setup == "paper":
        return load_config(None, apply_overrides({
            "method": "medimp", "seed": 0,
            "image_encoder": {"name": "clip_rn50_3d", "kwargs": {"input_size": shape}},
            "text": {"path": str(bert), "freeze": "first:11"}, "batch_size": 8,
            "optim": {"lr": 1e-4}, "precision": precision, "channels_last": channels_last,
            "val_fraction": 0.0, "preprocess": {"shape": shape, "phase_mode": "single"},
            "cache_dir": str(work / "cache")}, extra))
    return load_config(None, apply_overrides({
        "method": "medimp", "seed": 0,
        "image_encoder": {"name": "resnet10_3d", "kwargs": {"widths": [8, 16, 32, 64]}},
        "embed_dim": 64, "batch_size": 16, "precision": precision,
        "channels_last": channels_last,
        "optim": {"lr": 1e-3, "text_lr_scale": 0.1}, "val_fraction": 0.0,
        "preprocess": {"shape": shape}, "cache_dir": str(work / "cache")}, extra))


class _Clock:
    """Wall time of the phases of a step (the CPU runs ops synchronously)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        with torch.profiler.record_function(f"## {name}"):
            yield
        self.t[name] = self.t.get(name, 0.0) + time.perf_counter() - t0


def _step(module: Any, opt: Any, it: Any, bf16: bool, clock: _Clock) -> None:
    with clock("data wait"):
        batch = next(it)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with clock("forward"), ctx:
        loss = module.compute_loss(batch)
    with clock("backward"):
        loss.backward()
    with clock("optimizer"):
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)


def profile(setup: str, precision: str, args: argparse.Namespace) -> dict[str, Any]:
    from lightning.pytorch import seed_everything

    from medimp.train.datamodule import PretrainDataModule
    from medimp.train.module import PretrainModule, param_groups

    shape = list(args.shape) if setup == "paper" else [32, 32, 32]
    bert, cohort = bert_and_cohort(args.work, args.patients, tuple(shape))
    cfg = _config(setup, bert, args.work, shape, precision, args)
    seed_everything(0, workers=True, verbose=False)
    dm = PretrainDataModule(cohort, cfg, cache_dir=args.work / "cache")
    dm.setup()
    for i in range(len(dm.train_set)):  # the disk cache is warm from the second epoch on
        dm.train_set.base.load(i)
    loader = dm.train_dataloader()
    module = PretrainModule(cfg.model_dump(mode="json"), in_channels=dm.in_channels)
    module.train()
    opt = torch.optim.AdamW(param_groups(module, cfg.optim), lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                            fused=cfg.optim.fused)
    bf16 = precision == "bf16-mixed"
    it = iter(loader)
    _step(module, opt, it, bf16, _Clock())  # warm-up: allocations, text cache fill
    batch = next(it)
    with FlopCounterMode(display=False) as fc:
        module.compute_loss(batch).backward()
    flops = fc.get_total_flops()
    module.zero_grad(set_to_none=True)
    clock = _Clock()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            try:
                _step(module, opt, it, bf16, clock)
            except StopIteration:
                it = iter(loader)
                _step(module, opt, it, bf16, clock)
    fams: dict[str, float] = {}
    for ev in prof.key_averages():
        if ev.key.startswith("## "):
            continue
        fams[_family(ev.key)] = fams.get(_family(ev.key), 0.0) + ev.self_cpu_time_total / 1e6
    step_s = sum(clock.t.values()) / args.steps
    compute_s = step_s - clock.t.get("data wait", 0.0) / args.steps
    total = sum(fams.values()) or 1.0
    peak = peak_flops(bf16)
    gflops = flops / compute_s / 1e9
    return {
        "setup": setup, "precision": precision, "shape": shape, "batch": cfg.batch_size,
        "encoder": cfg.image_encoder.name, "channels_last": args.channels_last,
        "fused_adamw": bool(args.fused), "workers": args.workers, "in_memory": cfg.in_memory
        if cfg.in_memory is not None else dm.in_memory,
        "step_s": step_s, "volumes_per_s": cfg.batch_size / step_s,
        "phases_s": {k: v / args.steps for k, v in clock.t.items()},
        "data_wait_share": clock.t.get("data wait", 0.0) / args.steps / step_s,
        "families_share": {k: v / total for k, v in sorted(fams.items(), key=lambda x: -x[1])},
        "step_gflop": flops / 1e9, "achieved_gflops": gflops, "peak_gflops": peak,
        "share_of_peak": gflops / max(peak.values()),
    }


def _table(rows: list[dict[str, Any]]) -> None:
    fams = [f for f, _ in FAMILIES] + ["other"]
    head = ["setup", "prec", "step s", "vol/s", "data%", "fwd s", "bwd s", "opt s", "GFLOP/s",
            "%peak", *fams]
    print(" | ".join(head))
    for r in rows:
        ph = r["phases_s"]
        cells = [r["setup"], r["precision"], f"{r['step_s']:.2f}", f"{r['volumes_per_s']:.2f}",
                 f"{100 * r['data_wait_share']:.1f}", f"{ph.get('forward', 0):.2f}",
                 f"{ph.get('backward', 0):.2f}", f"{ph.get('optimizer', 0):.3f}",
                 f"{r['achieved_gflops']:.1f}", f"{100 * r['share_of_peak']:.1f}"]
        cells += [f"{100 * r['families_share'].get(f, 0.0):.1f}" for f in fams]
        print(" | ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=["paper", "demo"], choices=["paper", "demo"])
    ap.add_argument("--steps", type=int, default=2, help="profiled steps per setup")
    ap.add_argument("--shape", type=int, nargs=3, default=[32, 48, 64], help="paper setup")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--fused", action="store_true", help="fused AdamW")
    ap.add_argument("--workers", type=int, default=0, help="loader workers (persistent)")
    ap.add_argument("--in-memory", default="null", help="true | false | null (auto)")
    ap.add_argument("--precisions", nargs="+", default=None,
                    help="default: 32, and bf16-mixed where precision auto would choose it")
    ap.add_argument("--tag", default="", help="suffix of the result file")
    add_setup_args(ap, patients=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from medimp.train.precision import cpu_supports_bf16

    precisions = args.precisions or ["32"] + (["bf16-mixed"] if cpu_supports_bf16() else [])
    res: dict[str, Any] = {"machine": machine(), "load_before": os.getloadavg(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    rows = []
    for setup in args.setups:
        for precision in precisions:
            rows.append(profile(setup, precision, args))
            print(f"{setup} {precision}: {rows[-1]['step_s']:.2f} s/step", flush=True)
    res["load_after"] = os.getloadavg()
    res["rows"] = rows
    name = "profile_step" + ("_avx2" if res["machine"]["isa_limit"] else "") + args.tag
    res["options"] = {"channels_last": args.channels_last, "fused": args.fused,
                      "workers": args.workers, "in_memory": args.in_memory,
                      "steps": args.steps, "threads": args.threads}
    _table(rows)
    write_result(name, res)


if __name__ == "__main__":
    main()
