"""The minimal detectable difference terminates at very few degrees of freedom.

With 2 or 3 folds and one repeat (a quick look at a small cohort), the Satterthwaite degrees
of freedom of a paired comparison can fall below 1, where scipy's noncentral t returns NaN:
the search for the noncentrality must still end, with a finite value or infinity.
"""

from __future__ import annotations

import math

import pytest
from scipy import stats

from medimp.evaluate.intervals import minimal_detectable_difference


@pytest.mark.parametrize("df", [0.3, 0.7, 1.0, 1.5, 3.0])
def test_terminates_and_grows_as_df_shrinks(df: float) -> None:
    d = minimal_detectable_difference(1.0, df)
    assert d > minimal_detectable_difference(1.0, 50.0)
    assert math.isinf(d) or d > stats.t.ppf(0.975, df)


def test_power_is_eighty_percent_at_the_answer() -> None:
    df = 3.0
    d = minimal_detectable_difference(1.0, df)
    crit = stats.t.ppf(0.975, df)
    power = stats.nct.sf(crit, df, d) + stats.nct.cdf(-crit, df, d)
    assert power == pytest.approx(0.80, abs=1e-4)
