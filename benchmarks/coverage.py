"""Do the evaluation's intervals cover, and does its paired test hold its level, at the
default protocol, on methods with pretraining seeds?

Each repetition draws a simulated cohort (``medimp.simulate.simulate_clinical``: the
simulator's patients, latent kidney state and 2-year poor-status label, as ``power.py``) and
two methods A and B that are **the same process**: each has ``R_max`` pretraining runs, and a
run's embedding is an 8-dimensional random rotation of (latent risk + noise, 7 noise
dimensions) whose noise level gives the run a population AUC drawn around ``--auc`` with a
between-run sd ``--seed-sd`` (a pretraining seed: informative, correlated with the other runs
through the shared risk, with its own quality). Every run goes through the evaluation's own
default protocol: 5 folds x 5 repeats, patient-grouped and stratified
(``medimp.evaluate.cv.make_splits``), logistic probe with C chosen from {0.01, 0.1, 1, 10} by
the inner grouped CV (``fast_cv``: the probe's own computation, solved by Newton's method
without scikit-learn's per-fit overhead; ``--check`` shows its fold AUCs equal
``cross_validate``'s).
For R = 1, 2, 3, 5 runs per method (the first R of each):

* coverage: does method A's interval (``corrected_interval`` of its runs) contain the true
  AUC of the process, i.e. the mean over seeds of the population AUC of a probe trained on an
  outer training fold's number of patients (estimated once, by Monte Carlo on 5000 simulated
  test patients)?
* false positives: A and B are one process, so every "better"/"worse" verdict of
  ``paired_comparison`` is false. With one run a pretrained method is "not decided" (no
  verdict); the share of p < 0.05 is still printed to show why.

For contrast the same fold values go through the interval used before (the seed x fold
interaction counted twice, plus the DeLong variance of the pooled out-of-fold difference for
the paired test).

Run (small configuration, 2 busy cores): ``nice python benchmarks/coverage.py --reps 200
--jobs 2``. Rows are appended to ``results/coverage_rows.jsonl`` as they come, so a run cut
short can be summarised with ``--summarise results/coverage_rows.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import stats
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from power import _embedding, _table, cohort

from medimp.evaluate.compare import paired_comparison
from medimp.evaluate.cv import cross_validate, make_splits
from medimp.evaluate.intervals import corrected_interval, fold_metric
from medimp.evaluate.probes import LogisticProbe, inner_splits
from medimp.evaluate.scoring import auc

RUNS = (1, 2, 3, 5)
FOLDS, REPEATS = 5, 5
# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 40
BENCH_SMALL = ['--reps', '2', '--truth-draws', '5']


def expit(z: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow."""
    return np.exp(-np.logaddexp(0.0, -z))


def _fit_logistic(Z: np.ndarray, y: np.ndarray, Cs: np.ndarray) -> np.ndarray:
    """L2 logistic regression as scikit-learn's ``LogisticRegression(C)`` solves it
    (min ½|w|² + C Σ log-loss, intercept not penalised; ``Z`` has a last column of ones), for
    every C of ``Cs`` at once, by Newton's method with step halving: the same optimum
    without the per-fit overhead. Returns ``[len(Cs), columns]`` coefficients."""
    cs = np.asarray(Cs, dtype=float)[:, None]
    reg = np.ones(Z.shape[1])
    reg[-1] = 0.0
    beta = np.zeros((len(cs), Z.shape[1]))

    def loss(b: np.ndarray) -> np.ndarray:
        eta = b @ Z.T
        return 0.5 * (b**2) @ reg + cs[:, 0] * np.sum(np.logaddexp(0, eta) - y * eta, axis=1)

    f = loss(beta)
    eye = np.diag(reg + 1e-12)
    for _ in range(50):
        p = expit(beta @ Z.T)
        g = reg * beta + cs * ((p - y) @ Z)
        h = eye + cs[:, :, None] * np.einsum("ci,ij,ik->cjk", p * (1 - p), Z, Z)
        step = np.linalg.solve(h, g[:, :, None])[:, :, 0]
        t = np.ones((len(cs), 1))
        f_new = loss(beta - t * step)
        while np.any(bad := (f_new > f) & (t[:, 0] > 1e-6)):
            t[bad] /= 2
            f_new = loss(beta - t * step)
        beta, f = beta - t * step, f_new
        if np.max(np.abs(t * step)) < 1e-9:
            break
    return beta


def _scaled(x_tr: np.ndarray, x: np.ndarray) -> np.ndarray:
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0)
    sd[sd == 0] = 1.0
    return np.column_stack([(x - mu) / sd, np.ones(len(x))])


