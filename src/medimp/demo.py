"""The end-to-end demo: simulate -> prompts -> pretrain (medimp + baselines) -> evaluate -> report.

This module sits at the end of the pipeline (it imports every stage; only ``cli`` imports it).
It runs on the embedded defaults, offline, on a laptop CPU: a small simulated cohort, a small 3D
encoder, the packaged MiniLM text encoder, and the same training budget for every method, so the
methods × tasks table compares representations, not budgets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medimp._io import atomic_path, refuse_foreign_entries
from medimp.data import read_cohort
from medimp.prompts import build_prompts
from medimp.train.errors import TrainingInterrupted
from medimp.train.replicates import RunJob, method_seed_runs, train_runs

__all__ = ["DemoConfig", "DemoResult", "run_demo"]

METHODS = ("medimp", "random_init", "image_ssl", "tabular_clip")
# what run_demo writes into its folder: overwrite replaces an earlier demo, never a folder that
# also holds the user's own files (hidden ones such as .git included)
DEMO_ENTRIES = ("cohort", "prompts.parquet", "runs", "eval")


class DemoConfig(BaseModel):
    """Sizes of the demo; the defaults take about 10-11 minutes on 2 CPU cores (docs/train.md)."""

    model_config = ConfigDict(extra="forbid")

    n_patients: int = Field(80, ge=10, description="Simulated patients.")
    shape: tuple[int, int, int] = Field((32, 32, 32), description="Volume shape (D, H, W).")
    seed: int = Field(0, description="Seed of the simulator and the evaluation, and the "
                      "first pretraining seed.")
    seeds: int | list[int] = Field(
        3, description="Pretraining seeds of each method: a list (e.g. [0, 1, 2]), or a count "
        "N (seeds seed, seed+1, ..., seed+N-1). The evaluation treats a method's runs as "
        "replicates, so every CI and paired test carries the variance between pretraining "
        "seeds.")
    methods: tuple[str, ...] = Field(METHODS, description="Pretraining methods compared.")
    encoder: str = Field("resnet10_3d", description="Image encoder (same for every method).")
    encoder_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"widths": [8, 16, 32, 64]},
        description="Keyword arguments of the encoder builder (a narrow ResNet-10 for CPU).")
    embed_dim: int = Field(64, description="Shared embedding size.")
    epochs: int = Field(30, ge=1, description="Pretraining epochs, the same for every method "
                        "(at 15 the medimp loss is still near chance: benchmarks/ablation.py).")
    batch_size: int = Field(16, ge=2, description="Exams per step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (higher than MEDIMP's 1e-4 "
                      "because the demo trains for minutes, not 200 epochs).")
    text_lr_scale: float = Field(
        0.1, gt=0, description="Learning rate of the trainable text layer relative to lr: the "
        "pretrained MiniLM layer is fine-tuned at MEDIMP's 1e-4 while the image tower learns "
        "from scratch at 1e-3. With 1.0, one seed in four stalled at chance (ln batch).")
    folds: int = Field(5, ge=2, description="Outer CV folds of the evaluation.")
    repeats: int = Field(3, ge=1, description="Outer CV repeats.")
    bootstrap: int = Field(500, ge=20, description="Deprecated and ignored: the CIs use the "
                           "corrected resampled t (docs/evaluate.md).")
    workers: int | None = Field(None, description="Simulator worker processes (None: CPUs).")
    jobs: int | None = Field(None, ge=1, description="Pretraining runs trained at once, each in "
                             "its own process, and parallel cross-validations of the evaluation "
                             "(None: one per CPU core, at most 4). 1: one run after the other in "
                             "this process, with progress bars.")
    threads: int | None = Field(1, ge=1, description="Torch threads of each pretraining run. 1: "
                                "a run's weights depend on its seed only, not on the machine's "
                                "core count or on how many runs train at once (a thread count "
                                "changes float rounding); and at the demo's size two 1-thread "
                                "runs side by side beat one 2-thread run after another. None: "
                                "torch's default.")
    evaluation: dict[str, Any] = Field(
        default_factory=lambda: {"survival_event": "poor_status"},
        description="Further medimp.evaluate.EvalConfig fields (the simulated cohort has few "
        "graft losses, so survival uses poor status as its event).")

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError("give at least one pretraining seed")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("give at least one pretraining seed, each once")
        return v

    def seed_list(self) -> list[int]:
        """The pretraining seeds of each method."""
        if isinstance(self.seeds, int):
            return list(range(self.seed, self.seed + self.seeds))
        return list(self.seeds)


@dataclass
class DemoResult:
    """Where the demo wrote things, and the headline table."""

    out_dir: Path
    cohort: Path
    runs: dict[str, list[Path]]
    eval_dir: Path
    report: Path
    headline: Any
    comparisons: Any = None
    regression: Any = None  # eGFR R² table (methods × egfr_yK)
    added_value: Any = None  # clinical+NAME minus clinical_only
    added_value_answers: list = field(default_factory=list)  # "do the images add anything?"
    decided: list[str] = field(default_factory=list)  # the verdicts in words, one per task
    timings: dict[str, float] = field(default_factory=dict)
    """Wall seconds of each stage (they add up to the demo's time)."""
    run_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds of each pretraining run ("medimp seed 0", ...); runs overlap when ``jobs`` > 1."""


def _pretrain_config(cfg: DemoConfig, method: str, seed: int) -> dict[str, Any]:
    return {
        "method": method,
        "seed": seed,
        "image_encoder": {"name": cfg.encoder, "kwargs": dict(cfg.encoder_kwargs)},
        "embed_dim": cfg.embed_dim,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "optim": {"lr": cfg.lr, "warmup_epochs": max(1.0, cfg.epochs / 5),
                  "text_lr_scale": cfg.text_lr_scale},
        "preprocess": {"shape": list(cfg.shape)},
        # fp32, not the library's 'auto': at the demo's size (narrow ResNet-10, 32³) bf16 steps
        # were 0.7x as fast as fp32 on an AMX CPU (docs/train.md), and the results stay those
        # of every machine
        "precision": "32",
        "log_every_n_steps": 1,
    }


def run_demo(out_dir: str | os.PathLike[str], config: DemoConfig | None = None, *,
             overwrite: bool = False, progress: bool = True,
             log: Callable[[str], None] = print) -> DemoResult:
    """Run the whole pipeline on a simulated cohort and write an HTML report.

    Args:
        out_dir: output folder (cohort/, prompts.parquet, runs/<method>/seed<S>/,
            eval/report.html).
        config: demo sizes; defaults are the embedded demo.
        overwrite: replace an earlier demo in ``out_dir``.
        progress: show progress bars.
        log: where step messages go.

    Returns:
        A :class:`DemoResult` with the paths and the headline table.
    """
    from medimp.evaluate import EvalConfig, evaluate
    from medimp.report import write_report
    from medimp.simulate import simulate_cohort

    cfg = config or DemoConfig()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to replace the demo "
                                  "there")
        refuse_foreign_entries(out, DEMO_ENTRIES, what="medimp demo folder")
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        log(f"[{name}] ...")
        value = fn()
        timings[name] = time.perf_counter() - t0
        log(f"[{name}] done in {timings[name]:.0f} s")
        return value

    cohort_dir = out / "cohort"
    step("simulate", lambda: simulate_cohort(
        cohort_dir, cfg.n_patients, shape=tuple(cfg.shape), seed=cfg.seed, overwrite=True,
        workers=cfg.workers, progress=progress))

    def _prompts() -> Path:
        table = build_prompts(read_cohort(cohort_dir), seed=cfg.seed)
        path = out / "prompts.parquet"
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
        return path

    step("prompts", _prompts)

    runs = method_seed_runs(out / "runs", cfg.methods, cfg.seed_list())
    todo = [RunJob(_run_name(m, seed), cohort_dir, run, _pretrain_config(cfg, m, seed),
                   overwrite=True)
            for m in cfg.methods for seed, run in zip(cfg.seed_list(), runs[m], strict=True)]
    jobs = demo_jobs(cfg)
    t0 = time.perf_counter()
    try:
        # in processes, costlier methods first, so that the last run to finish is a short one
        # (stable: the seeds of a method stay in order)
        done = train_runs(todo if jobs == 1 else sorted(todo, key=_cost), jobs=jobs,
                          threads=cfg.threads, progress=progress, log=log)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"{exc}; nothing was evaluated") from None
    run_seconds = {o.job.name: o.seconds or 0.0 for o in done}
    timings["pretrain"] = time.perf_counter() - t0
    if jobs > 1:
        log(f"[pretrain] done in {timings['pretrain']:.0f} s")

    eval_dir = out / "eval"
    # n_jobs: the cross-validations are independent and seeded; in parallel they give the
    # same metrics and predictions, bit for bit (benchmarks/demo_speed.py checks it)
    eval_cfg = EvalConfig(**{"n_splits": cfg.folds, "repeats": cfg.repeats,
                             "n_bootstrap": cfg.bootstrap, "seed": cfg.seed, "n_jobs": jobs,
                             **cfg.evaluation})
    result = step("evaluate", lambda: evaluate(cohort_dir, runs, eval_dir, eval_cfg,
                                               progress=progress, overwrite=True))
    report = step("report", lambda: write_report(eval_dir))
    return DemoResult(out_dir=out, cohort=cohort_dir, runs=runs, eval_dir=eval_dir,
                      report=report, headline=result.headline(),
                      comparisons=result.comparison_table(), decided=result.decided(),
                      timings=timings,
                      regression=result.regression_table(),
                      added_value=result.added_value_table(),
                      added_value_answers=list(result.metrics.added_value_answers),
                      run_seconds=run_seconds)


def demo_jobs(cfg: DemoConfig) -> int:
    """Pretraining runs trained at once: ``cfg.jobs``, or one per CPU core (at most 4)."""
    if cfg.jobs is not None:
        return cfg.jobs
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


# runs of a method take about the same time; 'random_init' exports an untrained encoder
_COST = {"random_init": 0, "tabular_clip": 1}


def _cost(job: RunJob) -> int:
    return -_COST.get(job.config["method"], 2)


def _run_name(method: str, seed: int) -> str:
    return f"{method} seed {seed}"
