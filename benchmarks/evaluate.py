"""Wall time of `medimp.evaluate.evaluate` for the default and a quick protocol.

Simulates a cohort (16³ volumes), adds four 64-dim embedding tables (random features: the
cost of the probes does not depend on what the features mean) and times one evaluation per
protocol. Writes benchmarks/results/evaluate.json and prints a table.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/evaluate.py [--patients 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import write_result

from medimp.evaluate import EvalConfig, evaluate
from medimp.simulate import simulate_cohort

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 3
BENCH_SMALL = ['--patients', '20', '--methods', '1']

PROTOCOLS = {
    "quick (2x3-fold, patient_mean+exam, logistic, 200 boot)": EvalConfig(
        n_splits=3, repeats=2, n_bootstrap=200, levels=["patient_mean", "exam"],
        probes=["logistic"], retrieval=False),
    "default (5x5-fold, 3 levels, logistic+knn, 1000 boot)": EvalConfig(retrieval=False),
}


def _tables(cohort: Path, n_methods: int, dim: int) -> dict[str, pd.DataFrame]:
    exams = pd.read_csv(cohort / "exams.csv", dtype={"patient_id": str, "exam": str})
    rng = np.random.default_rng(0)
    out = {}
    for m in range(n_methods):
        df = exams[["patient_id", "exam"]].copy()
        df["level"] = "exam"
        feats = pd.DataFrame(rng.normal(size=(len(df), dim)),
                             columns=[f"e{i}" for i in range(dim)])
        out[f"method{m}"] = pd.concat([df.reset_index(drop=True), feats], axis=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--methods", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cohort = simulate_cohort(Path(tmp) / "cohort", args.patients, shape=(16, 16, 16),
                                 seed=0, workers=1, progress=False)
        methods = _tables(cohort, args.methods, args.dim)
        for name, cfg in PROTOCOLS.items():
            t = time.perf_counter()
            res = evaluate(cohort, methods, Path(tmp) / "eval", cfg, overwrite=True)
            wall = time.perf_counter() - t
            results.append({"protocol": name, "wall_s": round(wall, 1),
                            "records": len(res.metrics.records),
                            "cv_runs": len(res.cv),
                            "s_per_cv_run": round(wall / max(1, len(res.cv)), 2)})
    report = {"patients": args.patients, "methods": args.methods + 2, "dim": args.dim,
              "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "omp_threads": os.environ.get("OMP_NUM_THREADS"), "results": results}
    write_result("evaluate", report, show=False)
    print(f"{'protocol':58s} {'wall s':>7s} {'records':>8s} {'s/cv run':>9s}")
    for r in results:
        print(f"{r['protocol']:58s} {r['wall_s']:7.1f} {r['records']:8d} {r['s_per_cv_run']:9.2f}")
    print(f"(+clinical_only, oracle; {args.patients} patients)")


if __name__ == "__main__":
    main()
