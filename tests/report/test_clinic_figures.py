"""The calibration plot and the decision curve draw the evaluation's own tables."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from PIL import Image
from scipy.special import expit

from medimp.evaluate.calibration import calibration_table, decision_curve
from medimp.report.figures import calibration_plot, decision_curve_plot


def _tables():
    rng = np.random.default_rng(0)
    p = expit(rng.normal(-0.6, 1.2, 200))
    y = (rng.random(200) < p).astype(int)
    shrunk = 0.5 * p + 0.2
    cal = pd.concat([calibration_table(y, [p[None]]).assign(task="status_y2", method="good"),
                     calibration_table(y, [shrunk[None]]).assign(task="status_y2",
                                                                 method="shrunk")])
    dca = pd.concat([decision_curve(y, [p[None]]).assign(task="status_y2", method="good"),
                     decision_curve(y, [shrunk[None]]).assign(task="status_y2",
                                                             method="shrunk")])
    return cal, dca


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_calibration_plot_and_decision_curve_are_pngs():
    cal, dca = _tables()
    one = _image(calibration_plot(cal, ["status_y2"], {("status_y2", "good"): (0.02, 0.98)}))
    two = _image(calibration_plot(cal, ["status_y2", "status_y3"]))  # a task without rows
    assert one.format == two.format == "PNG"
    assert two.size[0] > one.size[0]  # one panel per task
    curve = _image(decision_curve_plot(dca, ["status_y2", "status_y3"]))
    assert curve.format == "PNG" and curve.size[0] > 300
