"""Contrastive losses for image–text (or image–image, image–table) pairs, patient-aware.

Both losses take features that may already be gathered across processes (see
:func:`medimp.models.distributed.gather_with_grad`) and an optional ``groups`` vector of patient
ids per row. A pair of rows from the same patient (two exams, or two phases, of one patient) is
never used as a negative: in the original code a patient's own volumes were each other's
negatives. Choice made here: such pairs are masked out (neither positive nor negative), in both
losses, so each row keeps exactly one positive, its own pair, and the loss does not reward
telling apart exams of one patient nor force them together.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

from medimp.models._errors import ModelError

__all__ = ["ClipLoss", "SigLipLoss", "same_group_mask"]


def same_group_mask(groups: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Boolean ``[n, n]``: True where rows i != j belong to the same group (to be masked)."""
    if groups is None:
        return torch.zeros((n, n), dtype=torch.bool, device=device)
    groups = torch.as_tensor(groups, device=device)
    if groups.ndim != 1 or groups.shape[0] != n:
        raise ModelError(f"groups must be a vector of {n} patient ids, got shape "
                         f"{list(groups.shape)}")
    same = groups[:, None] == groups[None, :]
    return same & ~torch.eye(n, dtype=torch.bool, device=device)


def _pair_mask(groups: torch.Tensor | None, exclude: torch.Tensor | None, n: int,
               device: torch.device) -> torch.Tensor:
    """Off-diagonal pairs left out of the loss: same patient, or flagged in ``exclude``."""
    mask = same_group_mask(groups, n, device)
    if exclude is not None:
        exclude = torch.as_tensor(exclude, device=device, dtype=torch.bool)
        if exclude.shape != (n, n):
            raise ModelError(f"exclude must be a [{n}, {n}] boolean matrix, got "
                             f"{list(exclude.shape)}")
        mask = mask | (exclude & ~torch.eye(n, dtype=torch.bool, device=device))
    return mask


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ModelError(f"expected two feature matrices of the same shape [N, E], got "
                         f"{list(a.shape)} and {list(b.shape)}")
    if a.shape[0] < 2:
        raise ModelError("a contrastive loss needs at least 2 pairs in the batch")


class ClipLoss(nn.Module):
    """Symmetric InfoNCE (CLIP) with a learnable temperature, patient-masked.

    ``loss = (CE(s·A·Bᵀ, diag) + CE(s·B·Aᵀ, diag)) / 2`` on L2-normalised features, with
    ``s = exp(logit_scale)`` clamped at ``max_logit_scale`` (100, i.e. ``ln 100`` on the log
    scale, as in CLIP and MEDIMP). Same-patient off-diagonal logits are set to ``-inf``.

    Args:
        init_temperature: initial temperature (``s = 1 / T``); 0.07 as CLIP.
        max_logit_scale: upper bound on ``s``.
        learnable: learn the temperature (otherwise a fixed buffer).
    """

    def __init__(
        self, init_temperature: float = 0.07, max_logit_scale: float = 100.0,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        if not (init_temperature > 0 and 1 / init_temperature <= max_logit_scale):
            raise ModelError(f"init_temperature must be in [1/max_logit_scale, inf), got "
                             f"{init_temperature}")
        value = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("logit_scale", value)
        self.max_log_scale = math.log(max_logit_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The effective (clamped) logit scale ``s``."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities ``[N, N]`` (rows: ``a``, columns: ``b``)."""
        return self.scale * functional.normalize(a, dim=-1) @ functional.normalize(b, dim=-1).T

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor,
        groups: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean symmetric InfoNCE over the batch; row i of both inputs is a positive pair.

        ``groups`` (patient id per row) and ``exclude`` (a boolean ``[N, N]`` of further pairs,
        e.g. exams whose prompts state the same facts) name off-diagonal pairs that are masked
        out: neither positives nor negatives.
        """
        _check_pair(image_features, text_features)
        n = image_features.shape[0]
        logits = self.logits(image_features.float(), text_features.float())
        mask = _pair_mask(groups, exclude, n, logits.device)
        logits = logits.masked_fill(mask, float("-inf"))
        target = torch.arange(n, device=logits.device)
        return 0.5 * (functional.cross_entropy(logits, target)
                      + functional.cross_entropy(logits.T, target))


class SigLipLoss(nn.Module):
    """Sigmoid pairwise loss (SigLIP, Zhai et al. 2023), patient-masked.

    ``loss = -1/N Σ_ij log σ(z_ij (t·a_i·b_j + bias))`` with ``z_ii = 1`` and ``z_ij = -1``;
    pairs of different rows of the same patient are left out of the sum. Temperature ``t`` and
    ``bias`` are learnable, initialised at 10 and -10 as in the paper.
    """

    def __init__(self, init_scale: float = 10.0, init_bias: float = -10.0,
                 max_logit_scale: float = 100.0) -> None:
        super().__init__()
        if init_scale <= 0 or init_scale > max_logit_scale:
            raise ModelError(f"init_scale must be in (0, {max_logit_scale}], got {init_scale}")
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.max_log_scale = math.log(max_logit_scale)

    @property
    def scale(self) -> torch.Tensor:
        """The effective (clamped) scale ``t``."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor,
        groups: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sum over pairs of the sigmoid loss, divided by the number of rows (masking as
        :meth:`ClipLoss.forward`)."""
        _check_pair(image_features, text_features)
        n = image_features.shape[0]
        a = functional.normalize(image_features.float(), dim=-1)
        b = functional.normalize(text_features.float(), dim=-1)
        logits = self.scale * a @ b.T + self.logit_bias
        labels = 2 * torch.eye(n, device=logits.device) - 1
        keep = ~_pair_mask(groups, exclude, n, logits.device)
        return -(functional.logsigmoid(labels * logits) * keep).sum() / n
