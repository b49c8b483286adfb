"""Multi-GPU scaling of ``medimp pretrain``: its own module, data module and trainer settings,
under DDP with the real loaders, at 1, 2, 4 and 8 GPUs.

For each number of GPUs N it launches ``torchrun --standalone --nproc_per_node N`` on this
script (``--worker``), which builds what ``pretrain`` builds (``PretrainDataModule`` with its
loaders and workers, ``PretrainModule``, the DDP strategy with its timeout, the precision
``auto`` resolves to) and trains ``--steps`` steps after ``--warmup`` steps, timing each step
and the wait for its batch on every process. It prints and writes
(``benchmarks/results/gpu.json``): volumes/s in all and per GPU, the scaling efficiency
(per-GPU throughput against 1 GPU), the share of step time spent waiting for data (the slowest
process), and the peak GPU memory.

Default: the ``medimp`` objective (MiniLM, last layer trained), CLIP-RN50-3D at 64×96×128 × 3
phases (``--shape 96 144 192`` is the paper's), batch 8 per GPU, 6 loader workers per GPU, on a
simulated cohort of 96 patients made (and preprocessed) once in ``--work``. Prepared to finish
in under 10 minutes on an 8-GPU node (H100/H200 class); ``--gpus 1 2`` on a smaller one.

``--cpu`` runs the same thing on CPU processes with gloo in a tiny configuration (16³, a tiny
CNN): a check that the script runs, not a measurement.

    PYTHONPATH=src python benchmarks/gpu.py [--gpus 1 2 4 8] [--steps 30] [--shape 64 96 128]
    PYTHONPATH=src python benchmarks/gpu.py --cpu --gpus 1 2 --steps 3     # the check on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve()

from lightning.pytorch import Callback  # noqa: E402 - after the offline settings

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = None
BENCH_SKIP = 'needs CUDA GPUs (its --cpu check: gloo processes on the CPU, no timing)'
BENCH_SMALL = ['--cpu', '--gpus', '1', '--steps', '2', '--warmup', '1']


def _config(args: argparse.Namespace) -> Any:
    from medimp.train.config import load_config

    if args.cpu:
        raw = {"method": "tabular_clip", "accelerator": "cpu",
               "image_encoder": {"name": "tiny_cnn_3d", "kwargs": {"widths": [4, 8, 16]}},
               "embed_dim": 16, "batch_size": args.batch, "precision": "32"}
    else:
        raw = {"method": "medimp", "accelerator": "gpu", "precision": "auto",
               "image_encoder": {"name": "clip_rn50_3d",
                                 "kwargs": {"input_size": list(args.shape)}},
               "batch_size": args.batch, "channels_last": True, "cudnn_benchmark": True,
               "optim": {"lr": 1e-4, "fused": True}}
    raw.update({"epochs": 1000, "val_fraction": 0.0, "strategy": "ddp", "devices": args.world,
                "num_workers": args.workers, "preprocess": {"shape": list(args.shape)},
                "cache_dir": str(args.work / "cache"), "seed": 0})
    return load_config(None, raw)


class _Timer(Callback):
    """Lightning callback: per step, the wait for the batch and the whole step (wall time)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.waits: list[float] = []
        self.steps: list[float] = []
        self._end: float | None = None
        self._start = 0.0

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, i: int) -> None:
        import torch

        now = time.perf_counter()
        if self._end is not None and trainer.global_step >= self.warmup:
            self.waits.append(now - self._end)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = now

    def on_train_batch_end(self, trainer: Any, module: Any, out: Any, batch: Any, i: int
                           ) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self._end is not None and trainer.global_step > self.warmup:
            self.steps.append(now - self._end)
        self._end = now


def worker(args: argparse.Namespace) -> None:
    import torch
    from lightning.pytorch import Trainer, seed_everything

    from medimp.train.datamodule import PretrainDataModule
    from medimp.train.module import PretrainModule
    from medimp.train.objectives import create_objective
    from medimp.train.precision import resolve_precision
    from medimp.train.run import _quiet, _strategy

    cfg = _config(args)
    precision = resolve_precision(cfg.precision, cfg.accelerator)
    _quiet()
    seed_everything(0, workers=True, verbose=False)
    objective = create_objective(cfg.method, cfg)
    dm = PretrainDataModule(args.cohort, cfg, cache_dir=args.work / "cache", objective=objective)
    module = PretrainModule(cfg.model_dump(mode="json"), in_channels=dm.in_channels,
                            tower_args=objective.tower_args())
    timer = _Timer(args.warmup)
    trainer = Trainer(
        max_steps=args.warmup + args.steps + 1, precision=precision, accelerator=cfg.accelerator,
        devices=cfg.devices, strategy=_strategy(cfg), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, benchmark=cfg.cudnn_benchmark and not args.cpu,
        gradient_clip_val=cfg.optim.grad_clip, callbacks=[timer, *objective.callbacks()])
    trainer.fit(module, datamodule=dm)
    steps = torch.tensor([sum(timer.steps), sum(timer.waits), float(len(timer.steps))])
    mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    everyone = [None] * trainer.world_size
    torch.distributed.all_gather_object(everyone, {"steps": steps.tolist(), "mem": mem})
    if trainer.is_global_zero:
        step_s = max(e["steps"][0] / max(e["steps"][2], 1) for e in everyone)
        wait = max(e["steps"][1] / max(e["steps"][0], 1e-9) for e in everyone)
        out = {"gpus": trainer.world_size, "step_s": step_s,
               "vol_per_s": trainer.world_size * cfg.batch_size / step_s,
               "vol_per_s_per_gpu": cfg.batch_size / step_s, "data_wait_share": wait,
               "peak_mem_gib": max(e["mem"] for e in everyone), "precision": precision,
               "steps": int(everyone[0]["steps"][2])}
        Path(args.result).write_text(json.dumps(out), encoding="utf-8")


