"""Peak memory against contrastive batch size, with and without gradient caching (CPU).

One training step (forward + backward of the image tower and projection, patient-masked CLIP
loss against fixed partner embeddings) per fresh process, so that the process's peak resident
memory (``ru_maxrss``) minus its resident memory just before the step is the step's peak. With
``micro_batch_size`` the activation memory is that of a micro-batch whatever the batch; without
it, it grows with the batch.

Run: ``PYTHONPATH=src python benchmarks/gradcache_memory.py [--batches 4 8 16 32] [--micro 4]``.
Writes ``benchmarks/results/gradcache_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 5
BENCH_SMALL = ['--batches', '4', '--micro', '2']

SHAPE = (48, 48, 48)


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(batch: int, micro: int | None) -> dict[str, float]:
    """Peak memory of one step in this process."""
    import torch
    from torch import nn
    from torch.nn.functional import normalize

    from medimp.models import ClipLoss, create_image_encoder
    from medimp.train.gradcache import gradcache_backward

    torch.set_num_threads(2)
    torch.manual_seed(0)
    enc = create_image_encoder("resnet10_3d", 3, widths=[16, 32, 64, 128])
    proj = nn.Linear(enc.num_features, 64)
    loss_fn = ClipLoss()
    data = {"image": torch.randn(batch, 3, *SHAPE), "text": torch.randn(batch, 64),
            "patient_idx": torch.arange(batch)}

    def embed(b):
        return normalize(proj(enc(b["image"])), dim=-1), normalize(b["text"], dim=-1)

    def loss(e, b):
        return loss_fn(*e, groups=b["patient_idx"])

    before = _rss_mib()
    if micro is None:
        loss(embed(data), data).backward()
    else:
        gradcache_backward(embed, loss, data, micro, modules=[enc])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"batch": batch, "micro_batch": micro or batch, "step_peak_mib": peak - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--one", type=int, nargs=2, help=argparse.SUPPRESS)  # child: batch micro
    args = ap.parse_args()
    if args.one:
        b, m = args.one
        print(json.dumps(one(b, m or None)))
        return
    from _common import write_result

    rows = []
    for b in args.batches:
        for m in (0, args.micro):
            if m and m >= b:
                continue
            out = subprocess.run([sys.executable, __file__, "--one", str(b), str(m)],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                     [str(Path(__file__).resolve().parents[1] / "src"),
                                      os.environ.get("PYTHONPATH", "")])})
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"batch {row['batch']:3d}  micro {row['micro_batch']:3d}  step peak "
                  f"{row['step_peak_mib']:8.0f} MiB", flush=True)
    write_result("gradcache_memory", {"encoder": "resnet10_3d widths 16-128", "shape": SHAPE,
                                      "phases": 3, "rows": rows})


if __name__ == "__main__":
    main()
