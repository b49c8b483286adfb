"""Beyond MEDIMP (docs/train.md): which text supervision beats image-only pretraining?

Pretrains, at the demo's budget (``medimp.demo.DemoConfig``: 80 simulated patients, 32³, the
narrow ResNet-10, 30 epochs, batch 16, lr 1e-3), each variant below with several seeds, then
evaluates all runs in ONE evaluation (same splits, same bootstrap), so that their AUCs are
paired. Variants:

- ``medimp``: the paper (MEDIMP bins and wording, patient-masked CLIP);
- ``image_ssl``: the true SimCLR baseline (NT-Xent, 2N-2 negatives);
- ``tabular_clip``: image vs an MLP of the same clinical variables;
- ``medimp_soft``: MedCLIP-style soft targets from the exams' binned clinical facts
  (``method: medclip_soft``);
- ``medimp_slip``: CLIP + 1.0 x NT-Xent between two augmented views (``method: slip``);
- ``medimp_clinician``: grammatical prompts stating each bin's range and unit;
- ``medimp_all``: clinician wording + soft targets;
- ``medimp_earliest``: medimp pretrained on each patient's first exam only;
- ``medimp_phase_mask``: medimp with the missing-phase mask as input channels and phase
  dropout 0.2 in training.

Seed-aware statistics (2-year poor-status AUC, logistic probe, patient-mean embedding): the
seeds of a variant are its pretraining replicates in ONE ``medimp.evaluate`` call (the protocol
of ``medimp evaluate --runs``): the AUC is the mean over seeds, its CI carries the seed
variance, and the paired difference to ``image_ssl`` is the evaluation's corrected resampled t
plus the DeLong term. The same is reported for the "exams up to day 30" level
(``medimp.evaluate.early``).

Runs already finished in ``--out`` are reused (the script can be interrupted and restarted).
Writes benchmarks/results/variants.json and prints the table.

    PYTHONPATH=src python benchmarks/variants.py --out /tmp/variants [--seeds 0 1 2] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import write_result

from medimp.train.replicates import RunJob, method_seed_runs, train_runs

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = None
BENCH_SKIP = ("needs --out, a work folder whose runs it reuses (about 80 min at the demo's "
               "budget with 3 seeds)")
BENCH_SMALL = ['--out', '/tmp/medimp-bench-variants', '--epochs', '1', '--seeds', '0',
    '--variants', 'image_ssl', 'medimp_earliest']

REFERENCE = "image_ssl"


def variant_configs(demo: Any) -> dict[str, dict[str, Any]]:
    """Variant name -> pretraining config (the demo's, plus the variant's options)."""
    from medimp.demo import _pretrain_config

    def cfg(method: str, **extra: Any) -> dict[str, Any]:
        out = _pretrain_config(demo, method, demo.seed)
        for key, value in extra.items():
            node = out
            parts = key.split("__")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        return out

    return {
        "medimp": cfg("medimp"),
        "image_ssl": cfg("image_ssl", method_options__negatives="nt_xent"),
        "tabular_clip": cfg("tabular_clip"),
        "medimp_soft": cfg("medclip_soft"),
        "medimp_slip": cfg("slip", method_options__ssl_weight=1.0),
        "medimp_clinician": cfg("medimp", prompts__wording="clinician"),
        "medimp_all": cfg("medclip_soft", prompts__wording="clinician"),
        "medimp_earliest": cfg("medimp", exams_per_patient=1),
        "medimp_phase_mask": cfg("medimp", phase_mask="channels", phase_dropout=0.2),
    }


def _train_all(todo: list[RunJob], work: Path, jobs: int) -> dict[str, float]:
    """Train ``todo`` with ``jobs`` processes of one torch thread (medimp.train.replicates);
    seconds per run. A broken (or busy: ``pretrain`` locks its run folder) variant does not
    stop the others."""
    print(f"{len(todo)} trainings to do, {jobs} at a time", flush=True)
    t_all = time.perf_counter()
    seconds: dict[str, float] = {}
    for outcome in train_runs(todo, jobs=jobs, threads=1, keep_going=True,
                              log=lambda m: print(m, flush=True)):
        name = str(outcome.job.out.relative_to(work))
        if outcome.ok:
            seconds[name] = outcome.seconds or 0.0
            print(f"{name}: {seconds[name]:.0f} s ({time.perf_counter() - t_all:.0f} s so far)",
                  flush=True)
        else:
            print(f"{name}: not trained: {outcome.error}", flush=True)
    return seconds


def _evaluate(cohort: Path, runs: dict[str, list[Path]], work: Path, demo: Any,
              day: float) -> dict[str, Any]:
    """One seed-aware evaluation of every run (all exams, and exams up to ``day``).

    The runs of a variant are its pretraining replicates (``evaluate`` with a list per
    method), so each AUC is the mean over seeds with a CI that carries the seed variance, and
    the paired difference to ``image_ssl`` is the evaluation's own test (corrected resampled t
    plus the DeLong term), the protocol of ``medimp evaluate --runs``.
    """
    from medimp.evaluate import EvalConfig, evaluate
    from medimp.evaluate.early import exams_up_to_day
    from medimp.train import embed

    tables: dict[str, list[pd.DataFrame]] = {}
    early: dict[str, list[pd.DataFrame]] = {}
    exams = pd.read_csv(cohort / "exams.csv", dtype={"patient_id": str, "exam": str})
    for name, rs in runs.items():
        for r in rs:
            table = embed(r, cohort)
            tables.setdefault(name, []).append(table)
            early.setdefault(name, []).append(exams_up_to_day(table, exams, day)[0])
    ev = EvalConfig(n_splits=demo.folds, repeats=demo.repeats, n_bootstrap=demo.bootstrap,
                    seed=demo.seed, horizons=[2], levels=["patient_mean"],
                    probes=["logistic"], survival=False, retrieval=False,
                    reference_method=REFERENCE)
    result = {}
    for tag, feats in (("all_exams", tables), (f"exams_up_to_day_{day:g}", early)):
        res = evaluate(cohort, feats, work / f"eval_{tag}", ev, progress=False, overwrite=True)
        recs = {r.method: r for r in res.metrics.records
                if r.task == "status_y2" and r.level == "patient_mean" and r.run is None}
        per_seed: dict[str, list[float]] = {}
        for r in res.metrics.records:
            if r.task == "status_y2" and r.level == "patient_mean" and r.run is not None:
                per_seed.setdefault(r.method, []).append(r.auc)
        comps = {c.other: c for c in res.metrics.comparisons
                 if c.task == "status_y2" and c.level == "patient_mean"}
        table: dict[str, dict[str, Any]] = {}
        for name, rec in recs.items():
            row = {"auc": rec.auc, "auc_ci_low": rec.auc_ci_low, "auc_ci_high": rec.auc_ci_high,
                   "auc_sd": rec.auc_sd, "seeds": rec.n_runs,
                   "auc_per_seed": per_seed.get(name, [rec.auc])}
            if name in comps:  # the comparison is image_ssl - other: flip it to other - image_ssl
                c = comps[name]
                row.update({"diff_vs_ref": -c.auc_diff, "diff_ci_low": -c.ci_high,
                            "diff_ci_high": -c.ci_low, "diff_p": c.p_value,
                            "min_detectable_diff": c.min_detectable_diff})
            table[name] = row
        result[tag] = table
    return result


def _print(result: dict[str, Any]) -> None:
    for tag, table in result.items():
        print(f"\n{tag}: 2-year AUC (mean over seeds) and paired difference to {REFERENCE}")
        for name, row in table.items():
            diff = ("" if "diff_vs_ref" not in row else
                    f"  diff {row['diff_vs_ref']:+.3f} [{row['diff_ci_low']:+.3f}, "
                    f"{row['diff_ci_high']:+.3f}] p {row['diff_p']:.3f}")
            seeds = " ".join(f"{a:.3f}" for a in row["auc_per_seed"])
            print(f"  {name:<18} {row['auc']:.3f} [{row['auc_ci_low']:.3f}, "
                  f"{row['auc_ci_high']:.3f}]  seeds {seeds}{diff}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="Work folder (runs are reused).")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=None, help="Subset of the variants.")
    ap.add_argument("--jobs", type=int, default=2, help="Trainings in parallel (1 thread each).")
    ap.add_argument("--epochs", type=int, default=None, help="Override the demo's epochs.")
    ap.add_argument("--day", type=float, default=30.0, help="The 'exams up to day D' level.")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--allow-partial", action="store_true",
                    help="Evaluate the finished runs only (a variant may then have fewer seeds).")
    args = ap.parse_args()

    from medimp.demo import DemoConfig
    from medimp.simulate import simulate_cohort

    demo = DemoConfig() if args.epochs is None else DemoConfig(epochs=args.epochs)
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    cohort = work / "cohort"
    if not (cohort / "study.yaml").is_file():
        simulate_cohort(cohort, demo.n_patients, shape=demo.shape, seed=demo.seed,
                        overwrite=True, progress=False)
    configs = variant_configs(demo)
    names = args.variants or list(configs)
    runs = method_seed_runs(work / "runs", names, args.seeds)
    todo = []
    for i, seed in enumerate(args.seeds):  # seed-major: a partial result has every variant
        for name in names:
            run = runs[name][i]
            if not (run / "model.json").is_file():  # finished runs are reused; partial resumed
                resume = (run / "checkpoints" / "last.ckpt").is_file()
                todo.append(RunJob(f"{name} seed {seed}", cohort, run,
                                   {**configs[name], "seed": seed}, resume=resume,
                                   overwrite=not resume))
    seconds = _train_all(todo, work, args.jobs)
    if args.train_only:
        return
    unfinished = [str(r) for rs in runs.values() for r in rs if not (r / "model.json").is_file()]
    if unfinished and not args.allow_partial:
        raise SystemExit(f"runs not finished (another process may hold them): {unfinished}; "
                         "--allow-partial evaluates the finished ones")
    runs = {name: [r for r in rs if (r / "model.json").is_file()] for name, rs in runs.items()}
    runs = {name: rs for name, rs in runs.items() if rs}

    result = _evaluate(cohort, runs, work, demo, args.day)
    out = {
        "cohort": {"patients": demo.n_patients, "shape": list(demo.shape), "seed": demo.seed},
        "budget": {"epochs": demo.epochs, "batch_size": demo.batch_size,
                   "encoder": demo.encoder, "encoder_kwargs": demo.encoder_kwargs,
                   "lr": demo.lr, "text_lr_scale": demo.text_lr_scale},
        "seeds": args.seeds, "reference": REFERENCE,
        "runs": {name: [r.name for r in rs] for name, rs in runs.items()},
        "unfinished": unfinished,
        "evaluation": {"task": "status_y2", "level": "patient_mean", "probe": "logistic",
                       "folds": demo.folds, "repeats": demo.repeats,
                       "statistics": "medimp.evaluate seed-aware (corrected resampled t + DeLong)"},
        "train_seconds": seconds,
        "results": result,
    }
    _print(result)
    write_result("variants", out)


if __name__ == "__main__":
    main()
