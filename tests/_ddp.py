"""Helpers for the tests that compare 2 gloo processes with one process on the whole batch."""

from __future__ import annotations

import socket

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
