"""How long the demo takes, before and after its speed-ups (docs/train.md), on a cut-down demo.

Runs ``medimp.demo.run_demo`` end to end (simulate, prompts, pretraining, evaluation, report)
on the demo's cohort (80 simulated patients, 32³, the narrow ResNet-10, batch 16, the full
evaluation protocol) with fewer epochs and seeds, in two settings, interleaved round by round
so that load from other jobs hits both alike:

- ``before``: the runs one after another in this process with torch's default threads, and
  one evaluation process (``jobs=1, threads=None``, evaluation ``n_jobs=1``), as the demo ran
  until then;
- ``after``: the demo's defaults (one run per CPU core at once, each in its own process with one
  torch thread; the evaluation's cross-validations in as many processes).

Then the ``after`` demo's evaluation again with one process: its time, and whether the
parallel evaluation's metrics and out-of-fold predictions are identical to it. Seconds per
epoch of each method come from the runs' ``history.csv`` (1 thread beside another run, after;
torch's default threads alone, before).

Prints a table and writes benchmarks/results/demo_speed.json. The pretraining stage scales with
``epochs x seeds``; the evaluation with the number of runs (``seeds``), so the full demo's time
is extrapolated from the per-epoch figures (stated in the JSON, never timed in a test).

    PYTHONPATH=src python benchmarks/demo_speed.py [--epochs 2] [--seeds 2] [--rounds 1]

``--settings after`` times the demo as it is now only (no ``before``, no second evaluation):
the estimate of the full demo's time on a machine, e.g. one emulated as AVX2-only with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import write_result

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 15
BENCH_SMALL = ['--patients', '10', '--epochs', '1', '--seeds', '1']

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def _demo(out: Path, setting: str, epochs: int, seeds: int, patients: int) -> dict[str, Any]:
    from medimp.demo import DemoConfig, demo_jobs, run_demo

    cfg = DemoConfig(n_patients=patients, epochs=epochs, seeds=seeds)
    if setting == "before":
        cfg = cfg.model_copy(update={"jobs": 1, "threads": None,
                                     "evaluation": {**cfg.evaluation, "n_jobs": 1}})
    t0 = time.perf_counter()
    res = run_demo(out / setting, cfg, overwrite=True, progress=False,
                   log=lambda m: print(f"  {setting}: {m}", flush=True))
    return {"total_s": round(time.perf_counter() - t0, 1), "jobs": demo_jobs(cfg),
            "stages_s": {k: round(v, 1) for k, v in res.timings.items()},
            "runs_s": {k: round(v, 1) for k, v in res.run_seconds.items()}}


def _eval_only(out: Path, seeds: int) -> dict[str, Any]:
    """The ``after`` demo's evaluation again with one process: time, and whether its metrics
    and out-of-fold predictions are identical to those of the demo's parallel evaluation."""
    import pandas as pd

    from medimp.demo import DemoConfig
    from medimp.evaluate import EvalConfig, evaluate
    from medimp.train.replicates import method_seed_runs

    demo = out / "after"
    d = DemoConfig(seeds=seeds)
    runs = method_seed_runs(demo / "runs", d.methods, d.seed_list())
    cfg = EvalConfig(n_splits=d.folds, repeats=d.repeats, n_bootstrap=d.bootstrap,
                     seed=d.seed, **{**d.evaluation, "n_jobs": 1})
    t0 = time.perf_counter()
    evaluate(demo / "cohort", runs, out / "eval_n1", cfg, progress=False, overwrite=True)
    result: dict[str, Any] = {"evaluate_again_n_jobs_1_s": round(time.perf_counter() - t0, 1)}
    a, b = (json.loads((p / "metrics.json").read_text()) for p in (out / "eval_n1",
                                                                    demo / "eval"))
    a.pop("header"), b.pop("header")
    pa, pb = (pd.read_parquet(p / "predictions.parquet") for p in (out / "eval_n1",
                                                                   demo / "eval"))
    result["parallel_metrics_identical"] = a == b
    result["parallel_predictions_identical"] = bool(pa.equals(pb))
    return result


