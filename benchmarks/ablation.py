"""Why does (or doesn't) medimp beat its baselines? An ablation on the demo's cohort and budget.

Pretrains, with the demo's encoder, epochs and batch size, the variants below on one simulated
cohort, then evaluates all of them in ONE evaluation (same splits, same bootstrap), so their AUCs
are paired. Variants:

- ``medimp``: as in the paper (MEDIMP bins, plain patient-masked CLIP);
- ``medimp_content_mask``: exams whose prompts state the same binned facts are not negatives;
- ``medimp_kdigo``: KDIGO G-stage GFR bins (G1 ≥ 90 ... G5 < 15) instead of MEDIMP's five;
- ``medimp_2x_epochs``: twice the training budget;
- ``image_ssl``, ``tabular_clip``, ``random_init``: the baselines (+ clinical_only, oracle).

Writes benchmarks/results/ablation.json and prints the AUC table (logistic probe on the
patient-mean embedding). It takes ~10 min on 2 quiet cores.

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/ablation.py [--patients 80] [--epochs 15]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import write_result

from medimp.demo import DemoConfig, _pretrain_config
from medimp.evaluate import EvalConfig, evaluate
from medimp.simulate import simulate_cohort
from medimp.study import default_study, load_study, save_study
from medimp.train.replicates import RunJob, train_runs

# make bench (benchmarks/run_all.py): minutes without arguments on the 2-core machine,
# and the arguments of the smallest configuration
BENCH_MINUTES = 40
BENCH_SMALL = ['--patients', '16', '--epochs', '1']


def _kdigo_copy(cohort: Path, out: Path) -> Path:
    """The same cohort (images linked, not copied) with KDIGO GFR bins in study.yaml."""
    out.mkdir(parents=True)
    for item in cohort.iterdir():
        if item.name in {"study.yaml", ".medimp_cache"}:
            continue
        (out / item.name).symlink_to(item.resolve())
    study = load_study(cohort / "study.yaml")
    kdigo = default_study(gfr_binning="kdigo").variable("gfr")
    variables = [kdigo if v.name == "gfr" else v for v in study.variables]
    save_study(study.model_copy(update={"variables": variables}), out / "study.yaml")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=80)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="Keep runs here (default: temp).")
    args = ap.parse_args()

    demo = DemoConfig(n_patients=args.patients, epochs=args.epochs, seed=args.seed)
    work = args.out or Path(tempfile.mkdtemp(prefix="medimp-ablation-"))
    work.mkdir(parents=True, exist_ok=True)
    cohort = work / "cohort"
    if not (cohort / "study.yaml").is_file():
        simulate_cohort(cohort, demo.n_patients, shape=demo.shape, seed=demo.seed,
                        overwrite=True, progress=False)
    kdigo = work / "cohort_kdigo"
    if kdigo.exists():
        shutil.rmtree(kdigo)
    _kdigo_copy(cohort, kdigo)

    variants: dict[str, tuple[Path, dict]] = {
        "medimp": (cohort, _pretrain_config(demo, "medimp", demo.seed)),
        "medimp_content_mask": (cohort, {**_pretrain_config(demo, "medimp", demo.seed),
                                         "loss": {"same_content_mask": True}}),
        "medimp_kdigo": (kdigo, _pretrain_config(demo, "medimp", demo.seed)),
        "medimp_2x_epochs": (cohort, {**_pretrain_config(demo, "medimp", demo.seed),
                                      "epochs": 2 * demo.epochs}),
        "image_ssl": (cohort, _pretrain_config(demo, "image_ssl", demo.seed)),
        "tabular_clip": (cohort, _pretrain_config(demo, "tabular_clip", demo.seed)),
        "random_init": (cohort, _pretrain_config(demo, "random_init", demo.seed)),
    }
    runs: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    final_loss: dict[str, float | None] = {}
    jobs = [RunJob(name, src, work / "runs" / name, cfg, overwrite=True)
            for name, (src, cfg) in variants.items()]
    for outcome in train_runs(jobs, log=lambda m: None):  # one after the other, in process
        name = outcome.job.name
        runs[name], seconds[name] = outcome.job.out, outcome.seconds or 0.0
        hist = runs[name] / "history.csv"
        final_loss[name] = None
        if hist.is_file():
            import pandas as pd

            h = pd.read_csv(hist)
            final_loss[name] = float(h["train_loss"].iloc[-1]) if len(h) else None
        print(f"{name}: trained in {seconds[name]:.0f} s", flush=True)

    ev = EvalConfig(n_splits=demo.folds, repeats=demo.repeats, n_bootstrap=demo.bootstrap,
                    seed=demo.seed, levels=["patient_mean"], probes=["logistic"],
                    survival=False, retrieval=False, reference_method="medimp")
    result = evaluate(cohort, runs, work / "eval", ev)
    table = result.headline()
    comparisons = [c.model_dump() for c in result.metrics.comparisons]
    out = {
        "cohort": {"patients": demo.n_patients, "shape": list(demo.shape), "seed": demo.seed},
        "budget": {"epochs": demo.epochs, "batch_size": demo.batch_size, "encoder": demo.encoder},
        "train_seconds": seconds,
        "final_train_loss": final_loss,
        "auc": table.to_dict(),
        "comparisons_vs_medimp": comparisons,
    }
    write_result("ablation", out, show=False)
    print(table.to_string())
    print(f"final train loss: { {k: round(v, 3) if v else v for k, v in final_loss.items()} }")


if __name__ == "__main__":
    main()
