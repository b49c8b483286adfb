"""The paired comparison: verdicts only where earned, the interaction counted once, the
minimal detectable difference from the noncentral t, Holm, and sentences that read."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medimp.evaluate.compare import (
    NO_REPLICATES,
    ONE_RUN,
    holm,
    holm_verdicts,
    paired_comparison,
    verdict_sentence,
)
from medimp.evaluate.intervals import corrected_interval, minimal_detectable_difference


def _folds(rng, mean: float, runs: int, j: int = 25, sd: float = 0.05) -> np.ndarray:
    return rng.normal(mean, sd, (runs, j))


def test_one_pretraining_run_is_not_decided_however_large_the_difference() -> None:
    rng = np.random.default_rng(0)
    good, bad = _folds(rng, 0.85, 1), _folds(rng, 0.55, 1)
    pc = paired_comparison(good, bad, 0.25)
    assert pc.p_value < 1e-6 and pc.verdict == f"not decided: {ONE_RUN}"
    assert pc.low > 0  # the interval is still given, conditional on that run
    fixed = paired_comparison(good, bad, 0.25, learned=(False, False))
    assert fixed.verdict == f"not decided: {NO_REPLICATES}" and fixed.seed_variance == 0
    assert fixed.p_value < 1e-6  # measured liberal on noise: no verdict, however small p
    several = paired_comparison(_folds(rng, 0.85, 3), bad, 0.25, learned=(True, False))
    assert several.verdict == "better" and several.seed_variance > 0
    worse = paired_comparison(bad, _folds(rng, 0.85, 3), 0.25, learned=(False, True))
    assert worse.verdict == "worse"
    lower_better = paired_comparison(bad, _folds(rng, 0.85, 3), 0.25, learned=(False, True),
                                     higher_is_better=False)
    assert lower_better.verdict == "better"  # e.g. a Brier score or an MAE


def test_interaction_is_counted_once_so_the_interval_covers_at_its_level() -> None:
    """Values with run x fold noise only: the true variance of the mean is sd²/(R·J). Counting
    the interaction in both the run spread and the corrected fold variance covered 1.00 here
    (5-fold ratio 0.25); counted once, the interval is close to its level (slightly above:
    the seed part has R - 1 = 2 df)."""
    rng = np.random.default_rng(1)
    r, j, sd = 3, 25, 0.05
    intervals = [corrected_interval(rng.normal(0.7, sd, (r, j)), 0.25) for _ in range(2000)]
    covered = [iv.low <= 0.7 <= iv.high for iv in intervals]
    assert 0.93 <= np.mean(covered) <= 0.98, np.mean(covered)


def test_seed_variance_is_in_the_interval_with_its_few_degrees_of_freedom() -> None:
    rng = np.random.default_rng(2)
    folds = rng.normal(0.7, 0.05, 25)
    one = corrected_interval(folds, 0.25)
    spread = corrected_interval(np.stack([folds - 0.1, folds, folds + 0.1]), 0.25)
    assert spread.estimate == pytest.approx(one.estimate)
    assert spread.seed_sd == pytest.approx(0.1) and spread.se > one.se
    assert spread.df < 3  # dominated by 3 runs: about 2 df


@pytest.mark.parametrize("df", [3.0, 4.0, 10.0, 40.0])
def test_minimal_detectable_difference_has_80_percent_power(df: float) -> None:
    mdd = minimal_detectable_difference(1.0, df)
    rng = np.random.default_rng(3)
    n = 400_000  # t statistics of a true difference mdd with se 1 estimated on df
    t = (mdd + rng.normal(size=n)) / np.sqrt(rng.chisquare(df, n) / df)
    power = np.mean(np.abs(t) > stats.t.ppf(0.975, df))
    assert power == pytest.approx(0.8, abs=0.005)
    assert minimal_detectable_difference(1.0) == pytest.approx(2.80, abs=0.01)
    if df <= 4:
        assert mdd > 3.7  # a third more than the normal 2.8·SE


def test_holm_adjusts_step_down_and_verdicts_follow_it() -> None:
    assert np.allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([0.01, np.nan])[1]) and holm([0.01, np.nan])[0] == 0.01
    rng = np.random.default_rng(4)
    base = _folds(rng, 0.7, 1)
    close = [paired_comparison(base + 0.02 + rng.normal(0, 0.02, (3, base.shape[1])), base,
                               0.25, learned=(True, False)) for _ in range(6)]
    one_run = paired_comparison(base + 0.3, base, 0.25)
    family = holm_verdicts([*close, one_run])
    assert family[-1].p_holm is None and family[-1].verdict.endswith(ONE_RUN)
    for before, after in zip(close, family, strict=False):
        assert after.p_holm >= before.p_value
        assert after.decided == (after.p_holm < 0.05)


def test_sentences_read_naturally_when_nothing_is_decided() -> None:
    s = verdict_sentence("status_y4", "medimp", [
        ("clinical_only", "not decided: not significant (Holm p = 0.4)"),
        ("image_ssl", f"not decided: {ONE_RUN}"),
        ("oracle", "not decided: not significant (Holm p = 0.2)")])
    assert s == ("status_y4: nothing is decided (clinical_only and oracle: not significant; "
                 "image_ssl: one pretraining run).")
    assert "no method" not in s
    s = verdict_sentence("status_y2", "medimp", [("random_init", "better"),
                                                 ("oracle", "worse")])
    assert s == "status_y2: medimp is better than random_init; medimp is worse than oracle."
    s = verdict_sentence("status_y3", "medimp", [("random_init", "better"),
                                                 ("image_ssl", f"not decided: {ONE_RUN}")])
    assert s == ("status_y3: medimp is better than random_init; not decided against image_ssl "
                 "(one pretraining run).")
