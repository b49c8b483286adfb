"""``tabular_clip``: the image vs an MLP of the prompts' clinical variables (Hager et al. 2023).

The clinical features are the same variables the prompts state, under the same leakage rule (a
value not known at an exam is missing there), standardised with training-patient statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.functional import normalize

from medimp.models import create_tabular_encoder
from medimp.train.datamodule import TabularFeaturizer
from medimp.train.objectives._base import ContrastiveObjective, ItemFields, Key, PretrainData
from medimp.train.objectives._registry import register_objective

__all__ = ["TabularClip"]


class _Rows(ItemFields):
    """``tabular``: the exam's clinical feature row (float32)."""

    def __init__(self, rows: dict[Key, np.ndarray]) -> None:
        self.rows = rows

    def __call__(self, index: int, patient_id: str, exam: str) -> dict[str, Any]:
        return {"tabular": torch.from_numpy(self.rows[(patient_id, exam)])}


@register_objective
class TabularClip(ContrastiveObjective):
    """Image vs tabular MLP, CLIP loss; towers: image + ``tabular_encoder``."""

    name = "tabular_clip"
    partner = "tabular"

    def prepare(self, data: PretrainData) -> None:

        # the only place that chooses the clinical feature builder
        self.featurizer = TabularFeaturizer(self.config.tabular.missing_indicator)
        self.featurizer.fit(data.cohort, data.train_keys)

    def item_fields(self, data: PretrainData, keys: Sequence[Key]) -> ItemFields:
        rows = self.featurizer.transform(data.cohort, keys)
        return _Rows({k: rows[j] for j, k in enumerate(keys)})

    def tower_args(self) -> dict[str, Any]:
        return {"n_tabular": int(self.featurizer.n_features)}

    def metadata(self) -> dict[str, Any]:
        return {"tabular": {"columns": self.featurizer.columns_,
                            "stats": self.featurizer.stats_}}

    def build_towers(self, embed_dim: int, n_tabular: int = 0,
                     **tower_args: Any) -> dict[str, nn.Module]:

        if n_tabular < 1:
            raise ValueError("tabular_clip needs at least one clinical variable")
        # the featurizer already standardised, filled and flagged missing values
        return {"tabular_encoder": create_tabular_encoder(n_tabular, embed_dim,
                                                          missing_indicators=False)}

    def embed(self, model: Any, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        img = model.encode_image(batch["image"])
        return {"image": img,
                "tabular": normalize(model.tabular_encoder(batch["tabular"]).float(), dim=-1)}
