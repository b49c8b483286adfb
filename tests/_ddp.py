"""Helpers for the tests that compare 2 gloo processes with one process on the whole batch."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for ``MASTER_PORT``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def average_like_ddp(grads: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """What DDP does to the gradients: the mean over the processes, in place."""
    for g in grads.values():
        torch.distributed.all_reduce(g)
        g /= world
    return grads


def spawn(fn: Callable[..., None], args: tuple, nprocs: int, results: Sequence[Path], *,
          timeout: float = 300.0, grace: float = 30.0) -> None:
    """``torch.multiprocessing.spawn(fn, args, nprocs)`` that cannot hang the test run.

    torch 2.13's gloo process group can deadlock in its destructor: the last reference is
    dropped while the GIL is held (e.g. a DDP ``Reducer`` freed as the worker returns), the
    destructor joins the group's worker thread, and that thread waits for the GIL to free the
    Python tensors of a finished collective (stacks seen in CI: ``~ProcessGroupGloo`` ->
    ``std::thread::join`` / ``AsyncAllreduceWork::~AsyncAllreduceWork`` -> ``gil_scoped_acquire``).
    Once every process has written its ``results`` file, a process still alive ``grace``
    seconds later is stuck in that teardown: it is killed and the test goes on with the
    results. A worker that raises fails the test as with ``join=True``; no results after
    ``timeout`` seconds fail it too.
    """
    ctx = torch.multiprocessing.spawn(fn, args=args, nprocs=nprocs, join=False)
    start, done_at = time.monotonic(), None
    while not ctx.join(timeout=1.0):  # raises ProcessRaisedException if a worker failed
        now = time.monotonic()
        if done_at is None and all(Path(r).is_file() for r in results):
            done_at = now
        stuck = done_at is not None and now - done_at > grace
        if stuck or now - start > timeout:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                p.join()
            if not stuck:
                raise AssertionError(f"{nprocs} processes did not finish in {timeout:.0f} s")
            return
