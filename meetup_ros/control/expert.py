"""The expert that labels governor training states: a time-to-collision rule.

stop      time to collision below ``stop_ttc_s`` (closing on something close, fast), or
          the nearest depth below ``stop_clearance_m`` at any speed;
slow      time to collision below ``slow_ttc_s``, or turning faster than ``max_yaw_rate_radps``
          (the camera cannot see where it goes), or faster than ``max_speed_mps``;
continue  otherwise.

Time to collision = nearest depth ahead / forward speed (infinite when not closing). With
the defaults, nearest depth <= 1.0 m and forward speed >= 0.5 m/s give a time to
collision <= 2 s < ``slow_ttc_s``, so the expert itself never says "continue" where the
governor's property forbids it, with a margin of 1 s.

The clearance rule is there because the time to collision uses the current speed and the
advisories are commands: "continue" sends 1.0 m/s and "slow" 0.3 m/s
(``advisory_speeds_mps``). From rest (time to collision infinite) in front of a wall 0.1 m
away the speed rule said "continue", and the vehicle would have hit it within 0.1 s. Below
``stop_clearance_m`` (0.75 m) only "stop" moves nothing towards the obstacle; the clearance
property (``config/governor_clearance_property.yaml``, depth <= 0.5 m: "stop" on top) keeps a
0.25 m margin to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meetup_ros.control import ControlError
from meetup_ros.control.state import STATE_NAMES

CONTINUE, SLOW, STOP = 0, 1, 2


@dataclass(frozen=True)
class ExpertRule:
    stop_ttc_s: float = 1.0
    slow_ttc_s: float = 3.0
    max_yaw_rate_radps: float = 1.0
    max_speed_mps: float = 2.5
    min_closing_speed_mps: float = 0.05
    stop_clearance_m: float = 0.75

    def labels(self, states: np.ndarray) -> np.ndarray:
        """``(N, 5)`` states -> ``(N,)`` int64 advisories (0 continue, 1 slow, 2 stop)."""
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or states.shape[1] != len(STATE_NAMES):
            raise ControlError(f"states must be (N, {len(STATE_NAMES)}), got {states.shape!r}")
        forward, lateral, vertical, yaw_rate, depth = states.T
        closing = np.maximum(forward, 0.0)
        with np.errstate(divide="ignore"):
            ttc_s = np.where(closing > self.min_closing_speed_mps, depth / closing, np.inf)
        speed = np.sqrt(forward**2 + lateral**2 + vertical**2)
        labels = np.full(states.shape[0], CONTINUE, dtype=np.int64)
        slow = (
            (ttc_s < self.slow_ttc_s)
            | (np.abs(yaw_rate) > self.max_yaw_rate_radps)
            | (speed > self.max_speed_mps)
        )
        labels[slow] = SLOW
        labels[(ttc_s < self.stop_ttc_s) | (depth < self.stop_clearance_m)] = STOP
        return labels
