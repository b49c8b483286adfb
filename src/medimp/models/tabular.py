"""Tabular encoder for the ``tabular_clip`` baseline (image–table contrastive, Hager et al. 2023).

Input: a float matrix ``[B, n_features]`` of clinical variables already encoded by the caller
(standardised numbers, one-hot categories), where a missing value is ``NaN``. The encoder replaces
each NaN by 0 and appends one 0/1 missing-value indicator per feature, so the MLP sees
``[B, 2 * n_features]`` and can tell "missing" from "average"; with ``missing_indicators=False``
NaNs are only zero-filled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medimp.models._errors import ModelError

__all__ = ["TabularEncoder", "create_tabular_encoder"]


class TabularEncoder(nn.Module):
    """MLP over NaN-filled features and their missing-value indicators."""

    def __init__(
        self,
        n_features: int,
        embed_dim: int,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.0,
        missing_indicators: bool = True,
    ) -> None:
        super().__init__()
        if n_features < 1 or embed_dim < 1:
            raise ModelError(f"n_features and embed_dim must be >= 1, got {n_features}, "
                             f"{embed_dim}")
        self.n_features = int(n_features)
        self.missing_indicators = missing_indicators
        self.num_features = int(embed_dim)
        layers: list[nn.Module] = []
        prev = n_features * (2 if missing_indicators else 1)
        for h in hidden:
            layers += [nn.Linear(prev, int(h)), nn.LayerNorm(int(h)), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            prev = int(h)
        layers.append(nn.Linear(prev, embed_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed ``[B, n_features]`` (NaN = missing) to ``[B, embed_dim]``."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ModelError(f"tabular encoder expects [B, {self.n_features}] features, got "
                             f"{list(x.shape)}")
        x = x.float()
        missing = torch.isnan(x)
        filled = torch.where(missing, torch.zeros_like(x), x)
        if self.missing_indicators:
            filled = torch.cat([filled, missing.to(filled.dtype)], dim=1)
        return self.net(filled)


def create_tabular_encoder(
    n_features: int, embed_dim: int, hidden: Sequence[int] = (64,), *, dropout: float = 0.0,
    missing_indicators: bool = True,
) -> TabularEncoder:
    """An MLP for clinical tables with NaN → 0 + missing-indicator input (see module docs)."""
    return TabularEncoder(n_features, embed_dim, hidden=tuple(hidden), dropout=dropout,
                          missing_indicators=missing_indicators)
