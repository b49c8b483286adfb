"""How many patients (and pretraining seeds) does it take to detect a 2-year ΔAUC?

Planning aid. Pretraining inside a power loop is out of reach on a CPU, so embeddings are
simulated from the simulator's own cohort: ``medimp.simulate.simulate_clinical`` draws the
patients, their latent kidney state and the 2-year poor-status label exactly as a simulated
cohort does (prevalence, missing outcomes). A method's embedding is an 8-dimensional random
rotation of (latent risk + noise, 7 noise dimensions), the latent risk being minus the mean
true GFR over the patient's exams, standardised. The noise level sets the method's population
AUC; it is calibrated on 20,000 simulated patients so that method A has AUC ``--auc`` and
method B ``--auc - Δ``. Each pretraining run of a method draws its own AUC around the method's
with a between-seed sd ``--seed-sd`` (assumed; the demo's seeds measure it).

For n patients, repetitions run the evaluation's own CV (5-fold, 2 repeats, logistic probe
with inner-CV C) and the seed-aware paired test
(``medimp.evaluate.intervals.paired_auc_interval``); the share of p < 0.05 is the power, and
the test's standard error gives the patient part of the variance, ``SE² ≈ c / n + seed part``,
from which the n reaching 80% power is solved for every Δ and number of seeds: Δ = the
minimal detectable difference of SE = sqrt(c / n + sd² (1/S_A + 1/S_B)) from the noncentral t
with the Welch–Satterthwaite df of those parts (about 2.8·SE with many df, 4·SE at 3-4 df; one
run per method: "never", such a comparison is not decided). Δ is the ΔAUC the evaluation measures
(cross-validated), which differs from the population Δ of the simulation (the noisier method
loses more to the probe's finite training set; both are printed).

Run: ``python benchmarks/power.py`` (about 10 min on a quiet core; ``--jobs 2`` halves it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.intervals import minimal_detectable_difference, paired_auc_interval
from medimp.evaluate.probes import LogisticProbe
from medimp.evaluate.scoring import auc
from medimp.simulate.clinical import poor_status, simulate_clinical

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 10
BENCH_SMALL = ['--reps', '2', '--sizes', '80', '--deltas', '0.1']

DIMS = 8


def cohort(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The known 2-year labels of a simulated cohort and each patient's latent risk."""
    patients, _, truth = simulate_clinical(n, seed=seed)
    label = poor_status(patients, 2)
    risk = -truth.groupby("patient_id")["gfr_true"].mean()
    keep = label.notna().to_numpy()
    ids = patients["patient_id"].astype(str).to_numpy()[keep]
    r = risk.loc[ids].to_numpy(float)
    return label.to_numpy()[keep].astype(int), (r - r.mean()) / r.std()


def noise_for_auc(target: float, y: np.ndarray, risk: np.ndarray, seed: int = 0) -> float:
    """Noise sd that brings the population AUC of ``risk + noise`` to ``target``."""
    e = np.random.default_rng(seed).normal(size=len(risk))
    lo, hi = 0.0, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if auc(y, risk + mid * e) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _embedding(risk: np.ndarray, sd: float, rng: np.random.Generator) -> np.ndarray:
    x = np.column_stack([risk + sd * rng.normal(size=len(risk)),
                         rng.normal(size=(len(risk), DIMS - 1))])
    q, _ = np.linalg.qr(rng.normal(size=(DIMS, DIMS)))
    return x @ q


def _table(X: np.ndarray, pids: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(X, columns=[f"e{i}" for i in range(X.shape[1])])
    return df.assign(patient_id=pids, exam=None, level="patient")


def one_trial(n: int, seeds: int, auc_a: float, auc_b: float, seed_sd: float,
              calib: tuple[np.ndarray, np.ndarray], seed: int) -> dict[str, float]:
    """One simulated study: p-value, SE and ΔAUC of the seed-aware paired test."""
    rng = np.random.default_rng(seed)
    y, risk = cohort(n, 10_000 + seed)
    pids = np.array([f"P{i:04d}" for i in range(len(y))])
    splits = make_splits(pids, y, 5, 2, seed)
    tests = [(s.repeat, s.test) for s in splits]
    ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))

    def runs(target: float) -> list[np.ndarray]:
        out = []
        for _ in range(seeds):
            a = float(np.clip(target + seed_sd * rng.normal(), 0.52, 0.97))
            X = _embedding(risk, noise_for_auc(a, *calib), rng)
            with threadpool_limits(1):
                res = cross_validate(_table(X, pids), pids, y, level="patient_mean",
                                     tables=None, splits=splits,
                                     make_probe=lambda: LogisticProbe(seed=0))
            out.append(res.scores)
        return out

    iv = paired_auc_interval(y, runs(auc_a), runs(auc_b), tests, ratio)
    return {"p": iv.p_value, "se": iv.se, "delta": iv.estimate, "n_known": len(y)}


