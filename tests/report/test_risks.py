"""Absolute risks: groups and threshold counts, checked against a hand-computed case and
against the out-of-fold predictions of a real evaluation."""

from __future__ import annotations

import pandas as pd
import pytest

from medimp.report.risks import patient_risks, risk_groups, threshold_table


def _hand_case() -> pd.DataFrame:
    # 8 patients: risks and outcomes chosen so that every count can be read off by eye
    return pd.DataFrame({"patient_id": list("abcdefgh"),
                         "risk": [0.05, 0.08, 0.2, 0.3, 0.4, 0.6, 0.9, 1.0],
                         "label": [0, 0, 1, 0, 1, 1, 1, 0]})


def test_threshold_counts_by_hand() -> None:
    t = threshold_table(_hand_case(), (0.1, 0.5)).set_index("threshold")
    # t = 0.1: called positive c..h (6): tp = c,e,f,g = 4, fp = d,h = 2; fn = 0; tn = a,b = 2
    row = t.loc[0.1]
    assert (row.tp, row.fp, row.fn, row.tn) == (4, 2, 0, 2)
    assert row.sensitivity == 1.0 and row.specificity == 0.5
    assert row.ppv == pytest.approx(4 / 6) and row.npv == 1.0
    # t = 0.5: f,g,h called positive: tp = f,g = 2, fp = h = 1, fn = c,e = 2, tn = a,b,d = 3
    row = t.loc[0.5]
    assert (row.tp, row.fp, row.fn, row.tn) == (2, 1, 2, 3)
    assert row.sensitivity == 0.5 and row.specificity == 0.75
    assert row.ppv == pytest.approx(2 / 3) and row.npv == pytest.approx(3 / 5)


def test_risk_groups_by_hand() -> None:
    g = risk_groups(_hand_case()).set_index("group")
    assert list(g.index) == ["0%–10%", "10%–25%", "25%–50%", "50%–75%", "75%–100%"]
    assert list(g["n"]) == [2, 1, 2, 1, 2] and list(g["events"]) == [0, 1, 1, 1, 1]
    assert g.loc["75%–100%", "mean_risk"] == pytest.approx(0.95)  # 1.0 is in the last group
    assert g.loc["25%–50%", "observed"] == 0.5
    lo, hi = g.loc["25%–50%", ["observed_low", "observed_high"]]
    assert lo < 0.5 < hi


def test_no_positive_call_leaves_ppv_undefined() -> None:
    t = threshold_table(_hand_case(), (1.01,))
    assert t.loc[0, "positives"] == 0 and t.loc[0, "ppv"] is None
    assert t.loc[0, "npv"] == pytest.approx(4 / 8)


def test_patient_risks_of_a_real_evaluation(eval_dir) -> None:
    pred = pd.read_parquet(eval_dir / "predictions.parquet")
    risks = patient_risks(pred, "status_y2", "medimp")
    sel = pred[(pred["task"] == "status_y2") & (pred["method"] == "medimp")]
    assert len(risks) == sel["patient_id"].nunique() > 0
    groups = risk_groups(risks)
    assert groups["n"].sum() == len(risks) and groups["events"].sum() == risks["label"].sum()
    t = threshold_table(risks)
    assert (t[["tp", "fp", "fn", "tn"]].sum(axis=1) == len(risks)).all()
    # a higher threshold never calls more patients positive
    assert t["positives"].is_monotonic_decreasing
