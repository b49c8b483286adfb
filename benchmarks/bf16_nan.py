"""Reproduce (and locate) the non-finite losses of ``precision: bf16-mixed`` on the CPU.

The setting of the bf16 investigation (docs/train.md): ``clip_rn50_3d`` at 32×48×64, one phase
per sample (``phase_mode: single``), a 12-layer BERT-sized text encoder (random weights built
here, nothing downloaded) with ``freeze: first:11``, batch 8, lr 1e-4, a simulated cohort. The
loop is the one Lightning runs for ``bf16-mixed`` (autocast around the step, backward outside
it, gradient clipping at 1.0, AdamW with warm-up), instrumented: after every step it reports the
loss, the gradient norm, and, at the first non-finite value, the first module (in forward order)
whose output was non-finite, and which parameters were non-finite.

Run: ``PYTHONPATH=src python benchmarks/bf16_nan.py [--steps 20] [--channels-last]
[--precision bf16-mixed|32]``. Writes ``benchmarks/results/bf16_nan.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from _common import add_setup_args, bert_and_cohort, write_result

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 10
BENCH_SMALL = ['--steps', '1', '--patients', '10']

SHAPE = (32, 48, 64)


def _finite_hooks(module: torch.nn.Module, seen: list[str]) -> list[Any]:
    def hook(name: str):
        def fn(_m: Any, _inp: Any, out: Any) -> None:
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for o in outs:
                if isinstance(o, torch.Tensor) and o.is_floating_point() and \
                        not torch.isfinite(o).all():
                    seen.append(f"{name} ({type(_m).__name__}, {o.dtype})")
                    return
        return fn
    return [m.register_forward_hook(hook(n)) for n, m in module.named_modules() if n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--lr", type=float, default=1e-4)
    add_setup_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from lightning.pytorch import seed_everything

    from medimp.train.config import load_config
    from medimp.train.datamodule import PretrainDataModule
    from medimp.train.module import PretrainModule, WarmupCosine, param_groups

    work = args.work
    bert, cohort = bert_and_cohort(work, args.patients, SHAPE)
    cfg = load_config(None, {
        "method": "medimp", "seed": 0,
        "image_encoder": {"name": "clip_rn50_3d", "kwargs": {"input_size": list(SHAPE)}},
        "text": {"path": str(bert), "freeze": "first:11"}, "batch_size": 8,
        "optim": {"lr": args.lr}, "precision": args.precision,
        "channels_last": args.channels_last, "epochs": 10,
        "preprocess": {"shape": list(SHAPE), "phase_mode": "single"},
        "cache_dir": str(work / "cache")})
    seed_everything(0, workers=True, verbose=False)
    dm = PretrainDataModule(cohort, cfg, cache_dir=work / "cache")
    dm.setup()
    module = PretrainModule(cfg.model_dump(mode="json"), in_channels=dm.in_channels)
    module.train()
    opt = torch.optim.AdamW(param_groups(module, cfg.optim), lr=cfg.optim.lr,
                            betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
    per_epoch = len(dm.train_dataloader())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(per_epoch, per_epoch * 10))
    bf16 = args.precision == "bf16-mixed"
    seen: list[str] = []
    _finite_hooks(module, seen)
    rows = []
    step = 0
    first_bad: dict[str, Any] | None = None
    while step < args.steps and first_bad is None:
        for batch in dm.train_dataloader():
            if step >= args.steps:
                break
            t0 = time.perf_counter()
            seen.clear()
            before = {k: v.detach().clone() for k, v in module.state_dict().items()}
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                loss = module.compute_loss(batch)
            loss.backward()
            gnorm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0))
            bad_grads = [n for n, p in module.named_parameters()
                         if p.grad is not None and not torch.isfinite(p.grad).all()]
            row = {"step": step, "loss": float(loss.detach()), "grad_norm": gnorm,
                   "logit_scale": float(module.loss_fn.logit_scale.detach()),
                   "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(row, flush=True)
            if not math.isfinite(row["loss"]) or bad_grads:
                first_bad = {"step": step, "first_nonfinite_forward": seen[:5],
                             "nonfinite_grads": bad_grads[:10]}
                # what replays the failing step: the weights before it and its batch
                torch.save({"state": before, "batch": {k: v for k, v in batch.items()
                                                       if isinstance(v, torch.Tensor)},
                            "prompts": batch.get("prompts"), "step": step},
                           work / "failing_step.pt")
                break
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            bad = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]
            if bad:
                first_bad = {"step": step, "nonfinite_params_after_step": bad[:10]}
                break
            step += 1
    write_result("bf16_nan", {"precision": args.precision, "channels_last": args.channels_last,
                              "lr": args.lr, "shape": list(SHAPE), "steps": rows,
                              "first_nonfinite": first_bad})


if __name__ == "__main__":
    main()