def fast_cv(X: np.ndarray, y: np.ndarray, pids: np.ndarray, splits: list, tests: list,
            Cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0), inner: int = 3,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation's logistic probe in its cross-validation (one row per patient): for
    each outer fold, C from ``Cs`` by the inner grouped CV's AUC (the same inner splits,
    ties to the smaller C), standardisation fitted on the training rows, refit on the
    whole training fold. Returns the test folds' AUCs (``[J]``, as ``fold_metric``) and the
    out-of-fold scores (``[repeats, n]``). ``--check`` compares it with
    ``medimp.evaluate.cv.cross_validate`` (identical fold AUCs, about 3x faster)."""
    scores = np.full((max(s.repeat for s in splits) + 1, len(y)), np.nan)
    for s in splits:
        x_tr, y_tr = X[s.train], y[s.train]
        n_min = int(min(y_tr.sum(), len(y_tr) - y_tr.sum()))
        oof = np.full((len(Cs), len(y_tr)), np.nan)
        for itr, ite in inner_splits(y_tr, pids[s.train], min(inner, n_min), seed):
            if len(np.unique(y_tr[itr])) < 2:
                continue
            z_in, z_out = _scaled(x_tr[itr], x_tr[itr]), _scaled(x_tr[itr], x_tr[ite])
            oof[:, ite] = expit(_fit_logistic(z_in, y_tr[itr], np.asarray(Cs)) @ z_out.T)
        done = np.isfinite(oof).all(axis=0)
        inner_auc = auc(y_tr[done][None, :], oof[:, done])
        best = int(np.nanargmax(inner_auc)) if np.isfinite(inner_auc).any() else 0
        beta = _fit_logistic(_scaled(x_tr, x_tr), y_tr, np.asarray([Cs[best]]))[0]
        scores[s.repeat, s.test] = expit(_scaled(x_tr, X[s.test]) @ beta)
    return fold_metric(y, scores, tests, auc), scores


def _noise_grid(y: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Population AUC of ``risk + sd·noise`` on a large cohort, for a grid of sd."""
    sds = np.geomspace(0.05, 8.0, 60)
    e = np.random.default_rng(0).normal(size=len(risk))
    return sds, np.array([float(auc(y, risk + s * e)) for s in sds])


def _run_sd(rng: np.random.Generator, target: float, seed_sd: float,
            grid: tuple[np.ndarray, np.ndarray]) -> float:
    """A pretraining run: its population AUC drawn around ``target``, as a noise sd."""
    a = float(np.clip(target + seed_sd * rng.normal(), 0.55, 0.95))
    sds, aucs = grid
    return float(np.interp(-a, -aucs, sds))  # AUC decreases with the noise


def true_auc(target: float, seed_sd: float, n: int, draws: int, seed: int = 99) -> float:
    """Mean over seeds and training sets of the population AUC of the probe trained on an
    outer training fold (4/5 of the known patients of an ``n``-patient cohort)."""
    y_big, r_big = cohort(5000, seed)
    grid = _noise_grid(y_big, r_big)
    rng = np.random.default_rng(seed)
    out = []
    for d in range(draws):
        y, risk = cohort(n, 50_000 + d)
        keep = rng.permutation(len(y))[: round(len(y) * (FOLDS - 1) / FOLDS)]
        sd = _run_sd(rng, target, seed_sd, grid)
        q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
        def emb(r, q=q, sd=sd):
            return (np.column_stack(
                    [r + sd * rng.normal(size=len(r)), rng.normal(size=(len(r), 7))]) @ q)
        with threadpool_limits(1):
            probe = LogisticProbe(seed=0).fit(emb(risk[keep]), y[keep])
            out.append(float(auc(y_big, probe.predict_proba(emb(r_big))[:, 1])))
    return float(np.mean(out))


def _old_interval(a: np.ndarray, b: np.ndarray | None, ratio: float,
                  extra: float = 0.0, extra_df: float = 1e9) -> tuple[float, float, float]:
    """The interval used before: fold variance of the run-averaged values (interaction
    included) plus each method's run-mean variance / R (interaction again), plus ``extra``."""
    mats = [m for m in (a, b) if m is not None]
    d = mats[0].mean(axis=0) - (mats[1].mean(axis=0) if b is not None else 0.0)
    j = d.size
    parts = [((1 / j + ratio) * d.var(ddof=1), j - 1)]
    parts += [(m.mean(axis=1).var(ddof=1) / m.shape[0], m.shape[0] - 1)
              for m in mats if m.shape[0] > 1]
    if extra > 0:
        parts.append((extra, extra_df))
    var = sum(v for v, _ in parts)
    df = var**2 / sum(v**2 / f for v, f in parts if v > 0)
    se = np.sqrt(var)
    q = stats.t.ppf(0.975, df)
    return float(d.mean() - q * se), float(d.mean() + q * se), float(2 * stats.t.sf(
        abs(d.mean()) / se, df))


