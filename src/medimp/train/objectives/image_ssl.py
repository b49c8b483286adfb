"""``image_ssl``: two augmented views of the same exam pulled together (SimCLR-style).

The loss is the config's contrastive loss (symmetric InfoNCE by default) between the two views,
patient-masked like every other objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from medimp.train.objectives._base import ContrastiveObjective, ItemFields, Key, PretrainData
from medimp.train.objectives._registry import register_objective

__all__ = ["ImageSSL"]

# the second view's augmentation stream: the run's seed plus this offset
_VIEW2_SEED_OFFSET = 7919


class _SecondView(ItemFields):
    """``image2``: the same exam through another augmentation stream."""

    def __init__(self, view: Any) -> None:
        self.view = view

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        return {"image2": torch.as_tensor(self.view[index]["image"])}

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.view, "set_epoch"):
            self.view.set_epoch(epoch)


@register_objective
class ImageSSL(ContrastiveObjective):
    """Image vs a second augmented view of the same exam; image tower only."""

    name = "image_ssl"
    partner = "image2"
    needs_augmentation = "two different views of an exam"

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        return _SecondView(data.exam_dataset(keys, augment=True,
                                             seed=data.seed + _VIEW2_SEED_OFFSET))

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        return {"image": model.encode_image(batch["image"]),
                "image2": model.encode_image(batch["image2"])}
