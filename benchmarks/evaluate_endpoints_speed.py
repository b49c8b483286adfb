"""Wall time of `medimp.evaluate.evaluate` on a demo-sized input, with and without the clinic's
additions (eGFR regression tasks, clinical+NAME models, calibration and decision curves).

The demo's evaluation: 80 simulated patients, 4 methods x 3 pretraining runs of 64-dim
embeddings (random features here: the probes' cost does not depend on what they mean),
clinical_only and oracle, 5x3-fold CV, 3 levels, logistic + k-NN, survival on poor status.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/evaluate_endpoints_speed.py [--jobs 2]

``--before-src DIR`` (the ``src`` folder of another checkout, e.g. the commit before a speed
change) times that code against this one instead, alternating before/after ``--rounds`` times
in one run on the same inputs (each evaluation in its own process), and checks that every
evaluation wrote the same ``metrics.json`` (bar its creation time) and predictions:

    git archive BASE src | tar -x -C /tmp/before
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/evaluate_endpoints_speed.py \
        --before-src /tmp/before/src --repeats 1 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


# one evaluation in a fresh process, with the medimp found on PYTHONPATH
_CHILD = """
import json, sys, time
from pathlib import Path
import pandas as pd
from medimp.evaluate import EvalConfig, evaluate
cohort, tables, out, cfg = sys.argv[1:5]
methods = {}
for p in sorted(Path(tables).glob("*.parquet")):
    methods.setdefault(p.stem.split("#")[0], []).append(pd.read_parquet(p))
cfg = EvalConfig.model_validate_json(cfg)
t, c = time.perf_counter(), time.process_time()
evaluate(cohort, methods, out, cfg)
print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}))
"""

#: files every evaluation writes whose content must not depend on the code's speed
_COMPARED = ("metrics.json", "predictions.parquet", "egfr_predictions.parquet",
             "survival.parquet", "calibration.parquet", "decision_curves.parquet")


def _max_diff(a, b, path: str = "") -> tuple[float, list[str]]:
    """Largest absolute difference between two JSON values, and where they differ otherwise."""
    if isinstance(a, dict) and isinstance(b, dict):
        worst, where = 0.0, [f"{path}/{k}: only one side" for k in set(a) ^ set(b)]
        for k in set(a) & set(b):
            d, w = _max_diff(a[k], b[k], f"{path}/{k}")
            worst, where = max(worst, d), where + w
        return worst, where
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return 0.0, [f"{path}: {len(a)} vs {len(b)} items"]
        worst, where = 0.0, []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d, w = _max_diff(x, y, f"{path}[{i}]")
            worst, where = max(worst, d), where + w
        return worst, where
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool):
        return (0.0 if a == b or (a != a and b != b) else abs(float(a) - float(b))), []
    return 0.0, ([] if a == b else [f"{path}: {a!r} vs {b!r}"])


def _same_outputs(a: Path, b: Path) -> dict[str, object]:
    """Whether two evaluation folders hold the same results: identical bytes of each compared
    table's values, else the largest difference."""
    out: dict[str, object] = {}
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for m in (ma, mb):
        m["header"].pop("created", None)
    diff, where = _max_diff(ma, mb)
    out["metrics.json"] = "identical" if ma == mb else f"max |diff| {diff:.3g} {where[:3]}"
    for name in _COMPARED[1:]:
        if not (a / name).exists():
            continue
        ta, tb = pd.read_parquet(a / name), pd.read_parquet(b / name)
        if ta.equals(tb):
            out[name] = "identical"
        else:
            num = ta.select_dtypes("number")
            d = float(np.nanmax(np.abs(num.to_numpy(float) - tb[num.columns].to_numpy(float))))
            out[name] = f"max |diff| {d:.3g}"
    return out


def _alternate(args: argparse.Namespace, cohort: Path, methods: dict[str, list], tmp: Path
               ) -> dict[str, object]:
    """before, after, before, after...: each evaluation in its own process."""
    tables = tmp / "tables"
    tables.mkdir()
    for name, runs in methods.items():
        for i, df in enumerate(runs):
            df.to_parquet(tables / f"{name}#{i}.parquet", index=False)
    cfg = EvalConfig(n_splits=5, repeats=args.repeats, survival_event="poor_status",
                     retrieval=False, n_jobs=args.jobs)
    here = str(Path(__file__).resolve().parents[1] / "src")
    srcs = {"before": str(Path(args.before_src).resolve()), "after": here}
    times: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for side, src in srcs.items():
            out = tmp / f"{side}{r}"
            env = {**os.environ, "PYTHONPATH": src}
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(cohort), str(tables),
                                   str(out), cfg.model_dump_json()], env=env, text=True,
                                  capture_output=True, check=False)
            if proc.returncode:
                raise SystemExit(f"{side} (PYTHONPATH={src}) failed:\n{proc.stderr[-3000:]}")
            t = json.loads(proc.stdout.strip().splitlines()[-1])
            times[side].append({k: round(v, 2) for k, v in t.items()})
            print(f"round {r} {side:6s} {t['wall_s']:8.1f} s wall {t['cpu_s']:8.1f} s CPU",
                  flush=True)
    same = {f"after{r} vs before{r}": _same_outputs(tmp / f"before{r}", tmp / f"after{r}")
            for r in range(args.rounds)}
    summary = {side: {"wall_s": [t["wall_s"] for t in ts], "cpu_s": [t["cpu_s"] for t in ts]}
               for side, ts in times.items()}
    print(f"{'':8s} {'wall s (each round)':>28s} {'CPU s (each round)':>28s}")
    for side, v in summary.items():
        print(f"{side:8s} {' '.join(f'{x:8.1f}' for x in v['wall_s']):>28s} "
              f"{' '.join(f'{x:8.1f}' for x in v['cpu_s']):>28s}")
    for k, v in same.items():
        print(k, v)
    return {"before_src": srcs["before"], "after_src": here, "rounds": times,
            "summary": summary, "outputs": same}


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
    ap.add_argument("--before-src", type=Path, default=None,
                    help="another checkout's src/: time it against this one (the whole "
                    "evaluation, additions included), alternating, and compare the outputs")
    ap.add_argument("--rounds", type=int, default=2, help="before/after pairs (--before-src)")
    args = ap.parse_args()
    if args.before_src is not None:
        with tempfile.TemporaryDirectory() as tmp:
            cohort = simulate_cohort(Path(tmp) / "cohort", args.patients, shape=(16, 16, 16),
                                     seed=0, workers=1, progress=False)
            methods = _runs(cohort, args.methods, args.runs, args.dim)
            res = _alternate(args, cohort, methods, Path(tmp))
        write_result("evaluate_endpoints_speed_versus", {"args": vars(args), **res},
                     show=False)
        return
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
