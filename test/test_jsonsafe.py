"""Every JSON the project writes is strict JSON: a figure that could not be computed is null
(evaluate-vio and evaluate-visual printed bare NaN, which strict readers refuse)."""

from __future__ import annotations

import json

import numpy as np

from meetup_ros.evaluation.jsonsafe import finite_json


def test_non_finite_figures_become_null_and_numpy_scalars_python_ones() -> None:
    report = {"ate": float("nan"), "rpe": np.float32(0.5), 3: [np.inf, -np.inf, 1.0],
              "nested": {"x": (np.float64("nan"), np.int64(4))}}
    text = json.dumps(finite_json(report), allow_nan=False)  # raises on any NaN left
    assert json.loads(text) == {"ate": None, "rpe": 0.5, "3": [None, None, 1.0],
                                "nested": {"x": [None, 4]}}
