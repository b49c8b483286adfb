"""The end-to-end demo: simulate -> prompts -> pretrain (medimp + baselines) -> evaluate -> report.

This module sits at the end of the pipeline (it imports every stage; only ``cli`` imports it).
It runs on the embedded defaults, offline, on a laptop CPU: a small simulated cohort, a small 3D
encoder, the packaged MiniLM text encoder, and the same training budget for every method, so the
methods × tasks table compares representations, not budgets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    seeds: int = Field(3, ge=1, description="Pretraining runs per method (seeds seed, seed+1, "
                       "...): the evaluation treats them as replicates, so every CI and paired "
                       "test carries the variance between pretraining seeds.")
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
    from medimp._io import atomic_path, refuse_foreign_entries
    from medimp.data import read_cohort
    from medimp.evaluate import EvalConfig, evaluate
    from medimp.prompts import build_prompts
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

    runs = {m: [out / "runs" / m / f"seed{s}" for s in range(cfg.seed, cfg.seed + cfg.seeds)]
            for m in cfg.methods}
    todo = [(m, s, run) for m in cfg.methods for s, run in
            zip(range(cfg.seed, cfg.seed + cfg.seeds), runs[m], strict=True)]
    run_seconds: dict[str, float] = {}
    jobs = demo_jobs(cfg)
    t0 = time.perf_counter()
    if jobs == 1:
        for method, seed, run_dir in todo:
            _pretrain_here(cfg, cohort_dir, method, seed, run_dir, progress=progress, log=log,
                           run_seconds=run_seconds)
    else:
        # never more worker processes (each holds torch and a model) than runs
        _pretrain_parallel(cfg, cohort_dir, todo, jobs=min(jobs, len(todo)), log=log,
                           run_seconds=run_seconds)
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
                      comparisons=result.comparison_table(), timings=timings,
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


# costlier methods first, so that the last run to finish is a short one (runs of a method
# take about the same time; 'random_init' exports an untrained encoder)
_COST = {"random_init": 0, "tabular_clip": 1}


def _run_name(method: str, seed: int) -> str:
    return f"{method} seed {seed}"


def _pretrain_here(cfg: DemoConfig, cohort_dir: Path, method: str, seed: int, run_dir: Path,
                   *, progress: bool, log: Callable[[str], None],
                   run_seconds: dict[str, float]) -> None:
    """One run in this process (``jobs == 1``), with ``cfg.threads`` torch threads."""
    import torch

    from medimp.train import pretrain

    name = _run_name(method, seed)
    log(f"[pretrain {name}] ...")
    before = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        pretrain(cohort_dir, run_dir, _pretrain_config(cfg, method, seed), progress=progress,
                 overwrite=True)
    finally:
        torch.set_num_threads(before)
    run_seconds[name] = time.perf_counter() - t0
    log(f"[pretrain {name}] done in {run_seconds[name]:.0f} s")


def _pretrain_parallel(cfg: DemoConfig, cohort_dir: Path, todo: list[tuple[str, int, Path]],
                       *, jobs: int, log: Callable[[str], None],
                       run_seconds: dict[str, float]) -> None:
    """Train ``todo`` in ``jobs`` worker processes; a line per finished run.

    Ctrl-C (or any failed run) stops every worker: each running run is interrupted as
    ``pretrain`` is on Ctrl-C (an overwritten run keeps its previous version), runs not yet
    started are not started, and the demo stops before the evaluation.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from medimp.train.config import TrainingInterrupted

    order = sorted(todo, key=lambda t: -_COST.get(t[0], 2))  # stable: seeds stay in order
    threads = f"{cfg.threads} torch thread(s)" if cfg.threads else "torch's default threads"
    log(f"[pretrain] {len(order)} runs, {jobs} at a time, {threads} each ...")
    others = set(mp.active_children())  # a caller's own child processes are left alone
    pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(cfg.threads,))
    futures = {pool.submit(_worker_pretrain, str(cohort_dir), str(run_dir),
                           _pretrain_config(cfg, method, seed)): _run_name(method, seed)
               for method, seed, run_dir in order}
    try:
        for fut in as_completed(futures):
            name = futures[fut]
            run_seconds[name] = fut.result()
            log(f"[pretrain {name}] done in {run_seconds[name]:.0f} s "
                f"({len(run_seconds)}/{len(order)})")
    except BaseException as exc:
        for fut in futures:
            fut.cancel()
        for child in mp.active_children():  # the pool's workers: stop their runs now
            if child not in others and child.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(exc, KeyboardInterrupt):
            raise TrainingInterrupted(
                f"interrupted during pretraining ({len(run_seconds)} of {len(order)} runs "
                "had finished); nothing was evaluated") from None
        raise
    pool.shutdown(wait=True)


# Worker side. A Ctrl-C in a terminal reaches every process of the group, and the demo also
# forwards it to its workers: the first SIGINT interrupts the run in progress (or stops the
# worker from starting one), later ones are ignored.
_WORKER = {"running": False, "stopping": False}


def _worker_init(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: Any) -> None:
    first = not _WORKER["stopping"]
    _WORKER["stopping"] = True
    if first and _WORKER["running"]:
        raise KeyboardInterrupt


def _worker_pretrain(cohort_dir: str, run_dir: str, config: dict[str, Any]) -> float:
    """One run in a worker process; its seconds."""
    _WORKER["running"] = True
    try:
        if _WORKER["stopping"]:
            raise KeyboardInterrupt
        from medimp.train import pretrain

        t0 = time.perf_counter()
        pretrain(cohort_dir, run_dir, config, progress=False, overwrite=True)
        return time.perf_counter() - t0
    finally:
        _WORKER["running"] = False