def _epochs(out: Path) -> dict[str, Any]:
    """Median seconds per epoch of each method (epochs after the first) from history.csv."""
    import pandas as pd

    res: dict[str, Any] = {}
    for setting in ("before", "after"):
        for hist in sorted((out / setting / "runs").glob("*/seed*/history.csv")):
            df = pd.read_csv(hist)
            if len(df) > 1:
                res.setdefault(f"{setting}_{hist.parts[-3]}", []).extend(
                    df["seconds"].iloc[1:].tolist())
    return {f"epoch_s_{k}": round(float(pd.Series(v).median()), 2) for k, v in res.items()}


def _after_only(args: argparse.Namespace) -> None:
    """The demo as it is now, once: stage times, seconds per epoch, and the full demo's time
    extrapolated to its own epochs and seeds (pretraining scales with epochs x seeds, the
    evaluation with the runs; an estimate, stated as such)."""
    from medimp.demo import DemoConfig

    res = _demo(args.out, "after", args.epochs, args.seeds, args.patients)
    epochs = _epochs(args.out)
    full = DemoConfig()
    st = res["stages_s"]
    seeds = full.seeds / args.seeds
    # the runs measured (start-up and first epochs included) for every seed, plus the
    # remaining epochs at the measured seconds per epoch, res["jobs"] runs at a time
    more = (full.epochs - args.epochs) * sum(
        v for k, v in epochs.items() if k.startswith("epoch_s_after_")) * full.seeds
    estimate = (st.get("simulate", 0) + st.get("prompts", 0) + st.get("report", 0)
                + st.get("pretrain", 0) * seeds + more / max(res["jobs"], 1)
                + st.get("evaluate", 0) * seeds)
    write_result("demo_speed_after", {
        "config": {"patients": args.patients, "epochs": args.epochs, "seeds": args.seeds,
                   "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg(),
                   "isa": {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY",
                                                           "ONEDNN_MAX_CPU_ISA")}},
        **res, **epochs,
        "full_demo_estimate_s": round(estimate, 1),
        "estimate_note": f"pretrain x {full.seeds}/{args.seeds} seeds + {full.epochs} - "
                         f"{args.epochs} more epochs at the median s/epoch, {res['jobs']} runs "
                         f"at a time; evaluate x {full.seeds}/{args.seeds}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/medimp_demo_speed"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--patients", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--settings", nargs="+", default=["before", "after"],
                    choices=["before", "after"])
    args = ap.parse_args()
    if args.settings == ["after"]:
        _after_only(args)
        return

    from medimp.demo import DemoConfig, demo_jobs

    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        rounds.append({s: _demo(args.out, s, args.epochs, args.seeds, args.patients)
                       for s in order})
    jobs = demo_jobs(DemoConfig())

    def mean(setting: str, *path: str) -> float:
        vals = []
        for rnd in rounds:
            v: Any = rnd[setting]
            for p in path:
                v = v.get(p, 0.0)
            vals.append(float(v))
        return sum(vals) / len(vals)

    result: dict[str, Any] = {
        "config": {"patients": args.patients, "epochs": args.epochs, "seeds": args.seeds,
                   "rounds": args.rounds, "jobs": jobs, "cpus": os.cpu_count(),
                   "load_average_at_end": os.getloadavg()},
        "rounds": rounds,
    }
    for stage in ("simulate", "prompts", "pretrain", "evaluate", "report"):
        b, a = mean("before", "stages_s", stage), mean("after", "stages_s", stage)
        result[f"{stage}_before_s"], result[f"{stage}_after_s"] = round(b, 1), round(a, 1)
        result[f"{stage}_speedup"] = round(b / a, 2) if a else None
    b, a = mean("before", "total_s"), mean("after", "total_s")
    result["total_before_s"], result["total_after_s"] = round(b, 1), round(a, 1)
    result["total_speedup"] = round(b / a, 2)
    result.update(_epochs(args.out))
    result.update(_eval_only(args.out, args.seeds))
    write_result("demo_speed", result)
    print("\n| stage | before (s) | after (s) | speed-up |\n| --- | --- | --- | --- |")
    for stage in ("simulate", "prompts", "pretrain", "evaluate", "report", "total"):
        print(f"| {stage} | {result[f'{stage}_before_s']} | {result[f'{stage}_after_s']} | "
              f"{result[f'{stage}_speedup']}x |")


if __name__ == "__main__":
    main()