def _delong(y: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> float:
    """DeLong variance of the pooled out-of-fold AUC difference (the old paired add-on)."""
    def place(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[y == 1], s[y == 0]
        c = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return c.mean(axis=1), c.mean(axis=0)

    out = []
    for r in range(sa.shape[0]):
        (a10, a01), (b10, b01) = place(sa[r]), place(sb[r])
        out.append((a10 - b10).var(ddof=1) / (y == 1).sum()
                   + (a01 - b01).var(ddof=1) / (y == 0).sum())
    return float(np.mean(out))


def one_repetition(seed: int, n: int, target: float, seed_sd: float, truth: float,
                   grid: tuple[np.ndarray, np.ndarray]) -> list[dict[str, float]]:
    """One cohort, 2 x max(RUNS) runs of one process: a row per number of runs."""
    rng = np.random.default_rng(seed)
    y, risk = cohort(n, 10_000 + seed)
    pids = np.array([f"P{i:04d}" for i in range(len(y))])
    splits = make_splits(pids, y, FOLDS, REPEATS, seed)
    tests = [(s.repeat, s.test) for s in splits]
    ratio = float(np.mean([len(s.test) / len(s.train) for s in splits]))
    folds, scores = [], []
    for _ in range(2 * max(RUNS)):
        X = _embedding(risk, _run_sd(rng, target, seed_sd, grid), rng)
        fold_auc, oof = fast_cv(X, y, pids, splits, tests)
        folds.append(fold_auc)
        scores.append(oof)
    rows = []
    for r in RUNS:
        a, b = np.stack(folds[:r]), np.stack(folds[max(RUNS):max(RUNS) + r])
        ci = corrected_interval(a, ratio, null=0.5)
        pc = paired_comparison(a, b, ratio)
        old_lo, old_hi, _ = _old_interval(a, None, ratio)
        dl = np.mean([_delong(y, scores[i], scores[max(RUNS) + i]) for i in range(r)])
        _, _, p_old = _old_interval(a, b, ratio, dl, len(y) - 2)
        rows.append({
            "runs": r, "n_known": len(y), "auc_a": ci.estimate,
            "cover": float(ci.low <= truth <= ci.high), "width": ci.high - ci.low,
            "p": pc.p_value, "decided": float(pc.decided), "df": pc.df,
            "mdd": pc.min_detectable_diff, "diff": pc.estimate,
            "cover_before": float(old_lo <= truth <= old_hi), "width_before": old_hi - old_lo,
            "fp_before": float(p_old < 0.05)})
    return rows


def check(n: int, cohorts: int = 3) -> float:
    """Largest difference between the fold AUCs of :func:`fast_cv` and of the evaluation's
    own ``cross_validate`` + ``LogisticProbe`` on the same splits."""
    rng = np.random.default_rng(7)
    worst = 0.0
    for i in range(cohorts):
        y, risk = cohort(n, 100 + i)
        pids = np.array([f"P{j:04d}" for j in range(len(y))])
        splits = make_splits(pids, y, FOLDS, REPEATS, i)
        tests = [(s.repeat, s.test) for s in splits]
        X = _embedding(risk, (0.3, 1.0, 3.0)[i % 3], rng)
        with threadpool_limits(1):
            res = cross_validate(_table(X, pids), pids, y, level="patient_mean", tables=None,
                                 splits=splits, make_probe=lambda: LogisticProbe(seed=0))
        ref = fold_metric(y, res.scores, tests, auc)
        worst = max(worst, float(np.nanmax(np.abs(ref - fast_cv(X, y, pids, splits, tests)[0]))))
    return worst


def _wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(centre - half), 3), round(float(centre + half), 3)]


