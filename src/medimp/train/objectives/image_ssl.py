"""``image_ssl``: two augmented views of the same exam pulled together (SimCLR-style).

By default the loss is SimCLR's own NT-Xent: every view has the 2N-2 other views of the batch
as negatives, within-view ones included, patient-masked like every other objective.
``method_options: {negatives: cross_view}`` gives the config's contrastive loss (symmetric
InfoNCE, or SigLIP) between the two views instead (N-1 negatives per sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medimp.train.errors import ConfigError
from medimp.train.objectives._base import (
    ContrastiveObjective,
    ItemFields,
    Key,
    PretrainData,
    make_contrastive_loss,
)
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


class ImageSSLOptions(BaseModel):
    """Options of ``image_ssl`` (``method_options``)."""

    model_config = ConfigDict(extra="forbid")

    negatives: Literal["cross_view", "nt_xent"] = Field(
        "nt_xent", description="'nt_xent' (default): SimCLR's own loss (2N-2 negatives, the "
        "other samples' views of both sets), so medimp is compared with the real SimCLR; "
        "'cross_view': symmetric InfoNCE between the two views (N-1 negatives per sample, the "
        "baseline of medimp before 0.3).")


@register_objective
class ImageSSL(ContrastiveObjective):
    """Image vs a second augmented view of the same exam; image tower only."""

    name = "image_ssl"
    partner = "image2"
    needs_augmentation = "two different views of an exam"
    Options = ImageSSLOptions

    def check(self) -> None:
        if self.options.negatives == "nt_xent" and self.config.loss.name != "clip":
            raise ConfigError("image_ssl with negatives 'nt_xent' (the default) needs "
                              f"loss.name 'clip' (got {self.config.loss.name!r}); set "
                              "method_options.negatives=cross_view to train image_ssl with "
                              f"{self.config.loss.name!r} between the two views")

    def build(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:
        if self.options.negatives == "nt_xent":
            from medimp.models import NTXentLoss

            return {"loss_fn": NTXentLoss()}
        return {"loss_fn": make_contrastive_loss(self.config)}

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        return _SecondView(data.exam_dataset(keys, augment=True,
                                             seed=data.seed + _VIEW2_SEED_OFFSET))

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        return {"image": model.encode_image(batch["image"]),
                "image2": model.encode_image(batch["image2"])}
