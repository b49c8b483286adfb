"""Benchmark of medimp.models on CPU: text-encoder cost with and without the frozen-prefix cache,
and image-encoder training-step throughput.

Writes benchmarks/results/models.json and prints a table. Usage:

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/models.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from _common import write_result

from medimp.models import create_image_encoder, create_text_encoder

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 5
BENCH_SMALL = ['--quick']

WORDS = ["low", "normal", "high", "very low", "very high"]
VARS = ["donor age", "GFR", "creatinine", "recipient age"]
CHECKS = ["first month", "third month", "first year"]


def _prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        v, w, c = VARS[i % 4], WORDS[(i // 4) % 5], CHECKS[(i // 20) % 3]
        out.append(f"The patient's {v} was {w} at the {c} check-up (variant {i}).")
    return out


def bench_text(freeze: str, cache: bool, epochs: int, bank: list[str], batch: int) -> dict:
    """Mean seconds per training step (forward + backward) over ``epochs`` passes of ``bank``."""
    enc = create_text_encoder(freeze=freeze, cache=cache).train()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for i in range(0, len(bank), batch):
            out = enc(bank[i : i + batch])
            if out.requires_grad:
                out.pow(2).mean().backward()
        times.append(time.perf_counter() - t0)
    steps = -(-len(bank) // batch)
    return {"text_freeze": freeze, "cache": cache,
            "first_epoch_s": times[0], "later_epoch_s": sum(times[1:]) / max(1, epochs - 1),
            "later_step_ms": 1000 * sum(times[1:]) / max(1, epochs - 1) / steps,
            "cache_hits": enc.cache_info().hits}


def bench_image(name: str, kw: dict, shape: tuple[int, ...], batch: int, steps: int) -> dict:
    """Volumes per second of a forward + backward step."""
    enc = create_image_encoder(name, in_channels=shape[0], **kw).train()
    x = torch.randn(batch, *shape)
    enc(x).sum().backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        enc(x).pow(2).mean().backward()
    dt = time.perf_counter() - t0
    return {"encoder": name, "input": list(shape), "batch": batch,
            "params": sum(p.numel() for p in enc.parameters()),
            "volumes_per_s": batch * steps / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer prompts and steps")
    ap.add_argument("--out", default="benchmarks/results/models.json", help="JSON output")
    args = ap.parse_args()
    torch.manual_seed(0)
    bank = _prompts(32 if args.quick else 96)
    epochs = 2 if args.quick else 3
    text = [bench_text(f, c, epochs, bank, 16)
            for f, c in (("first:-1", False), ("first:-1", True), ("all", False), ("all", True))]
    steps = 2 if args.quick else 4
    image = [
        bench_image("tiny_cnn_3d", {}, (3, 48, 48, 48), 4, steps),
        bench_image("resnet10_3d", {"widths": (16, 32, 64, 128)}, (3, 48, 48, 48), 4, steps),
        bench_image("clip_rn50_3d", {"width": 16, "layers": (1, 1, 1, 1),
                                     "input_size": (48, 48, 48)}, (3, 48, 48, 48), 4, steps),
    ]
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "cpu": platform.processor()},
              "text": text, "image": image}
    write_result("models", result, args.out, show=False)
    print(f"{'text freeze':<12}{'cache':<7}{'epoch 1 s':>10}{'later epoch s':>15}"
          f"{'later step ms':>15}")
    for r in text:
        print(f"{r['text_freeze']:<12}{r['cache']!s:<7}{r['first_epoch_s']:>10.2f}"
              f"{r['later_epoch_s']:>15.2f}{r['later_step_ms']:>15.1f}")
    print(f"\n{'image encoder':<16}{'input':<16}{'params':>10}{'vol/s (fwd+bwd)':>18}")
    for r in image:
        print(f"{r['encoder']:<16}{'x'.join(map(str, r['input'])):<16}{r['params']:>10}"
              f"{r['volumes_per_s']:>18.1f}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
