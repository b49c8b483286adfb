"""Do the evaluation's 95% intervals cover the truth 95% of the time?

Features with a known population AUC: two Gaussian classes (unit variance, prevalence 0.4)
whose means differ by ``d`` along one of ``--dims`` dimensions, so the best possible AUC is
``Phi(d / sqrt 2)`` (0.75 by default). Each repetition draws a cohort of n patients, runs the
evaluation's own cross-validation (``medimp.evaluate.cv``: patient-grouped stratified k-fold,
logistic probe whose C is chosen by an inner CV on the training folds) and records whether each
interval contains the true AUC (the inner-CV grid is the single C = 1, not the evaluation's
{0.01, 0.1, 1, 10}, to fit 2 heavily shared CPU cores; the inner CV still sets the threshold,
and a pilot with the full grid gave the same picture, see docs/evaluate.md).
Two further feature sets of pure noise give the false-positive
rate of the paired test (share of p < 0.05; both have AUC 0.5, so every rejection is false).

Intervals compared (the evaluation uses the ones marked *):

* ``bootstrap``: percentile bootstrap of patients over fixed out-of-fold predictions (the
  evaluation before this benchmark; conditional on the fitted probes);
* ``corrected_t`` *(per method)*: mean of the per-fold AUCs, Nadeau & Bengio's corrected
  resampled t (``medimp.evaluate.intervals.auc_interval``);
* ``corrected_t_delong`` *(paired test)*: the same on per-fold differences plus the DeLong
  variance of the pooled difference (``medimp.evaluate.intervals.paired_auc_interval``).

Run: ``python benchmarks/coverage.py`` (200 repetitions at n = 80 and 200; about 25 min on a
quiet core). ``--reps``, ``--sizes``, ``--repeats``, ``--jobs`` change the design.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.stats import norm
from threadpoolctl import threadpool_limits

from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.intervals import (
    auc_interval,
    corrected_interval,
    fold_metric,
    paired_auc_interval,
)
from medimp.evaluate.probes import LogisticProbe
from medimp.evaluate.scoring import auc

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 20
BENCH_SMALL = ['--reps', '2', '--sizes', '80', '--repeats', '1']


def _bootstrap_auc(y: np.ndarray, scores: np.ndarray, n_boot: int, seed: int
                   ) -> tuple[float, tuple[float, float]]:
    """The interval the evaluation used before: mean-over-repeats AUC of fixed out-of-fold
    scores ``[R, n]`` and its percentile bootstrap of patients."""
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    point = float(np.nanmean(auc(y[None, :], scores)))
    boot = np.nanmean(auc(y[idx][None, :, :], scores[:, idx]), axis=0)
    lo, hi = np.percentile(boot[np.isfinite(boot)], [2.5, 97.5])
    return point, (float(lo), float(hi))


def _paired_bootstrap_p(y: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int,
                        seed: int) -> float:
    """The paired test the evaluation used before: bootstrap of AUC(a) - AUC(b)."""
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    yb = y[idx][None, :, :]
    d = np.nanmean(auc(yb, a[:, idx]), axis=0) - np.nanmean(auc(yb, b[:, idx]), axis=0)
    d = d[np.isfinite(d)]
    p = 2 * min((d <= 0).mean(), (d >= 0).mean())
    return max(min(float(p), 1.0), 1.0 / (d.size + 1))


def _table(X: np.ndarray, pids: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(X, columns=[f"e{i}" for i in range(X.shape[1])])
    df.insert(0, "level", "patient")
    df.insert(0, "exam", None)
    df.insert(0, "patient_id", pids)
    return df


def _draw_labels(rng: np.random.Generator, n: int, folds: int, prevalence: float) -> np.ndarray:
    while True:
        y = (rng.random(n) < prevalence).astype(int)
        if min(y.sum(), n - y.sum()) >= folds:
            return y


def one_repetition(n: int, d: float, dims: int, seed: int, folds: int = 5, repeats: int = 2,
                   prevalence: float = 0.4, n_boot: int = 500,
                   Cs: tuple[float, ...] = (1.0,)) -> dict[str, float]:
    """One simulated cohort: each interval's verdict on the signal set and the noise pair."""
    rng = np.random.default_rng(seed)
    y = _draw_labels(rng, n, folds, prevalence)
    pids = np.array([f"P{i:04d}" for i in range(n)])
    signal = rng.normal(size=(n, dims))
    signal[:, 0] += d * y
    noise_a, noise_b = rng.normal(size=(n, dims)), rng.normal(size=(n, dims))
    splits = make_splits(pids, y, folds, repeats, seed)
    tests = [(s.repeat, s.test) for s in splits]
    ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))
    with threadpool_limits(1):
        res = [cross_validate(_table(X, pids), pids, y, level="patient_mean", tables=None,
                              splits=splits,
                              make_probe=lambda: LogisticProbe(Cs=Cs, seed=seed))
               for X in (signal, noise_a, noise_b)]
    true = float(norm.cdf(d / np.sqrt(2)))
    sig, na, nb = res
    bs_auc, bs_ci = _bootstrap_auc(y, sig.scores, n_boot, seed)
    ct = auc_interval(y, [sig.scores], tests, ratio)
    ctd = ct
    p_boot = _paired_bootstrap_p(y, na.scores, nb.scores, n_boot, seed)
    p_t = corrected_interval(fold_metric(y, na.scores, tests, auc)
                             - fold_metric(y, nb.scores, tests, auc), ratio).p_value
    p_td = paired_auc_interval(y, [na.scores], [nb.scores], tests, ratio).p_value
    return {
        "true_auc": true,
        "cover_bootstrap": float(bs_ci[0] <= true <= bs_ci[1]),
        "cover_corrected_t": float(ct.low <= true <= ct.high),
        "cover_corrected_t_delong": float(ctd.low <= true <= ctd.high),
        "width_bootstrap": bs_ci[1] - bs_ci[0],
        "width_corrected_t": ct.high - ct.low,
        "width_corrected_t_delong": ctd.high - ctd.low,
        "auc_pooled": bs_auc,
        "auc_fold_mean": ct.estimate,
        "fp_bootstrap": float(p_boot < 0.05),
        "fp_corrected_t": float(p_t < 0.05),
        "fp_corrected_t_delong": float(p_td < 0.05),
    }


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """Shares over the repetitions of one size."""
    out = {k: round(float(v), 4) for k, v in df.drop(columns=["n"]).mean().items()}
    out["reps"] = len(df)
    for key in ("cover_corrected_t", "fp_corrected_t_delong"):
        lo, hi = _wilson(int(df[key].sum()), len(df))
        out[key + "_95ci"] = [round(lo, 4), round(hi, 4)]
    return out