def _prepare(args: argparse.Namespace) -> Path:
    """The simulated cohort, preprocessed into the cache once (as pretrain's preflight)."""
    from medimp.data import ExamDataset
    from medimp.simulate import simulate_cohort

    cohort = args.work / f"cohort{args.patients}_{'x'.join(map(str, args.shape))}"
    if not (cohort / "manifest.csv").is_file():
        simulate_cohort(cohort, args.patients, shape=tuple(args.shape), seed=0, overwrite=True,
                        progress=True)
    cfg = _config(argparse.Namespace(**{**vars(args), "world": 1}))
    ExamDataset(cohort, cfg.preprocess_config(), cache_dir=args.work / "cache").precompute(
        progress=True)
    return cohort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per GPU count")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=3, default=None)
    ap.add_argument("--batch", type=int, default=None, help="per GPU")
    ap.add_argument("--workers", type=int, default=None, help="loader workers per GPU")
    ap.add_argument("--patients", type=int, default=None)
    ap.add_argument("--cpu", action="store_true", help="gloo on CPU, tiny: a check, no timing")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "medimp-gpu")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per GPU count")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--cohort", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    defaults = ({"shape": [16, 16, 16], "batch": 4, "workers": 1, "patients": 16} if args.cpu
                else {"shape": [64, 96, 128], "batch": 8, "workers": 6, "patients": 96})
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.worker:
        worker(args)
        return
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure (run with --cpu for the check on CPU)")
        return
    available = (os.cpu_count() or 1) if args.cpu else torch.cuda.device_count()
    gpus = [n for n in args.gpus if n <= available]
    args.work.mkdir(parents=True, exist_ok=True)
    cohort = _prepare(args)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    rows: list[dict[str, Any]] = []
    for n in gpus:
        result = args.work / f"result{n}.json"
        result.unlink(missing_ok=True)
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(n), str(HERE), "--worker",
               "--world", str(n), "--cohort", str(cohort), "--result", str(result),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--shape",
               *map(str, args.shape), "--batch", str(args.batch), "--workers",
               str(args.workers), "--work", str(args.work), *(["--cpu"] if args.cpu else [])]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            print(f"{n} GPU(s): over {args.timeout} s, skipped")
            continue
        if proc.returncode != 0 or not result.is_file():
            print(f"{n} GPU(s): failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            continue
        row = json.loads(result.read_text(encoding="utf-8"))
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"{n} GPU(s): {row['vol_per_s']:.1f} vol/s, data wait "
              f"{100 * row['data_wait_share']:.1f}%", flush=True)
    base = next((r["vol_per_s_per_gpu"] for r in rows if r["gpus"] == 1), None)
    for r in rows:
        r["scaling_efficiency"] = r["vol_per_s_per_gpu"] / base if base else None
    print("GPUs | vol/s | vol/s per GPU | scaling eff. | data wait % | peak GiB | wall s")
    for r in rows:
        eff = f"{100 * r['scaling_efficiency']:.0f}%" if r["scaling_efficiency"] else "-"
        print(f"{r['gpus']} | {r['vol_per_s']:.1f} | {r['vol_per_s_per_gpu']:.2f} | {eff} | "
              f"{100 * r['data_wait_share']:.1f} | {r['peak_mem_gib']:.1f} | {r['wall_s']:.0f}")
    from _common import write_result

    device = "cpu (gloo check)" if args.cpu else torch.cuda.get_device_name()
    write_result("gpu_cpu_check" if args.cpu else "gpu", {
        "device": device, "shape": args.shape, "batch_per_gpu": args.batch,
        "workers_per_gpu": args.workers, "patients": args.patients, "steps": args.steps,
        "rows": rows})


if __name__ == "__main__":
    main()
