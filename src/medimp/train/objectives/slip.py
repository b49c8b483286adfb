"""``slip``: MEDIMP's image-text CLIP plus image self-supervision (SLIP, Mu et al. 2022).

``loss = CLIP(image, text) + ssl_weight · NT-Xent(view 1, view 2)``: each exam is also seen
through a second augmentation, and the two views are pulled together by SimCLR's loss (2N-2
negatives) through their own projection head and temperature; the CLIP branch uses view 1. The
image features of view 1 are computed once and shared by both heads. Everything else (text
tower, prompts, masking, export) is ``medimp``'s; ``embed`` uses the image features, not
the SSL head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.functional import normalize

from medimp.models import NTXentLoss, ProjectionHead
from medimp.models.distributed import is_distributed
from medimp.train.objectives._base import ItemFields, Key, PretrainData
from medimp.train.objectives._registry import register_objective
from medimp.train.objectives.image_ssl import _VIEW2_SEED_OFFSET, _SecondView
from medimp.train.objectives.medimp import _VAL_STREAM, Medimp, draw_prompts

__all__ = ["Slip"]


class SlipOptions(BaseModel):
    """Options of ``slip`` (``method_options``)."""

    model_config = ConfigDict(extra="forbid")

    ssl_weight: float = Field(1.0, gt=0, description="Weight of the image-SSL (NT-Xent) term "
                              "relative to the CLIP loss (SLIP: 1).")


class _WithView(ItemFields):
    """The text objective's fields plus ``image2`` (a second augmented view)."""

    def __init__(self, inner: ItemFields, view: _SecondView) -> None:
        self.inner, self.view = inner, view

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        return {**self.inner(index, patient_id, exam), **self.view(index, patient_id, exam)}

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)
        self.view.set_epoch(epoch)


@register_objective
class Slip(Medimp):
    """``medimp`` + ``ssl_weight`` x NT-Xent between two augmented views of each exam."""

    name = "slip"
    needs_augmentation = "two different views of an exam for the image-SSL term"
    Options = SlipOptions

    def architecture(self) -> dict[str, Any]:
        return {**super().architecture(), "ssl_head": True}

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        view = _SecondView(data.exam_dataset(keys, augment=True,
                                             seed=data.seed + _VIEW2_SEED_OFFSET))
        return _WithView(super().item_fields(data, keys), view)

    def build(self, embed_dim: int, image_features: int = 0,
              **tower_args: Any) -> dict[str, nn.Module]:

        # medimp's towers first: the same initialisation of the shared parts for a given seed
        out = super().build(embed_dim, **tower_args)
        out["ssl_proj"] = ProjectionHead(image_features, embed_dim)
        out["ssl_loss"] = NTXentLoss()
        return out

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        f1 = model.encode_image(batch["image"], features=True)
        f2 = model.encode_image(batch["image2"], features=True)
        step = model.global_step if stage == "train" else _VAL_STREAM
        idx = [int(i) for i in batch["index"]]
        texts = draw_prompts(batch["prompts"], idx, self.config.seed, step)
        return {"image": normalize(model.image_proj(f1).float(), dim=-1),
                "text": self.encode_text(model, texts),
                "ssl1": normalize(model.ssl_proj(f1).float(), dim=-1),
                "ssl2": normalize(model.ssl_proj(f2).float(), dim=-1)}

    def loss(self, model: Any, embeddings: dict[str, torch.Tensor],
             batch: dict[str, Any]) -> torch.Tensor:

        clip = super().loss(model, embeddings, batch)
        z1, z2 = embeddings["ssl1"], embeddings["ssl2"]
        groups = batch["patient_idx"].to(z1.device).long()
        if is_distributed():
            from medimp.models.distributed import gather_no_grad, gather_with_grad

            z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
            groups = gather_no_grad(groups)
        ssl = model.ssl_loss(z1, z2, groups=groups if self.config.loss.patient_mask else None)
        return clip + self.options.ssl_weight * ssl
