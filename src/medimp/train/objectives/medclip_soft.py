"""``medclip_soft``: MEDIMP's image-text CLIP with soft targets from clinical content.

MedCLIP's semantic matching loss (Wang et al. 2022) on MEDIMP's prompts. With binned facts,
many exams of a batch state the same facts (18 % of the pairs of a batch of 16 on the demo
cohort), and plain CLIP pushes their images apart as negatives. Here the target of pair (i, j)
is ``softmax_j(sharpness · agreement of the two exams' facts)``: the facts are the bins the
prompts state (``medimp.prompts.facts.fact_matrix``, with the prompts' wording), neighbouring
GFR bins agree partly, so exams stating the same or neighbouring facts are partial positives.
Everything else (text tower, prompts, masking, export) is ``medimp``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medimp.models import SoftClipLoss, fact_similarity
from medimp.models.distributed import is_distributed
from medimp.prompts.facts import fact_matrix
from medimp.train.errors import ConfigError
from medimp.train.objectives._base import ItemFields, Key, PretrainData
from medimp.train.objectives._registry import register_objective
from medimp.train.objectives.medimp import Medimp

__all__ = ["MedclipSoft"]


class MedclipSoftOptions(BaseModel):
    """Options of ``medclip_soft`` (``method_options``)."""

    model_config = ConfigDict(extra="forbid")

    sharpness: float = Field(10.0, gt=0, description="How fast a pair's target weight falls "
                             "with disagreement: a pair agreeing on no fact weighs "
                             "exp(-sharpness) of one agreeing on all.")


class _WithFacts(ItemFields):
    """The text objective's fields plus ``facts`` (the exam's binned facts, NaN = missing)."""

    def __init__(self, inner: ItemFields, facts: dict[Key, np.ndarray],
                 ordinal: np.ndarray) -> None:
        self.inner, self.facts = inner, facts
        self.ordinal = torch.as_tensor(ordinal, dtype=torch.bool)

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        return {**self.inner(index, patient_id, exam),
                "facts": torch.from_numpy(self.facts[(patient_id, exam)]),
                "facts_ordinal": self.ordinal}

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)


@register_objective
class MedclipSoft(Medimp):
    """``medimp`` with soft targets from the exams' clinical facts (``SoftClipLoss``)."""

    name = "medclip_soft"
    Options = MedclipSoftOptions

    def check(self) -> None:
        super().check()
        if self.config.loss.name != "clip":
            raise ConfigError(f"medclip_soft needs loss.name 'clip' (soft targets are a "
                              f"softmax over the batch), got {self.config.loss.name!r}")
        if self.config.loss.same_content_mask:
            raise ConfigError("medclip_soft makes exams with the same facts positives; "
                              "loss.same_content_mask (which drops them) contradicts it")

    def prepare(self, data: PretrainData) -> None:
        super().prepare(data)

        rows, self.ordinal = fact_matrix(self.prompt_study(data), data.cohort.exams,
                                         data.cohort.patients, data.keys)
        self.facts = {k: rows[j] for j, k in enumerate(data.keys)}

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        return _WithFacts(super().item_fields(data, keys), self.facts, self.ordinal)

    def build(self, embed_dim: int, **tower_args: Any) -> dict[str, nn.Module]:

        return {**self.build_towers(embed_dim, **tower_args),
                "loss_fn": SoftClipLoss(sharpness=self.options.sharpness)}

    def loss(self, model: Any, embeddings: dict[str, torch.Tensor],
             batch: dict[str, Any]) -> torch.Tensor:

        a, b = embeddings["image"], embeddings["text"]
        groups = batch["patient_idx"].to(a.device).long()
        facts = batch["facts"].to(a.device).float()
        if is_distributed():
            from medimp.models.distributed import gather_no_grad, gather_with_grad

            a, b = gather_with_grad(a), gather_with_grad(b)
            groups, facts = gather_no_grad(groups), gather_no_grad(facts)
        sim = fact_similarity(facts, batch["facts_ordinal"][0].to(a.device))
        return model.loss_fn(a, b, groups=groups if self.config.loss.patient_mask else None,
                             similarity=sim)
