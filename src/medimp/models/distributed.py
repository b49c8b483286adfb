"""All-gather across processes that keeps gradients, so negatives span the global batch.

Under data parallelism each process embeds its own shard; the contrastive loss needs every
shard's features. :func:`gather_with_grad` concatenates them in rank order and lets gradients
flow back to the local shard: its backward sums the gradient of the gathered tensor over all
processes (an all-reduce) and keeps the local slice. Every process then computes the same global
loss; the summed gradient is ``world_size`` times the per-process one, and DDP's gradient
averaging divides it back, so the parameter gradients equal those of one process on the
concatenated batch. Shards of different sizes (a last, smaller batch) are handled by padding.
Outside an initialised process group (or with one process) both functions are the identity.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["gather_no_grad", "gather_with_grad", "is_distributed"]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _sizes(tensor: torch.Tensor) -> list[int]:
    n = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    out = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(out, n)
    return [int(s.item()) for s in out]


def _gather(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    top = max(sizes)
    local = tensor.contiguous()
    if local.shape[0] < top:
        pad = local.new_zeros((top - local.shape[0], *local.shape[1:]))
        local = torch.cat([local, pad])
    parts = [torch.empty_like(local) for _ in sizes]
    dist.all_gather(parts, local)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        sizes = _sizes(tensor)
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` ``[n_r, ...]`` of every process (rank order), keeping gradients.

    Integer tensors (patient ids) and tensors without gradient are gathered without autograd.
    """
    if not is_distributed():
        return tensor
    if not tensor.requires_grad or not tensor.is_floating_point():
        return gather_no_grad(tensor)
    return _GatherWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` of every process (rank order), detached (e.g. group ids)."""
    if not is_distributed():
        return tensor
    with torch.no_grad():
        return _gather(tensor.detach(), _sizes(tensor))
