"""Labels of "poor graft status at K years" follow docs/design.md ("Labels") exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimp.evaluate import EvaluationError, make_labels, survival_table
from tests.evaluate.conftest import write_cohort


@pytest.fixture
def cohort(tmp_path):
    root = write_cohort(tmp_path / "c", n_patients=6)
    pats = pd.read_csv(root / "patients.csv", dtype={"patient_id": str})
    nan = np.nan
    # egfr_y2, graft_loss, graft_loss_days, followup_days
    cases = [
        (30.0, 0, nan, 1500.0),   # P000 eGFR below 45 -> poor (egfr)
        (70.0, 0, nan, 1500.0),   # P001 eGFR above -> good
        (nan, 1, 400.0, 400.0),   # P002 lost before 2 y, no eGFR -> poor (graft_loss)
        (60.0, 1, 900.0, 900.0),  # P003 lost after 2 y (730.5 d) -> status from eGFR: good
        (nan, 0, nan, 500.0),     # P004 no eGFR, no loss -> unknown
        (45.0, 0, nan, 1500.0),   # P005 exactly at threshold -> good (below is poor)
    ]
    for i, (e, gl, gld, fu) in enumerate(cases):
        pats.loc[i, ["egfr_y2", "graft_loss", "graft_loss_days", "followup_days"]] = [
            e, gl, gld, fu]
    pats.to_csv(root / "patients.csv", index=False)
    return root


def test_label_rules(cohort) -> None:
    lab = make_labels(cohort, 2).set_index("patient_id")
    assert lab["label"].tolist() == [1, 0, 1, 0, -1, 0]
    assert lab["known"].tolist() == [True, True, True, True, False, True]
    assert lab.loc["P002", "reason"] == "graft_loss"
    assert lab.loc["P004", "reason"] == "unknown"


def test_threshold_is_configurable(cohort) -> None:
    lab = make_labels(cohort, 2, threshold=65).set_index("patient_id")
    assert lab.loc["P003", "label"] == 1  # eGFR 60 < 65
    assert lab.loc["P001", "label"] == 0  # eGFR 70


def test_unknown_horizon_is_a_clear_error(cohort) -> None:
    with pytest.raises(EvaluationError, match="horizon 7"):
        make_labels(cohort, 7)


def test_survival_table(cohort) -> None:
    s = survival_table(cohort).set_index("patient_id")
    assert s.loc["P002", "event"] == 1 and s.loc["P002", "time_days"] == 400
    assert s.loc["P000", "event"] == 0 and s.loc["P000", "time_days"] == 1500


def test_poor_status_survival(cohort) -> None:
    pats = pd.read_csv(cohort / "patients.csv", dtype={"patient_id": str})
    pats["egfr_y3"] = [50.0, 40.0, np.nan, 60.0, np.nan, 70.0]
    pats["egfr_y4"] = [np.nan, 30.0, np.nan, np.nan, np.nan, 50.0]
    pats.to_csv(cohort / "patients.csv", index=False)
    s = survival_table(cohort, event="poor_status").set_index("patient_id")
    day = 365.25
    assert (s.loc["P000", "event"], s.loc["P000", "time_days"]) == (1, 2 * day)  # y2 eGFR 30
    assert (s.loc["P001", "event"], s.loc["P001", "time_days"]) == (1, 3 * day)  # first poor
    assert (s.loc["P002", "event"], s.loc["P002", "time_days"]) == (1, 400)  # graft loss
    assert (s.loc["P003", "event"], s.loc["P003", "time_days"]) == (1, 900)  # lost after y2
    assert "P004" not in s.index  # never observed
    assert (s.loc["P005", "event"], s.loc["P005", "time_days"]) == (0, 4 * day)  # last seen
    with pytest.raises(ValueError, match="unknown survival event"):
        survival_table(cohort, event="death")
