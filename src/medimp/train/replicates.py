"""Several pretraining runs: the seed-run layout, and training them one after another or at once.

A method pretrained with several seeds is a folder of seed runs, ``<root>/seed<S>``; a
comparison of methods is ``<runs>/<method>/seed<S>`` (the demo, ``medimp pretrain --seeds``, the
benchmarks; ``medimp evaluate --runs NAME=<root>`` reads such a folder as the method's
pretraining replicates). :func:`train_runs` trains a list of runs either in this process, one
after the other, or in ``jobs`` worker processes at once:

- each worker uses ``threads`` torch threads (1: a run's weights depend on its seed only, not on
  the machine's core count or on how many runs train at once);
- Ctrl-C (or ``kill -INT`` of this process alone) stops every worker: each running run is
  interrupted as :func:`medimp.train.pretrain` is on Ctrl-C (its last finished epoch stays in
  ``checkpoints/last.ckpt``, so ``--resume`` continues it; an overwritten run keeps its previous
  version), runs not yet started are not started, and :class:`TrainingInterrupted` says how
  many had finished;
- a failed run stops the others too, unless ``keep_going`` (its error is then returned).

The worker processes are spawned: a script that calls ``train_runs(..., jobs=2)`` needs the
usual ``if __name__ == "__main__":`` guard around its work (each worker imports the script).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medimp.train.errors import TrainingInterrupted
from medimp.train.run import pretrain

__all__ = ["RunJob", "RunOutcome", "method_seed_runs", "seed_run_dir", "seed_runs",
           "train_runs"]


def seed_run_dir(root: str | os.PathLike[str], seed: int) -> Path:
    """The run folder of ``seed`` in a folder of seed runs: ``<root>/seed<S>``."""
    return Path(root) / f"seed{int(seed)}"


def seed_runs(root: str | os.PathLike[str], seeds: Iterable[int]) -> list[Path]:
    """``<root>/seed<S>`` for each seed, in the order given."""
    return [seed_run_dir(root, s) for s in seeds]


def method_seed_runs(runs_root: str | os.PathLike[str], methods: Iterable[str],
                     seeds: Sequence[int]) -> dict[str, list[Path]]:
    """``{method: [<runs_root>/<method>/seed<S>, ...]}``: the layout of a comparison."""
    return {m: seed_runs(Path(runs_root) / m, seeds) for m in methods}


@dataclass(frozen=True)
class RunJob:
    """One run to train: ``pretrain(cohort, out, config, resume=, overwrite=)``."""

    name: str
    """How the run is named in messages ("medimp seed 0")."""
    cohort: Path
    out: Path
    config: Any
    """A ``PretrainConfig``, a mapping of its options, or a YAML path."""
    resume: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """What became of one run: its seconds, or the error that stopped it (``keep_going``)."""

    job: RunJob
    seconds: float | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def train_runs(runs: Sequence[RunJob], *, jobs: int = 1, threads: int | None = None,
               progress: bool = False, keep_going: bool = False,
               log: Callable[[str], None] = print) -> list[RunOutcome]:
    """Train ``runs``, one after the other here (``jobs`` 1) or ``jobs`` at once in processes.

    Args:
        runs: the runs, in the order they start.
        jobs: runs trained at once, each in its own (spawned) process; 1 trains them in this
            process, with progress bars when ``progress``. Never more processes than runs.
        threads: torch threads of each run (None: torch's default).
        progress: progress bars (one run at a time only).
        keep_going: a run that fails with an error does not stop the others; its error is in
            its :class:`RunOutcome`. Ctrl-C always stops every run.
        log: where the line of each started and finished run goes.

    Returns:
        One :class:`RunOutcome` per run, in the order they finished.

    Raises:
        TrainingInterrupted: on Ctrl-C, saying how many runs had finished.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if jobs == 1 or len(runs) <= 1:
        return _train_here(runs, threads=threads, progress=progress, keep_going=keep_going,
                           log=log)
    return _train_parallel(runs, jobs=min(jobs, len(runs)), threads=threads,
                           keep_going=keep_going, log=log)


def _interrupted(done: int, total: int) -> TrainingInterrupted:
    return TrainingInterrupted(f"interrupted during pretraining ({done} of {total} runs had "
                               "finished)")


def _train_here(runs: Sequence[RunJob], *, threads: int | None, progress: bool,
                keep_going: bool, log: Callable[[str], None]) -> list[RunOutcome]:
    import torch

    done: list[RunOutcome] = []
    for job in runs:
        log(f"[pretrain {job.name}] ...")
        before = torch.get_num_threads()
        t0 = time.perf_counter()
        try:
            if threads is not None:
                torch.set_num_threads(threads)
            _pretrain(job, progress=progress)
        except KeyboardInterrupt as exc:
            if len(runs) == 1:
                raise
            raise TrainingInterrupted(f"{job.name}: {exc}; {len(done)} of {len(runs)} runs "
                                      "had finished") from None
        except Exception as exc:
            if not keep_going:
                raise
            done.append(RunOutcome(job, None, str(exc)))
            log(f"[pretrain {job.name}] not trained: {exc}")
            continue
        finally:
            torch.set_num_threads(before)
        done.append(RunOutcome(job, time.perf_counter() - t0))
        log(f"[pretrain {job.name}] done in {done[-1].seconds:.0f} s")
    return done


def _pretrain(job: RunJob, *, progress: bool) -> None:

    pretrain(job.cohort, job.out, job.config, resume=job.resume, overwrite=job.overwrite,
             progress=progress)


def _train_parallel(runs: Sequence[RunJob], *, jobs: int, threads: int | None,
                    keep_going: bool, log: Callable[[str], None]) -> list[RunOutcome]:
    what = f"{threads} torch thread(s)" if threads else "torch's default threads"
    log(f"[pretrain] {len(runs)} runs, {jobs} at a time, {what} each ...")
    others = set(mp.active_children())  # a caller's own child processes are left alone
    pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                               initializer=_worker_init, initargs=(threads,))
    futures: dict[Future[float], RunJob] = {pool.submit(_worker_pretrain, job): job
                                            for job in runs}
    done: list[RunOutcome] = []
    try:
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                done.append(RunOutcome(job, fut.result()))
            except Exception as exc:
                if not keep_going:
                    raise
                done.append(RunOutcome(job, None, str(exc)))
                log(f"[pretrain {job.name}] not trained: {exc}")
                continue
            log(f"[pretrain {job.name}] done in {done[-1].seconds:.0f} s "
                f"({len(done)}/{len(runs)})")
    except BaseException as exc:
        _stop(pool, futures, others)
        if isinstance(exc, KeyboardInterrupt):
            raise _interrupted(sum(o.ok for o in done), len(runs)) from None
        raise
    pool.shutdown(wait=True)
    return done


def _stop(pool: ProcessPoolExecutor, futures: Iterable[Future[Any]], others: set[Any]) -> None:
    """Cancel runs not started, interrupt the running ones (SIGINT), wait for the workers."""
    for fut in futures:
        fut.cancel()
    for child in mp.active_children():  # the pool's workers: stop their runs now
        if child not in others and child.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(child.pid, signal.SIGINT)
    pool.shutdown(wait=True, cancel_futures=True)


# Worker side. A Ctrl-C in a terminal reaches every process of the group, and train_runs also
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


def _worker_pretrain(job: RunJob) -> float:
    """One run in a worker process; its seconds."""
    _WORKER["running"] = True
    try:
        if _WORKER["stopping"]:
            raise KeyboardInterrupt
        t0 = time.perf_counter()
        _pretrain(job, progress=False)
        return time.perf_counter() - t0
    finally:
        _WORKER["running"] = False
