"""Tabular encoder: NaN handling with missing-value indicators."""

from __future__ import annotations

import math

import pytest
import torch

from medimp.models import ModelError
from medimp.models.tabular import create_tabular_encoder


def test_missing_values_are_zero_filled_and_flagged():
    torch.manual_seed(0)
    enc = create_tabular_encoder(3, 5, hidden=(8,))
    first = enc.net[0]
    assert first.in_features == 6  # 3 values + 3 indicators
    x = torch.tensor([[1.0, math.nan, 0.5], [1.0, 0.0, 0.5]])
    y = enc(x)
    assert y.shape == (2, 5)
    assert torch.isfinite(y).all()
    # "missing" differs from an observed 0 only through its indicator
    assert not torch.allclose(y[0], y[1])
    no_ind = create_tabular_encoder(3, 5, hidden=(8,), missing_indicators=False)
    y2 = no_ind(x)
    assert torch.allclose(y2[0], y2[1])
    y.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_wrong_width_is_clear():
    enc = create_tabular_encoder(4, 2)
    with pytest.raises(ModelError, match=r"\[B, 4\]"):
        enc(torch.zeros(2, 3))
