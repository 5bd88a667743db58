"""How far the vehicle may have moved and turned since a stamp, from its recent odometry.

A depth image says where obstacles were when it was taken; the controller holds it for up to
``depth_max_age_s``. An obstacle ``d`` ahead then is at least ``d - distance`` away now (the
triangle inequality), and only while the camera still looks the same way. Both figures are
upper bounds from two sources, whichever is larger, so that neither a wrong pose nor a wrong
twist alone can hide motion (a tester found each):

- the path: the sum of the steps between consecutive odometry positions, and of the angles
  between consecutive orientations. A straight line from then to now would shrink when the
  estimator resets its pose to the origin; the path grows by the jump instead.
- the twist: the speed and the angular rate integrated over the same messages, which also
  covers a source that fills the twist but not the pose.

With no odometry at (or ``max_gap_s`` before) the stamp, the largest speed and rate seen
since times the age bound it.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np


class Motion(NamedTuple):
    distance_m: float
    rotation_rad: float


def _angle(Ra: np.ndarray, Rb: np.ndarray) -> float:
    """Angle of the rotation between two rotation matrices (rad)."""
    cos = (float(np.trace(Ra.T @ Rb)) - 1.0) / 2.0
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


class MotionHistory:
    """The last ``maxlen`` odometry messages: stamp, pose, speed and angular rate."""

    def __init__(self, maxlen: int, max_gap_s: float = 0.2) -> None:
        self._items: deque[tuple[int, np.ndarray, float, float]] = deque(maxlen=maxlen)
        self.max_gap_ns = int(max_gap_s * 1e9)

    def clear(self) -> None:
        self._items.clear()

    def add(self, stamp_ns: int, T_odom_base: np.ndarray, v_base_mps: np.ndarray,
            omega_base_radps: np.ndarray) -> None:
        self._items.append((int(stamp_ns), np.array(T_odom_base, dtype=np.float64),
                            float(np.linalg.norm(v_base_mps)),
                            float(np.linalg.norm(omega_base_radps))))

    def since(self, stamp_ns: int, now_ns: int) -> Motion:
        """Upper bounds of the distance and the rotation between ``stamp_ns`` and ``now_ns``
        (the newest message's time, normally ``now_ns``)."""
        items = list(self._items)
        start = None
        for i in range(len(items) - 1, -1, -1):
            if items[i][0] <= stamp_ns:
                if stamp_ns - items[i][0] <= self.max_gap_ns:
                    start = i
                break
        age_s = max(0.0, (now_ns - stamp_ns) * 1e-9)
        if start is None:
            after = [it for it in items if it[0] > stamp_ns]
            speed = max((it[2] for it in after), default=0.0)
            rate = max((it[3] for it in after), default=0.0)
            return Motion(speed * age_s, rate * age_s)
        path = rotation = by_speed = by_rate = 0.0
        for (t0, T0, v0, w0), (t1, T1, v1, w1) in zip(items[start:], items[start + 1:],
                                                      strict=False):
            dt = max(0.0, (t1 - t0) * 1e-9)
            path += float(np.linalg.norm(T1[:3, 3] - T0[:3, 3]))
            rotation += _angle(T0[:3, :3], T1[:3, :3])
            by_speed += 0.5 * (v0 + v1) * dt
            by_rate += 0.5 * (w0 + w1) * dt
        return Motion(max(path, by_speed), max(rotation, by_rate))
