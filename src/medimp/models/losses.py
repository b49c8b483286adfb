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

__all__ = [
    "ClipLoss",
    "NTXentLoss",
    "SigLipLoss",
    "SoftClipLoss",
    "fact_similarity",
    "nt_xent_loss",
    "same_group_mask",
    "soft_clip_loss",
    "soft_targets",
]


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


# ------------------------------------------ beyond MEDIMP (docs/train.md, "Beyond MEDIMP")
def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, scale: torch.Tensor | float,
                 groups: torch.Tensor | None = None) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020) on two views: every sample has 2N-2 negatives.

    The 2N embeddings ``[z1; z2]`` are compared with each other; row ``k`` is pulled towards
    its other view and pushed from the 2N-2 other rows, the other samples' views *of both
    sets* (the within-view negatives that a CLIP loss between views lacks). With ``groups``,
    other rows of the same patient are masked (neither positive nor negative), as in
    :class:`ClipLoss`. ``loss = -1/2N Σ_k log softmax_k(s·cos)[pos(k)]``.
    """
    _check_pair(z1, z2)
    n = z1.shape[0]
    z = functional.normalize(torch.cat([z1, z2]).float(), dim=-1)
    logits = scale * z @ z.T
    g = None if groups is None else torch.cat([torch.as_tensor(groups)] * 2)
    two = 2 * n
    eye = torch.eye(two, dtype=torch.bool, device=logits.device)
    pos = torch.cat([torch.arange(n, two), torch.arange(n)]).to(logits.device)
    is_pos = torch.zeros_like(eye)
    is_pos[torch.arange(two, device=logits.device), pos] = True
    mask = eye | (same_group_mask(g, two, logits.device) & ~is_pos)
    logits = logits.masked_fill(mask, float("-inf"))
    return functional.cross_entropy(logits, pos)


class NTXentLoss(ClipLoss):
    """:func:`nt_xent_loss` with :class:`ClipLoss`'s learnable, clamped temperature.

    Same signature as ``ClipLoss`` (``exclude`` is not supported), so it can replace the
    cross-view InfoNCE of ``image_ssl`` with only the negatives changed.
    """

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                groups: torch.Tensor | None = None, exclude: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Mean NT-Xent over the 2N views; row i of both inputs are two views of one sample."""
        if exclude is not None:
            raise ModelError("NTXentLoss does not take an exclude mask")
        return nt_xent_loss(image_features, text_features, self.scale, groups)


def fact_similarity(facts: torch.Tensor, ordinal: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise agreement ``[N, N]`` in [0, 1] of the clinical facts of N exams.

    Args:
        facts: ``[N, V]`` float, one column per variable: an ordinal position in [0, 1] (bin
            index / (bins - 1)) or a category code; NaN where the value is missing.
        ordinal: ``[V]`` bool; True: neighbouring bins agree partly (``1 - |a - b|``); False:
            categories agree only when equal. Default: all ordinal.

    A pair's similarity is the mean agreement over the variables known for both exams (0 if
    none is), so exams stating the same facts score 1 and neighbouring bins score in between.
    """
    facts = torch.as_tensor(facts, dtype=torch.float32)
    if facts.ndim != 2:
        raise ModelError(f"facts must be [N, V], got shape {list(facts.shape)}")
    v = facts.shape[1]
    if ordinal is None:
        ordinal = torch.ones(v, dtype=torch.bool, device=facts.device)
    ordinal = torch.as_tensor(ordinal, dtype=torch.bool, device=facts.device)
    a, b = facts[:, None, :], facts[None, :, :]
    known = torch.isfinite(a) & torch.isfinite(b)
    diff = (a - b).abs().nan_to_num(0.0)
    agree = torch.where(ordinal, (1.0 - diff).clamp(min=0.0), (diff == 0).float())
    count = known.sum(-1)
    sim = (agree * known).sum(-1) / count.clamp(min=1)
    return torch.where(count > 0, sim, torch.zeros_like(sim))


def soft_targets(similarity: torch.Tensor, sharpness: float = 10.0,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """Row-stochastic targets from a similarity matrix: ``softmax(sharpness · sim)`` per row.

    The diagonal (a pair's own similarity, 1) is the largest weight; exams stating the same
    facts get the same weight as the pair itself (they are positives), neighbouring facts a
    smaller one. Entries flagged in ``mask`` get no weight (same patient, left out).
    """
    logits = sharpness * similarity.float()
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return functional.softmax(logits, dim=-1)


def soft_clip_loss(logits: torch.Tensor, targets: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric cross-entropy of CLIP logits against soft targets (MedCLIP, Wang et al. 2022).

    Args:
        logits: ``[N, N]`` scaled similarities (rows: images, columns: texts).
        targets: ``[N, N]`` row-stochastic target matrix; ``targets.T`` rows are used for the
            text-to-image direction after renormalisation.
        mask: ``[N, N]`` bool, pairs left out of both the softmax and the targets.

    With the identity as target this is exactly the CLIP loss.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ModelError(f"logits and targets must both be [N, N], got {list(logits.shape)} "
                         f"and {list(targets.shape)}")
    t = targets.float()
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
        t = t.masked_fill(mask, 0.0)
    total = 0.0
    for lg, tg in ((logits, t), (logits.T, t.T)):
        tg = tg / tg.sum(-1, keepdim=True).clamp(min=1e-12)
        logp = functional.log_softmax(lg.float(), dim=-1)
        total = total + -(tg * logp.masked_fill(tg == 0, 0.0)).sum(-1).mean()
    return 0.5 * total


class SoftClipLoss(ClipLoss):
    """CLIP with soft targets from clinical similarity (MedCLIP's semantic matching loss).

    ``forward(a, b, groups, similarity=S)``: the target of pair (i, j) is
    ``softmax_j(sharpness · S_ij)``, so exams that state the same or neighbouring facts are
    partial positives instead of negatives. Same-patient pairs are masked as in ``ClipLoss``.
    Without ``similarity`` it is the plain CLIP loss.

    Args:
        sharpness: how fast the target weight falls with dissimilarity (exp(-sharpness) for
            a pair agreeing on nothing relative to one agreeing on everything).
    """

    def __init__(self, sharpness: float = 10.0, **kwargs: float) -> None:
        super().__init__(**kwargs)
        if not sharpness > 0:
            raise ModelError(f"sharpness must be > 0, got {sharpness}")
        self.sharpness = float(sharpness)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                groups: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                similarity: torch.Tensor | None = None) -> torch.Tensor:
        """Mean symmetric soft cross-entropy (see :func:`soft_clip_loss`)."""
        if similarity is None:
            return super().forward(image_features, text_features, groups, exclude)
        _check_pair(image_features, text_features)
        n = image_features.shape[0]
        logits = self.logits(image_features.float(), text_features.float())
        if similarity.shape != (n, n):
            raise ModelError(f"similarity must be [{n}, {n}], got {list(similarity.shape)}")
        mask = _pair_mask(groups, exclude, n, logits.device)
        sim = similarity.to(logits.device).float().clone()
        sim.fill_diagonal_(1.0)
        targets = soft_targets(sim, self.sharpness, mask)
        return soft_clip_loss(logits, targets, mask)
