"""How a missing contrast phase is shown to an encoder, the same in training and embedding.

``ExamDataset`` gives each exam an image ``[C, D, H, W]`` (a missing phase is an all-zero
channel) and a ``phase_mask`` ``[C]`` (True: acquired). :func:`encoder_input` turns both into the
encoder's input: the image alone (``"zero"``), or the image followed by one constant 0/1 channel
per phase (``"channels"``), so that the encoder can tell "not acquired" from "dark".
:func:`drop_phases` removes acquired phases at random in training, presenting them exactly as a
missing phase is presented, so that exams with missing phases are not out of distribution.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

__all__ = ["PHASE_MASK_MODES", "drop_phases", "encoder_channels", "encoder_input"]

PhaseMaskMode = Literal["zero", "channels"]
PHASE_MASK_MODES = ("zero", "channels")


def encoder_channels(n_phases: int, mode: str) -> int:
    """Input channels of the encoder for ``n_phases`` phases under ``mode``."""
    if mode not in PHASE_MASK_MODES:
        raise ValueError(f"unknown phase_mask mode {mode!r}; choose one of {PHASE_MASK_MODES}")
    return 2 * n_phases if mode == "channels" else n_phases


def encoder_input(image: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The encoder's input for ``image`` ``[C, D, H, W]`` (or a batch ``[B, C, D, H, W]``).

    Missing phases (``mask`` False) are zeroed whatever the image holds; with ``"channels"``
    the mask follows as C constant channels.
    """
    encoder_channels(1, mode)
    mask = torch.as_tensor(mask, dtype=torch.bool, device=image.device)
    batched = image.ndim == 5
    if image.ndim not in (4, 5) or mask.shape != image.shape[: 2 if batched else 1]:
        raise ValueError(f"image {list(image.shape)} and phase mask {list(mask.shape)} do not "
                         "match: expected [C, D, H, W] with [C], or [B, C, D, H, W] with [B, C]")
    shape = (*mask.shape, 1, 1, 1)
    m = mask.reshape(shape).to(image.dtype)
    out = image * m
    if mode == "channels":
        out = torch.cat([out, m.expand_as(image)], dim=1 if batched else 0)
    return out


def drop_phases(mask: np.ndarray | torch.Tensor, p: float, rng: np.random.Generator
                ) -> torch.Tensor:
    """A copy of ``mask`` with each acquired phase dropped with probability ``p``.

    At least one acquired phase always stays (an exam with no phase is not an exam).
    """
    mask = torch.as_tensor(np.asarray(mask, dtype=bool)).clone()
    if p <= 0:
        return mask
    present = np.flatnonzero(mask.numpy())
    if len(present) < 2:
        return mask
    drop = rng.random(len(present)) < p
    if drop.all():
        drop[int(rng.integers(len(present)))] = False
    mask[present[drop]] = False
    return mask