def main() -> None:
    """Simulate, fit the variance model, print the patients needed for 80% power."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--auc", type=float, default=0.80, help="population AUC of method A")
    ap.add_argument("--deltas", type=float, nargs="+", default=[0.05, 0.10],
                    help="ΔAUC to detect (the variance model answers for each)")
    ap.add_argument("--sim-delta", type=float, default=0.10,
                    help="population ΔAUC of the simulated methods (fits the variance model)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[80, 160])
    ap.add_argument("--reps", type=int, default=16)
    ap.add_argument("--seed-sd", type=float, default=0.03,
                    help="assumed sd of a method's AUC between pretraining seeds")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--refit", type=Path, default=None,
                    help="recompute the answer from an earlier results/power.json")
    args = ap.parse_args()
    if args.refit is not None:
        result = json.loads(args.refit.read_text(encoding="utf-8"))
        result["patients_needed_80pct_power"] = needed_table(
            result["c_pooled"], result["share_with_known_2y_label"], args.deltas,
            result["design"]["seed_sd_assumed"])
        write_result("power", result)
        print_answer(result, result["design"]["auc_a"])
        return
    t0 = time.perf_counter()
    calib = cohort(20_000, 1)
    result: dict = {"design": {
        "auc_a": args.auc, "deltas": args.deltas, "sim_delta": args.sim_delta,
        "sizes": args.sizes, "reps": args.reps,
        "seed_sd_assumed": args.seed_sd, "prevalence_y2": round(float(calib[0].mean()), 3),
        "embedding": f"{DIMS}-d rotation of (latent risk + noise, {DIMS - 1} noise dims)",
        "cv": "5-fold x 2 repeats, logistic probe, seed-aware paired test"}}
    c_values = []
    for delta in [args.sim_delta]:
        for n in args.sizes:
            rows = Parallel(n_jobs=args.jobs)(
                delayed(one_trial)(n, 1, args.auc, args.auc - delta, 0.0, calib, i)
                for i in range(args.reps))
            df = pd.DataFrame(rows)
            c = float((df["se"] ** 2 * df["n_known"]).mean())
            c_values.append(c)
            result[f"delta={delta} n={n}"] = {
                "power_measured_1_seed": round(float((df["p"] < 0.05).mean()), 3),
                "mean_cv_delta": round(float(df["delta"].mean()), 4),
                "mean_se": round(float(df["se"].mean()), 4), "c=n*SE^2": round(c, 4),
                "patients_with_known_label": round(float(df["n_known"].mean()), 1)}
    c = float(np.mean(c_values))
    prev_known = float(np.mean([result[k]["patients_with_known_label"] / int(k.split("n=")[1])
                                for k in result if k.startswith("delta")]))
    result["c_pooled"] = round(c, 4)
    result["share_with_known_2y_label"] = round(prev_known, 3)
    result["patients_needed_80pct_power"] = needed_table(c, prev_known, args.deltas,
                                                         args.seed_sd)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    write_result("power", result)
    print_answer(result, args.auc)


SEEDS = (1, 3, 5, 10)


def detectable(c: float, n_known: float, seed_sd: float, seeds: int,
               folds: int = 10) -> float:
    """The minimal detectable ΔAUC of the seed-aware paired test with ``seeds`` runs per
    method: SE² = c/n + 2·sd²/seeds, degrees of freedom by Welch–Satterthwaite (the fold part
    has ``folds`` - 1, each method's seed part seeds - 1), 80% power at alpha 0.05 from the
    noncentral t (``medimp.evaluate.intervals.minimal_detectable_difference``)."""
    terms = [(c / n_known, folds - 1.0)]
    if seed_sd > 0:
        if seeds < 2:
            return float("inf")  # no seed variance to estimate: not decided
        terms += [(seed_sd**2 / seeds, seeds - 1.0)] * 2
    var = sum(v for v, _ in terms)
    df = var**2 / sum(v**2 / d for v, d in terms)
    return minimal_detectable_difference(float(np.sqrt(var)), df)


def needed_table(c: float, share_known: float, deltas: list[float],
                 seed_sd: float) -> dict[str, dict[str, int | str]]:
    """Patients to enrol for 80% power, per ΔAUC, seed sd (0 and assumed) and seeds/method
    ("never": even infinitely many patients leave the seed part above the budget, or one
    run per method, whose comparisons are not decided)."""
    out: dict[str, dict[str, int | str]] = {}
    for sd in sorted({0.0, seed_sd}):
        for delta in deltas:
            row: dict[str, int | str] = {}
            for seeds in SEEDS:
                if detectable(c, 1e9, sd, seeds) > delta:
                    row[f"{seeds} seeds"] = "never"
                    continue
                lo, hi = 2.0, 1e9  # patients with a known label: bisection on the MDD
                while hi - lo > 0.5:
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if detectable(c, mid, sd, seeds) > delta else (lo, mid)
                row[f"{seeds} seeds"] = int(np.ceil(hi / share_known))
            out[f"delta={delta} seed_sd={sd}"] = row
    return out


def print_answer(result: dict, auc_a: float) -> None:
    """The table of patients needed (``never``: the seed variance alone exceeds the budget)."""
    print(f"\npatients to enrol (simulated cohort) for 80% power at alpha 0.05, method A AUC "
          f"{auc_a}, n·SE² = {result['c_pooled']}:")
    print(f"  {'':<26}" + "".join(f"{s:>10}" for s in (f"{k} seeds" for k in SEEDS)))
    for key, row in result["patients_needed_80pct_power"].items():
        print(f"  {key:<26}" + "".join(f"{v!s:>10}" for v in row.values()))


if __name__ == "__main__":
    main()
