"""How long the demo takes, before and after the issue-13 speed-ups, on a cut-down demo.

Runs ``medimp.demo.run_demo`` end to end (simulate, prompts, pretraining, evaluation, report)
on the demo's cohort (80 simulated patients, 32³, the narrow ResNet-10, batch 16, the full
evaluation protocol) with fewer epochs and seeds, in two settings, interleaved round by round
so that load from other jobs hits both alike:

- ``before``: the runs one after another in this process with torch's default threads, and
  one evaluation process (``jobs=1, threads=None``, evaluation ``n_jobs=1``), as the demo ran
  until then;
- ``after``: the demo's defaults (one run per CPU core at once, each in its own process with one
  torch thread; the evaluation's cross-validations in as many processes).

Then, on the ``after`` runs, the evaluation alone with ``n_jobs=1`` and with the demo's
``n_jobs``: times, and whether metrics and out-of-fold predictions are identical.

Prints a table and writes benchmarks/results/demo_speed.json. The pretraining stage scales with
``epochs x seeds``; the evaluation with the number of runs (``seeds``), so the full demo's time
is extrapolated from the per-epoch figures (stated in the JSON, never timed in a test).

    PYTHONPATH=src python benchmarks/demo_speed.py [--epochs 2] [--seeds 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import write_result

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


def _eval_only(out: Path, seeds: int, n_jobs: int) -> dict[str, Any]:
    """The evaluation alone on the ``after`` runs, with 1 and ``n_jobs`` processes."""
    import pandas as pd

    from medimp.demo import DemoConfig
    from medimp.evaluate import EvalConfig, evaluate

    demo = out / "after"
    d = DemoConfig()
    runs = {m: sorted((demo / "runs" / m).glob("seed*"))[:seeds] for m in d.methods}
    result: dict[str, Any] = {}
    for nj in (1, n_jobs):
        cfg = EvalConfig(n_splits=d.folds, repeats=d.repeats, n_bootstrap=d.bootstrap,
                         seed=d.seed, **{**d.evaluation, "n_jobs": nj})
        t0 = time.perf_counter()
        evaluate(demo / "cohort", runs, out / f"eval_n{nj}", cfg, progress=False,
                 overwrite=True)
        result[f"evaluate_n_jobs_{nj}_s"] = round(time.perf_counter() - t0, 1)
    a, b = (json.loads((out / f"eval_n{nj}" / "metrics.json").read_text()) for nj in (1, n_jobs))
    a.pop("header"), b.pop("header")
    pa, pb = (pd.read_parquet(out / f"eval_n{nj}" / "predictions.parquet")
              for nj in (1, n_jobs))
    result["metrics_identical"] = a == b
    result["predictions_identical"] = bool(pa.equals(pb))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/medimp_demo_speed"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--patients", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

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
    result.update(_eval_only(args.out, args.seeds, jobs))
    write_result("demo_speed", result)
    print("\n| stage | before (s) | after (s) | speed-up |\n| --- | --- | --- | --- |")
    for stage in ("simulate", "prompts", "pretrain", "evaluate", "report", "total"):
        print(f"| {stage} | {result[f'{stage}_before_s']} | {result[f'{stage}_after_s']} | "
              f"{result[f'{stage}_speedup']}x |")


if __name__ == "__main__":
    main()
