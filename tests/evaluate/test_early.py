"""The "exams up to day D" evaluation level (docs/evaluate.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimp.evaluate import EvaluationError
from medimp.evaluate.early import exams_up_to_day


def _tables():
    exams = pd.DataFrame({"patient_id": ["A", "A", "A", "B"], "exam": ["D15", "D30", "M3", "M3"],
                          "days_post_transplant": [14, 31, 90, np.nan]})
    emb = pd.DataFrame({"patient_id": ["A", "A", "A", "B"], "exam": ["D15", "D30", "M3", "M3"],
                        "level": "exam", "e0": [1.0, 3.0, 100.0, 7.0], "e1": [0.0, 2.0, 50.0, 1.0]})
    return emb, exams


def test_keeps_exams_up_to_the_day_and_recomputes_patient_rows() -> None:
    emb, exams = _tables()
    out, missing = exams_up_to_day(emb, exams, 31, nominal={"M3": 91})
    assert missing == ["B"]
    a = out[out["patient_id"] == "A"]
    assert sorted(a[a["level"] == "exam"]["exam"]) == ["D15", "D30"]
    mean = a[a["level"] == "patient"][["e0", "e1"]].to_numpy()[0]
    np.testing.assert_allclose(mean, [2.0, 1.0])
    latest = a[a["level"] == "patient_latest"]
    assert latest["exam"].tolist() == ["D30"]
    # B had no exam by day 31 (its M3 is at the nominal 91): the label-free placeholder
    b = out[(out["patient_id"] == "B") & (out["level"] == "patient")][["e0", "e1"]].to_numpy()[0]
    np.testing.assert_allclose(b, [2.0, 1.0])
    later, missing = exams_up_to_day(emb, exams, 91, nominal={"M3": 91})
    assert missing == []
    assert (later["level"] == "exam").sum() == 4


def test_errors() -> None:
    emb, exams = _tables()
    with pytest.raises(EvaluationError, match="day 5"):
        exams_up_to_day(emb, exams, 5, nominal={"M3": 91})
    with pytest.raises(EvaluationError, match="days_post_transplant"):
        exams_up_to_day(emb, exams, 31)  # B's M3 has no day and no nominal day
