"""Wall time of `medimp.evaluate.evaluate` on a demo-sized input, with and without the clinic's
additions (eGFR regression tasks, clinical+NAME models, calibration and decision curves).

The demo's evaluation: 80 simulated patients, 4 methods x 3 pretraining runs of 64-dim
embeddings (random features here: the probes' cost does not depend on what they mean),
clinical_only and oracle, 5x3-fold CV, 3 levels, logistic + k-NN, survival on poor status.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/evaluate_endpoints_speed.py [--jobs 2]
"""

from __future__ import annotations

import argparse
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
BENCH_MINUTES = 6  # two demo-sized evaluations (5x3 CV): about 1.5 + 2.5 min quiet
BENCH_SMALL = ['--patients', '30', '--methods', '1', '--runs', '1', '--repeats', '1']


def _runs(cohort: Path, n_methods: int, n_runs: int, dim: int) -> dict[str, list]:
    exams = pd.read_csv(cohort / "exams.csv", dtype={"patient_id": str, "exam": str})
    rng = np.random.default_rng(0)
    names = ["medimp", "random_init", "image_ssl", "tabular_clip"]
    names += [f"method{i}" for i in range(len(names), n_methods)]
    out: dict[str, list] = {}
    for m in range(n_methods):
        for _ in range(n_runs):
            df = exams[["patient_id", "exam"]].copy().reset_index(drop=True)
            df["level"] = "exam"
            feats = pd.DataFrame(rng.normal(size=(len(df), dim)),
                                 columns=[f"e{i}" for i in range(dim)])
            out.setdefault(names[m], []).append(pd.concat([df, feats], axis=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=80)
    ap.add_argument("--methods", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--only", choices=["before", "after", "both"], default="both",
                    help="'before': without the additions (as the demo ran before them)")
    args = ap.parse_args()
    fields = EvalConfig.model_fields
    extras = {k: False for k in ("continuous", "added_value", "calibration") if k in fields}
    modes = {"before": extras, "after": {}}
    if args.only != "both":
        modes = {args.only: modes[args.only]}
    result: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cohort = simulate_cohort(Path(tmp) / "cohort", args.patients, shape=(16, 16, 16),
                                 seed=0, workers=1, progress=False)
        methods = _runs(cohort, args.methods, args.runs, args.dim)
        for name, kw in modes.items():
            cfg = EvalConfig(n_splits=5, repeats=args.repeats, survival_event="poor_status",
                             retrieval=False, n_jobs=args.jobs, **kw)
            t, cpu = time.perf_counter(), time.process_time()
            res = evaluate(cohort, methods, Path(tmp) / f"eval_{name}", cfg)
            sec, cpu = time.perf_counter() - t, time.process_time() - cpu
            m = res.metrics
            n_reg = len(getattr(m, "regression", []) or [])
            print(f"{name}: {sec:.1f} s wall, {cpu:.1f} s CPU of this process (the whole "
                  f"evaluation with --jobs 1), {len(m.records)} binary records, {n_reg} "
                  f"regression records, {len(m.comparisons)} comparisons (jobs={args.jobs})",
                  flush=True)
            result[name] = {"wall_s": round(sec, 2), "cpu_s_main_process": round(cpu, 2),
                            "binary_records": len(m.records), "regression_records": n_reg,
                            "comparisons": len(m.comparisons)}
    write_result("evaluate_endpoints_speed", {"args": vars(args), **result}, show=False)


if __name__ == "__main__":
    main()
