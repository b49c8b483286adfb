"""Brier score, logistic recalibration and net benefit, against hand-computed and simulated
cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from medimp.evaluate.calibration import (
    brier,
    calibration_fit,
    calibration_summary,
    calibration_table,
    decision_curve,
    net_benefit,
    treat_all,
)


def test_net_benefit_hand_computed():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.6, 0.2, 0.1])
    # t = 0.25: treated {0.9 (pos), 0.3 (pos), 0.6 (neg)} -> TP/n = 2/5, FP/n = 1/5,
    # NB = 0.4 - 0.2 * 0.25/0.75 = 1/3; treat all: 0.4 - 0.6 * 1/3 = 0.2
    # t = 0.5: treated {0.9, 0.6} -> 1/5 - 1/5 * 1 = 0; treat all: 0.4 - 0.6 = -0.2
    nb = net_benefit(y, p, [0.25, 0.5])
    assert nb == pytest.approx([1 / 3, 0.0])
    assert treat_all(y, [0.25, 0.5]) == pytest.approx([0.2, -0.2])
    curve = decision_curve(y, [np.stack([p, p])], [0.25, 0.5])
    assert curve["net_benefit"].tolist() == pytest.approx([1 / 3, 0.0])
    assert (curve["treat_none"] == 0).all()


def test_brier_hand_computed():
    assert brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)


def _draw(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(-0.5, 1.2, n))
    return (rng.random(n) < p).astype(int), p


def test_calibration_of_true_probabilities_and_of_overconfident_ones():
    y, p = _draw(6000, 0)
    fit = calibration_fit(y, p)
    assert abs(fit.intercept) < 3 * np.sqrt(fit.intercept_var)
    assert abs(fit.slope - 1) < 3 * np.sqrt(fit.slope_var)
    # risks twice as extreme on the logit scale: slope 1/2 (too extreme), intercept unchanged
    over = calibration_fit(y, expit(2 * logit(p)))
    assert over.slope == pytest.approx(0.5, abs=4 * np.sqrt(over.slope_var))
    # risks shifted down by 1 on the logit scale: intercept +1 (risks too low)
    low = calibration_fit(y, expit(logit(p) - 1))
    assert low.intercept == pytest.approx(1.0, abs=4 * np.sqrt(low.intercept_var))


def test_calibration_summary_interval_and_separation():
    y, p = _draw(400, 1)
    s = calibration_summary(y, [np.stack([p, p])])
    assert s.slope_low < 1 < s.slope_high
    assert s.intercept_low < 0 < s.intercept_high
    # perfectly separated predictions: no finite recalibration, reported as NaN
    sep = calibration_fit(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert np.isnan(sep.slope)


def test_calibration_table_groups_every_patient():
    y, p = _draw(300, 2)
    table = calibration_table(y, [np.stack([p, p])], n_bins=5)
    assert table["n"].sum() == 300
    assert (table["observed_low"] <= table["observed"]).all()
    assert (table["observed"] <= table["observed_high"]).all()
    # calibrated risks: the observed rate tracks the predicted one
    assert np.corrcoef(table["mean_predicted"], table["observed"])[0, 1] > 0.9
