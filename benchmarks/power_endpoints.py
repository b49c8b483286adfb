"""Which endpoint sees a difference between two methods: the 2-year AUC or the 2-year eGFR R²?
And do the paired tests (ΔAUC, ΔR², ΔBrier) keep their 5% level when methods have seed variance?

The simulator's default cohort (``medimp.simulate.simulate_clinical``: the patients, their
latent kidney state, the 2-year eGFR and poor status, unknown outcomes left out) at n = 80, 200
and 400 patients. Pretraining inside a loop is out of reach on a CPU, so a method's
"embedding" is a noisy copy of the latent truth: per patient the mean over its exams of
``gfr_true``, ``fibrosis_fraction``, ``decline_rate`` and ``nephron_mass`` (standardised),
mapped by a random 4 x 8 matrix and plus Gaussian noise of sd σ. Each **pretraining run** of a
method draws its own matrix, its own noise and its own σ = σ_method · exp(s·N(0, 1)) (s =
``--seed-spread``): the between-run spread of a pretrained encoder.

Per repetition and size, with the evaluation's own pieces (the logistic and ridge probes with
their inner CV, the outer patient-grouped CV shared by both endpoints, the seed-aware paired
tests that ``medimp evaluate`` prints):

* **null**: methods A and A' are two sets of 3 runs of one process (σ = ``--sigma``); the share
  of p < 0.05 of each paired test (ΔAUC of status_y2, ΔR² of egfr_y2, ΔBrier of status_y2) is
  its false-positive rate (target 0.02-0.05);
* **alternative**: A against B (σ_B = ``--sigma-b``): the mean difference, the minimal
  detectable difference (80% power, α 0.05, from the test's SE) and the share detected, for
  the AUC and the R² of the same pair.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/power_endpoints.py --reps 300 --jobs 1

(docs/evaluate.md's figures; ``--reps-per-size`` gives each size its own count.) A repetition
depends only on its size and number, so a run may be split: ``--first-rep`` continues one under
another ``--out``, and ``--summarise`` summarises the .jsonl beside ``--out`` (join the files
first). Writes benchmarks/results/power_endpoints.json (every repetition, with its seconds) and
prints the tables of docs/evaluate.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import Timer, write_result
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from medimp.data import Cohort
from medimp.evaluate.calibration import brier
from medimp.evaluate.compare import holm
from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.endpoints import paired
from medimp.evaluate.intervals import fold_metric
from medimp.evaluate.labels import make_labels
from medimp.evaluate.probes import LogisticProbe
from medimp.evaluate.regression import (
    RidgeProbe,
    cross_validate_regression,
    make_targets,
    r2,
)
from medimp.evaluate.scoring import auc
from medimp.simulate.clinical import simulate_clinical
from medimp.study import default_study

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 30
BENCH_SMALL = ['--sizes', '80', '--reps', '2', '--repeats', '1']

LATENT = ("gfr_true", "fibrosis_fraction", "decline_rate", "nephron_mass")
DIMS = 8


def _cohort(n: int, seed: int):
    patients, exams, truth = simulate_clinical(n, seed=seed)
    tables = Cohort.from_tables(default_study(), exams, patients)
    lab = make_labels(tables, 2)
    tg = make_targets(tables, 2)
    keep = lab["known"].to_numpy()
    ids = lab.loc[keep, "patient_id"].to_numpy(str)
    z = truth.groupby("patient_id")[list(LATENT)].mean().loc[ids].to_numpy(float)
    z = (z - z.mean(0)) / z.std(0)
    return (tables, ids, lab.loc[keep, "label"].to_numpy(int),
            tg.loc[keep, "target"].to_numpy(float), z)


def _run_table(z: np.ndarray, ids: np.ndarray, sigma: float, spread: float,
               rng: np.random.Generator) -> pd.DataFrame:
    s = sigma * float(np.exp(spread * rng.normal()))
    x = z @ rng.normal(size=(z.shape[1], DIMS)) + s * rng.normal(size=(len(z), DIMS))
    df = pd.DataFrame(x, columns=[f"e{i}" for i in range(DIMS)])
    df.insert(0, "level", "patient")
    df.insert(0, "exam", None)
    df.insert(0, "patient_id", ids)
    return df


def _method(tables, ids, y, target, splits, tables_by_run, Cs):
    """Per run: out-of-fold probabilities [R, n] and eGFR predictions [R, n]."""
    probs, preds = [], []
    for df in tables_by_run:
        probs.append(cross_validate(df, ids, y, level="patient_mean", tables=tables,
                                    splits=splits,
                                    make_probe=lambda: LogisticProbe(Cs=Cs)).scores)
        preds.append(cross_validate_regression(df, ids, target, level="patient_mean",
                                               tables=tables, splits=splits,
                                               make_probe=RidgeProbe).predictions)
    return probs, preds


def _compare(y, target, tests, ratio, a, b, *, one_run: bool = False
             ) -> dict[str, dict[str, float]]:
    """The evaluation's paired test (``medimp.evaluate.endpoints.paired``) of each metric;
    ``one_run``: the first run of each method only, taken as fixed features (no seed part:
    what the endpoint itself can see)."""
    if one_run:
        a, b = ([x[:1] for x in a], [x[:1] for x in b])
    out = {}
    for name, fn, which, truth in (("auc", auc, 0, y), ("brier", brier, 0, y),
                                   ("r2", r2, 1, target)):
        va = np.stack([fold_metric(truth, s, tests, fn) for s in a[which]])
        vb = np.stack([fold_metric(truth, s, tests, fn) for s in b[which]])
        pc = paired(name, va, vb, ratio, learned=(not one_run, not one_run))
        out[name] = {"diff": pc.estimate, "p": pc.p_value, "se": pc.se,
                     "mdd": pc.min_detectable_diff, "df": pc.df,
                     "run_sd": (float(np.nanmean(va, axis=1).std(ddof=1)) if len(va) > 1
                                else float("nan"))}
    return out


def one_rep(n: int, rep: int, args) -> dict:
    with Timer() as clock, threadpool_limits(1, user_api="blas"):
        tables, ids, y, target, z = _cohort(n, seed=1000 * n + rep)
        rng = np.random.default_rng([n, rep])
        splits = make_splits(ids, y, 5, args.repeats, rep)
        tests = [(s.repeat, s.test) for s in splits]
        ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))
        runs = {name: [_run_table(z, ids, sigma, args.seed_spread, rng) for _ in range(3)]
                for name, sigma in (("a", args.sigma), ("a2", args.sigma),
                                    ("b", args.sigma_b))}
        fitted = {k: _method(tables, ids, y, target, splits, v, tuple(args.Cs))
                  for k, v in runs.items()}
        row = {"n": n, "rep": rep, "n_known": len(y), "n_pos": int(y.sum()),
               "null": _compare(y, target, tests, ratio, fitted["a"], fitted["a2"]),
               "alt": _compare(y, target, tests, ratio, fitted["a"], fitted["b"]),
               "alt_fixed": _compare(y, target, tests, ratio, fitted["a"], fitted["b"],
                                     one_run=True)}
    row["seconds"] = clock.seconds
    return row


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for n in sorted({r["n"] for r in rows}):
        sub = [r for r in rows if r["n"] == n]
        row: dict = {"n": n, "reps": len(sub), "n_pos": float(np.mean([r["n_pos"] for r in sub])),
                     "n_known": float(np.mean([r["n_known"] for r in sub])),
                     "seconds_per_rep": float(np.mean([r.get("seconds", np.nan) for r in sub]))}
        # the printed answer's family (Holm over the three metrics of one horizon): a
        # "yes" or "no" on two draws of one process is a false positive
        k = sum(float(np.min(holm([r["null"][m]["p"] for m in ("auc", "r2", "brier")])))
                < 0.05 for r in sub)
        row["fpr_answer"] = k / len(sub)
        row["fpr_answer_ci"] = _wilson(k, len(sub))
        for m in ("auc", "r2", "brier"):
            k = sum(r["null"][m]["p"] < 0.05 for r in sub)
            row[f"fpr_{m}"] = k / len(sub)
            row[f"fpr_{m}_ci"] = _wilson(k, len(sub))
            row[f"diff_{m}"] = float(np.mean([r["alt"][m]["diff"] for r in sub]))
            row[f"mdd_{m}"] = float(np.mean([r["alt"][m]["mdd"] for r in sub]))
            # the median: a repetition whose Welch-Satterthwaite df falls below 1 has an
            # MDD in the hundreds, which the mean follows
            row[f"mdd_{m}_median"] = float(np.median([r["alt"][m]["mdd"] for r in sub]))
            row[f"df_{m}_median"] = float(np.median([r["null"][m]["df"] for r in sub]))
            row[f"power_{m}"] = float(np.mean([r["alt"][m]["p"] < 0.05 for r in sub]))
            row[f"run_sd_{m}"] = float(np.mean([r["null"][m]["run_sd"] for r in sub]))
            fixed = [r["alt_fixed"][m] for r in sub]
            row[f"fixed_diff_{m}"] = float(np.mean([f["diff"] for f in fixed]))
            row[f"fixed_mdd_{m}"] = float(np.mean([f["mdd"] for f in fixed]))
            row[f"fixed_mdd_{m}_median"] = float(np.median([f["mdd"] for f in fixed]))
            row[f"fixed_t_{m}"] = float(np.mean([f["diff"] / f["se"] for f in fixed]))
            row[f"fixed_power_{m}"] = float(np.mean([f["p"] < 0.05 for f in fixed]))
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[80, 200, 400])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--reps-per-size", type=int, nargs="+", default=None,
                    help="repetitions of each size (default --reps for all)")
    ap.add_argument("--first-rep", type=int, default=0,
                    help="number of the first repetition: a repetition depends only on its size "
                    "and number, so a run may be continued (another --out) and the .jsonl "
                    "files joined for --summarise")
    ap.add_argument("--summarise", action="store_true",
                    help="only summarise the repetitions already in the .jsonl beside --out")
    ap.add_argument("--repeats", type=int, default=3, help="outer CV repeats (5-fold)")
    ap.add_argument("--sigma", type=float, default=1.5, help="noise sd of methods A, A'")
    ap.add_argument("--sigma-b", type=float, default=3.0, help="noise sd of method B")
    ap.add_argument("--seed-spread", type=float, default=0.3,
                    help="sd of log(noise sd) between runs of one method")
    ap.add_argument("--Cs", type=float, nargs="+", default=[1.0],
                    help="logistic penalties of the inner CV (the evaluation's default grid "
                    "is 0.01 0.1 1 10; one value is 3x cheaper and does not change the test)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/power_endpoints.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    # sizes interleaved, each repetition appended to a .jsonl beside --out as it finishes:
    # a run stopped early still leaves its repetitions (--summarise summarises that file)
    reps = dict(zip(args.sizes, args.reps_per_size or [args.reps] * len(args.sizes),
                    strict=True))
    order = [(n, args.first_rep + rep) for rep in range(max(reps.values())) for n in args.sizes
             if rep < reps[n]]
    log = args.out.with_suffix(".jsonl")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.summarise:
        rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    else:
        log.write_text("")
        for row in Parallel(n_jobs=args.jobs, return_as="generator_unordered")(
                delayed(one_rep)(n, rep, args) for n, rep in order):
            rows.append(row)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
    table = summarise(rows)
    # --summarise: the repetitions' own time (their runs may have been split over several
    # invocations: a repetition depends only on its size and number, not on the order)
    minutes = (sum(r.get("seconds", 0.0) for r in rows) if args.summarise
               else time.perf_counter() - t0) / 60
    write_result("power_endpoints", {"args": {k: (str(v) if isinstance(v, Path) else v)
                                              for k, v in vars(args).items()},
                                     "minutes": minutes, "summary": table, "reps": rows},
                 args.out, show=False)
    print("\nthe same pair, one run each taken as fixed features (the endpoint alone):")
    print("| n | ΔAUC | median MDD | mean t | power | ΔR² | median MDD | mean t | power |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table:
        cells = " | ".join(f"{r[f'fixed_diff_{m}']:+.3f} | {r[f'fixed_mdd_{m}_median']:.3f} | "
                           f"{r[f'fixed_t_{m}']:.1f} | {r[f'fixed_power_{m}']:.2f}"
                           for m in ("auc", "r2"))
        print(f"| {r['n']} | {cells} |")
    for r in table:
        print(f"n={r['n']}: sd between runs of one method: AUC {r['run_sd_auc']:.3f}, "
              f"R² {r['run_sd_r2']:.3f}, Brier {r['run_sd_brier']:.4f}")
    print(f"{minutes:.1f} min; 5x{args.repeats} CV, logistic Cs {args.Cs}, 3 runs per method, "
          f"sigma {args.sigma} vs {args.sigma_b}, seed spread {args.seed_spread}")
    print("| n | reps | positives | FPR ΔAUC | FPR ΔR² | FPR ΔBrier | FPR answer (Holm) | "
          "ΔAUC (median MDD, power) | ΔR² (median MDD, power) | median df (null) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table:
        fpr = " | ".join(f"{r[f'fpr_{m}']:.3f} [{r[f'fpr_{m}_ci'][0]:.3f}, "
                         f"{r[f'fpr_{m}_ci'][1]:.3f}]" for m in ("auc", "r2", "brier"))
        fpr += (f" | {r['fpr_answer']:.3f} [{r['fpr_answer_ci'][0]:.3f}, "
                f"{r['fpr_answer_ci'][1]:.3f}]")
        print(f"| {r['n']} | {r['reps']} | {r['n_pos']:.0f} of {r['n_known']:.0f} | {fpr} | "
              f"{r['diff_auc']:+.3f} ({r['mdd_auc_median']:.3f}, {r['power_auc']:.2f}) | "
              f"{r['diff_r2']:+.3f} ({r['mdd_r2_median']:.3f}, {r['power_r2']:.2f}) | "
              + " / ".join(f"{r[f'df_{m}_median']:.1f}" for m in ("auc", "r2", "brier"))
              + " |")


if __name__ == "__main__":
    main()
