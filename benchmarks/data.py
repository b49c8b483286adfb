"""Benchmark of the data pipeline: what the cache buys, and whether loading keeps up.

1. One epoch over a simulated cohort read and preprocessed from NIfTI (no cache) versus the same
   epoch read from the preprocessing cache (target: ≥ 5× faster).
2. Throughput of a cached, augmented DataLoader at 48³ × 3 phases with 2 worker processes
   (target: ≥ 100 exams/s, so that loading never stalls training).

Writes ``benchmarks/results/data.json`` and prints a table. Run from the repository root:
``python benchmarks/data.py [--patients 16] [--shape 48] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import write_result
from torch.utils.data import DataLoader

from medimp.data import AugmentConfig, ExamDataset, PreprocessConfig, read_cohort
from medimp.simulate import simulate_cohort

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 5
BENCH_SMALL = ['--patients', '10', '--shape', '16', '--epochs', '1', '--repeats', '1',
    '--train-steps', '1']

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"


def _epoch_in_process(ds: ExamDataset) -> float:
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return time.perf_counter() - t0


def _loader_rate(ds: ExamDataset, workers: int, batch: int, epochs: int) -> float:
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    for _ in loader:  # warm-up: start the workers, fill the OS page cache
        pass
    n, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for b in loader:
            n += b["image"].shape[0]
    return n / (time.perf_counter() - t0)


def _durable_write_cost(cache_dir: Path, scratch: Path) -> dict[str, float]:
    """What flushing to disk (fsync of file and folder, medimp._io) costs a cache write: every
    entry of the cache rewritten once durably and once without the flushes, on the same disk."""
    from medimp._io import atomic_write_bytes

    entries = [f.read_bytes() for f in sorted(cache_dir.rglob("*.safetensors"))]
    out: dict[str, float] = {"entries": len(entries),
                             "entry_kib": round(sum(map(len, entries)) / max(1, len(entries))
                                                / 1024, 1)}
    for durable in (False, True, False, True):  # interleaved: the disk's state is shared
        t0 = time.perf_counter()
        for i, data in enumerate(entries):
            atomic_write_bytes(scratch / f"{i}.safetensors", data, durable=durable)
        key = "durable_ms_per_entry" if durable else "no_fsync_ms_per_entry"
        ms = 1000 * (time.perf_counter() - t0) / max(1, len(entries))
        out[key] = round(min(out.get(key, ms), ms), 3)
    return out


def _transform_costs(shape: tuple[int, int, int], n: int = 20) -> dict[str, float]:
    """Milliseconds per exam of each augmentation alone (probability 1), in this process."""
    from monai.data import set_track_meta

    from medimp.data import build_augment

    x = torch.rand(3, *shape)
    off = AugmentConfig.none()
    cases = {
        "flip (per axis)": off.model_copy(update={"flip_prob": 1.0, "flip_axes": (0,)}),
        "affine": off.model_copy(update={"affine_prob": 1.0}),
        "blur": off.model_copy(update={"blur_prob": 1.0}),
        "noise": off.model_copy(update={"noise_prob": 1.0}),
        "gamma": off.model_copy(update={"gamma_prob": 1.0}),
        "default AugmentConfig()": AugmentConfig(),
    }
    set_track_meta(False)
    out = {}
    for name, cfg in cases.items():
        aug = build_augment(cfg)
        t0 = time.perf_counter()
        for i in range(n):
            aug.set_random_state(seed=i)
            aug({"image": x.clone()})
        out[name] = round((time.perf_counter() - t0) / n * 1000, 2)
    set_track_meta(True)
    return out


def _data_wait_share(ds: ExamDataset, workers: int, batch: int, steps: int, encoder: str) -> dict:
    """Share of a training step spent waiting for the loader (forward + backward on CPU)."""
    from medimp.models import create_image_encoder

    model = create_image_encoder(encoder, in_channels=len(ds.phases), embed_dim=128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, drop_last=True)
    wait = compute = 0.0
    done = 0
    while done < steps:
        it = iter(loader)
        while done < steps:
            t0 = time.perf_counter()
            try:
                b = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            loss = model(b["image"]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if done > 0:  # the first batch includes starting the workers
                wait += t1 - t0
                compute += t2 - t1
            done += 1
    return {"encoder": encoder, "steps": steps - 1, "batch": batch,
            "step_s": round((wait + compute) / max(1, steps - 1), 3),
            "data_wait_share": round(wait / max(wait + compute, 1e-9), 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=16, help="simulated patients (4 exams each)")
    ap.add_argument("--shape", type=int, default=48, help="edge of the simulated + output volume")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--batch", type=int, default=8, help="batch size of the loader")
    ap.add_argument("--epochs", type=int, default=4, help="timed loader epochs")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the in-process epochs")
    ap.add_argument("--train-steps", type=int, default=12,
                    help="training steps for the data-wait share (0: skip)")
    ap.add_argument("--encoder", default="resnet10_3d", help="image encoder of those steps")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    shape = (args.shape,) * 3
    with tempfile.TemporaryDirectory(prefix="medimp-bench-") as tmp:
        t0 = time.perf_counter()
        root = simulate_cohort(Path(tmp) / "cohort", n_patients=args.patients, shape=shape,
                               seed=0, progress=False)
        t_sim = time.perf_counter() - t0
        cohort = read_cohort(root)
        cfg = PreprocessConfig(spacing=None, shape=shape)
        uncached = ExamDataset(cohort, cfg, cache_dir=False)
        cached = ExamDataset(cohort, cfg, cache_dir=Path(tmp) / "cache")
        t0 = time.perf_counter()
        cached.precompute()
        t_fill = time.perf_counter() - t0
        durable = _durable_write_cost(Path(tmp) / "cache", Path(tmp) / "scratch")
        t_unc = statistics.median(_epoch_in_process(uncached) for _ in range(args.repeats))
        t_cac = statistics.median(_epoch_in_process(cached) for _ in range(args.repeats))
        aug = ExamDataset(cohort, cfg, cache_dir=Path(tmp) / "cache", augment=AugmentConfig())
        rate_aug = _loader_rate(aug, args.workers, args.batch, args.epochs)
        rate_plain = _loader_rate(cached, args.workers, args.batch, args.epochs)
        rate_aug0 = _loader_rate(aug, 0, args.batch, max(1, args.epochs // 2))
        # CPU seconds per cached + augmented exam: what a core that is not shared can deliver
        cpu0 = time.process_time()
        for _ in range(2):
            for i in range(len(aug)):
                aug[i]
        cpu_ms = 1000 * (time.process_time() - cpu0) / (2 * len(aug))
        n_exams, n_channels = len(cached), len(cached.phases)
        costs = _transform_costs(shape)
        wait = (_data_wait_share(aug, args.workers, args.batch, args.train_steps, args.encoder)
                if args.train_steps > 1 else None)
        info = cached.cache.info().to_dict() if cached.cache else {}
    result = {
        "benchmark": "data",
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "cohort": {"patients": args.patients, "exams": n_exams, "phases": n_channels,
                   "shape": list(shape), "simulate_s": round(t_sim, 2)},
        "cache_fill_s": round(t_fill, 3),
        "cache_write": {**durable, "fsync_share_of_fill": round(
            durable["entries"] * (durable["durable_ms_per_entry"]
                                  - durable["no_fsync_ms_per_entry"]) / 1000 / t_fill, 3)},
        "epoch_uncached_s": round(t_unc, 3),
        "epoch_cached_s": round(t_cac, 3),
        "cached_speedup": round(t_unc / t_cac, 1),
        "loader": {"workers": args.workers, "batch": args.batch},
        "cached_aug_exams_per_s": round(rate_aug, 1),
        "cached_noaug_exams_per_s": round(rate_plain, 1),
        "cached_aug_exams_per_s_0_workers": round(rate_aug0, 1),
        "cached_aug_cpu_ms_per_exam": round(cpu_ms, 2),
        "cached_aug_exams_per_s_2_free_cores_from_cpu_time": round(2000 / cpu_ms, 1),
        "cache_bytes": info.get("bytes"),
        "augment_ms_per_exam": costs,
        "training_step": wait,
        "load_average_1min": os.getloadavg()[0],
        "targets": {"cached_speedup": 5.0, "cached_aug_exams_per_s": 100.0},
    }
    write_result("data", result, args.out, show=False)
    rows = [
        ("epoch, uncached (read + preprocess)", f"{t_unc:.2f} s", f"{n_exams / t_unc:.0f} exams/s"),
        ("epoch, cached", f"{t_cac:.2f} s", f"{n_exams / t_cac:.0f} exams/s"),
        ("cached speed-up (target >= 5x)", f"{t_unc / t_cac:.1f}x", ""),
        (f"cached + augment, {args.workers} workers (target >= 100)", "",
         f"{rate_aug:.0f} exams/s"),
        (f"cached, no augment, {args.workers} workers", "", f"{rate_plain:.0f} exams/s"),
        ("cached + augment, in process", "", f"{rate_aug0:.0f} exams/s"),
        ("cached + augment, CPU time per exam", f"{cpu_ms:.1f} ms",
         f"{2000 / cpu_ms:.0f} exams/s on 2 free cores"),
    ]
    print(f"medimp data benchmark: {n_exams} exams x {n_channels} phases x {args.shape}^3")
    cw = result["cache_write"]
    rows.append(("cache entry write, durable / without fsync",
                 f"{cw['durable_ms_per_entry']:.2f} ms",
                 f"{cw['no_fsync_ms_per_entry']:.2f} ms"))
    rows.append(("fsync share of filling the cache", f"{cw['fsync_share_of_fill']:.1%}", ""))
    for name, a, b in rows:
        print(f"  {name:<48} {a:>9} {b:>14}")
    print("  augmentation alone, ms per exam: "
          + ", ".join(f"{k} {v}" for k, v in costs.items()))
    if wait:
        share = 100 * wait["data_wait_share"]
        print(f"  training step ({wait['encoder']}, batch {wait['batch']}, CPU): "
              f"{wait['step_s']:.2f} s, of which waiting for data {share:.0f} %")
    print(f"  machine load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
