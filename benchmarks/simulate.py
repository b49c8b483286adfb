"""Benchmark of the simulator: 100 patients at 48³, all exams and phases, NIfTI.

Target: <= 60 s on the 2-core machine. Reports wall time, volumes per second and peak
resident memory (main process and the largest worker), writes
``benchmarks/results/simulate.json`` and prints a table.

    python benchmarks/simulate.py [--patients 100] [--shape 48 48 48] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import write_result

from medimp.simulate import simulate_cohort

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 1
BENCH_SMALL = ['--patients', '10', '--shape', '16', '16', '16']


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100)
    ap.add_argument("--shape", type=int, nargs=3, default=(48, 48, 48))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", default="nifti", choices=("nifti", "dicom"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="medimp-bench-sim-"))
    try:
        t0 = time.perf_counter()
        out = simulate_cohort(tmp / "cohort", args.patients, shape=tuple(args.shape), seed=0,
                              fmt=args.format, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        n_vol = len(pd.read_csv(out / "manifest.csv"))
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    kib, kib_child = me.ru_maxrss, kids.ru_maxrss
    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    result = {
        "benchmark": "simulate",
        "patients": args.patients,
        "shape": list(args.shape),
        "format": args.format,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "load_average_1min_before_end": os.getloadavg()[0],
        "volumes": n_vol,
        "wall_s": round(wall, 2),
        "volumes_per_s": round(n_vol / wall, 1),
        # CPU seconds (all processes): load-independent; cpu_s / workers ~ wall on an idle box
        "cpu_s": round(cpu, 1),
        "idle_estimate_wall_s": round(cpu / args.workers, 1),
        "peak_rss_main_mib": round(kib / 1024, 1),
        "peak_rss_worker_mib": round(kib_child / 1024, 1),
        "output_mib": round(size_mb, 1),
        "target_wall_s": 60,
        "python": platform.python_version(),
    }
    write_result("simulate", result)


if __name__ == "__main__":
    main()