def measure(sizes: list[int], reps: int, *, d: float, dims: int, repeats: int, jobs: int,
            log: Path | None = None) -> pd.DataFrame:
    """One row per repetition and size (sizes interleaved; rows appended to ``log``)."""
    tasks = [(n, i) for i in range(reps) for n in sizes]
    rows = []
    gen = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(one_repetition)(n, d, dims, i, repeats=repeats) for n, i in tasks)
    for (n, _), row in zip(tasks, gen, strict=True):
        rows.append({"n": n, **row})
        if log is not None:
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rows[-1]) + "\n")
    return pd.DataFrame(rows)


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def main() -> None:
    """Measure coverage and paired false-positive rates; print and write JSON."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import RESULTS, write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[80, 200])
    ap.add_argument("--auc", type=float, default=0.75, help="population AUC of the signal")
    ap.add_argument("--dims", type=int, default=4, help="feature dimensions (one informative)")
    ap.add_argument("--repeats", type=int, default=2, help="CV repeats (5 folds)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--summarise", type=Path, default=None,
                    help="only summarise the rows of an earlier (possibly cut short) run")
    args = ap.parse_args()
    d = float(np.sqrt(2) * norm.ppf(args.auc))
    t0 = time.perf_counter()
    if args.summarise is not None:
        df = pd.read_json(args.summarise, lines=True)
    else:
        log = RESULTS / "coverage_rows.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        df = measure(args.sizes, args.reps, d=d, dims=args.dims, repeats=args.repeats,
                     jobs=args.jobs, log=log)
    result: dict = {"design": {"reps": args.reps, "population_auc": args.auc, "d": round(d, 4),
                               "dims": args.dims, "prevalence": 0.4, "folds": 5,
                               "repeats": args.repeats, "probe": "logistic, inner CV, C = 1"},
                    "seconds": round(time.perf_counter() - t0, 1)}
    sizes = sorted(df["n"].unique())
    for n in sizes:
        result[f"n={n}"] = summarise(df[df["n"] == n])
    write_result("coverage", result)
    print("\nshare of nominal 95% intervals containing the true AUC (target 0.92-0.98), and")
    print("false-positive rate of the paired test on two noise feature sets (target <= 0.05):")
    print(f"{'n':>5} {'reps':>5} {'method':<22} {'coverage':>9} {'width':>7} {'paired FPR':>11}")
    for n in sizes:
        r = result[f"n={n}"]
        for m in ("bootstrap", "corrected_t", "corrected_t_delong"):
            print(f"{n:>5} {r['reps']:>5} {m:<22} {r['cover_' + m]:>9.3f} "
                  f"{r['width_' + m]:>7.3f} {r['fp_' + m]:>11.3f}")


if __name__ == "__main__":
    main()