def summarise(df: pd.DataFrame) -> dict[str, dict]:
    """Per number of runs: coverage, width, verdicts issued and false positives."""
    out = {}
    for r, g in df.groupby("runs"):
        reps = len(g)
        fp = int(((g["p"] < 0.05) & (g["decided"] > 0)).sum())
        out[f"R={r}"] = {
            "reps": reps, "coverage": round(g["cover"].mean(), 3),
            "coverage_95ci": _wilson(int(g["cover"].sum()), reps),
            "median_width": round(float(g["width"].median()), 3),
            "verdict_issued": r > 1,
            "false_positive_rate": round(fp / reps, 3) if r > 1 else None,
            "fpr_95ci": _wilson(fp, reps) if r > 1 else None,
            "share_p_below_0.05": round(float((g["p"] < 0.05).mean()), 3),
            "sd_of_difference": round(float(g["diff"].std()), 3),
            "mean_df": round(float(g["df"].mean()), 1),
            "median_min_detectable_diff": round(float(g["mdd"].median()), 3),
            "before_coverage": round(g["cover_before"].mean(), 3),
            "before_median_width": round(float(g["width_before"].median()), 3),
            "before_false_positive_rate": round(g["fp_before"].mean(), 3)}
    return out


def main() -> None:
    """Measure; print the table; write ``results/coverage.json``."""
    from _common import RESULTS, write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--patients", type=int, default=100, help="simulated patients per cohort")
    ap.add_argument("--auc", type=float, default=0.75, help="population AUC around which "
                    "each run's is drawn")
    ap.add_argument("--seed-sd", type=float, default=0.05,
                    help="sd of the runs' population AUC (between pretraining seeds)")
    ap.add_argument("--truth-draws", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="first repetition (>0: append to "
                    "the rows of an earlier run cut short)")
    ap.add_argument("--check", action="store_true", help="only compare fast_cv with the "
                    "evaluation's cross_validate on 3 cohorts")
    ap.add_argument("--summarise", type=Path, default=None,
                    help="only summarise the rows of an earlier (possibly cut short) run")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.check:
        print(f"largest |fold AUC difference| fast_cv vs cross_validate: "
              f"{check(args.patients):.2e}")
        return
    log = RESULTS / "coverage_rows.jsonl"
    if args.summarise is not None:
        rows = [json.loads(line) for line in args.summarise.read_text().splitlines() if line]
        truth = rows[0]["truth"]
    else:
        truth = true_auc(args.auc, args.seed_sd, args.patients, args.truth_draws)
        print(f"true AUC of the process at the outer training size: {truth:.4f}", flush=True)
        y_big, r_big = cohort(5000, 99)
        grid = _noise_grid(y_big, r_big)
        log.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if args.first == 0:
            log.unlink(missing_ok=True)
        elif log.is_file():
            rows = [json.loads(line) for line in log.read_text().splitlines() if line]
        gen = Parallel(n_jobs=args.jobs, return_as="generator")(
            delayed(one_repetition)(i, args.patients, args.auc, args.seed_sd, truth, grid)
            for i in range(args.first, args.reps))
        for i, rep in enumerate(gen, start=args.first):
            for row in rep:
                row.update(rep=i, truth=truth)
                rows.append(row)
                with log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            if (i + 1) % 10 == 0:
                print(f"{i + 1} repetitions, {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    result = {"design": {"patients": args.patients, "population_auc": args.auc,
                         "seed_sd": args.seed_sd, "true_auc": round(truth, 4),
                         "cv": f"{FOLDS} folds x {REPEATS} repeats, logistic probe, C from the "
                               "inner CV", "runs_per_method": list(RUNS)},
              "seconds": round(time.perf_counter() - t0, 1), **summarise(df)}
    write_result("coverage", result)
    print(f"\n{'runs':>4} {'reps':>5} {'coverage':>9} {'width':>6} {'verdict':>8} "
          f"{'FPR':>6} {'p<.05':>6} {'df':>5} {'MDD':>6} | before: {'cover':>6} {'width':>6} "
          f"{'FPR':>6}")
    for r in RUNS:
        s = result.get(f"R={r}")
        if s is None:
            continue
        fpr = "–" if s["false_positive_rate"] is None else f"{s['false_positive_rate']:.3f}"
        print(f"{r:>4} {s['reps']:>5} {s['coverage']:>9.3f} {s['median_width']:>6.3f} "
              f"{'yes' if s['verdict_issued'] else 'no':>8} {fpr:>6} "
              f"{s['share_p_below_0.05']:>6.3f} {s['mean_df']:>5.1f} "
              f"{s['median_min_detectable_diff']:>6.3f} | {s['before_coverage']:>12.3f} "
              f"{s['before_median_width']:>6.3f} {s['before_false_positive_rate']:>6.3f}")


if __name__ == "__main__":
    main()
