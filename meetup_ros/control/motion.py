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

import bisect
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


class _Entry(NamedTuple):
    stamp_ns: int
    T: np.ndarray  # (4, 4) pose
    speed: float
    rate: float
    # running sums from the first message held: path, rotation, integrated speed and rate,
    # so that a bound since any stamp is one difference (the controller asks at 20 Hz)
    totals: np.ndarray  # (4,)


class MotionHistory:
    """The last ``maxlen`` odometry messages: stamp, pose, speed and angular rate."""

    def __init__(self, maxlen: int, max_gap_s: float = 0.2) -> None:
        self._items: deque[_Entry] = deque(maxlen=maxlen)
        self.max_gap_ns = int(max_gap_s * 1e9)

    def clear(self) -> None:
        self._items.clear()

    def add(self, stamp_ns: int, T_odom_base: np.ndarray, v_base_mps: np.ndarray,
            omega_base_radps: np.ndarray) -> None:
        T = np.array(T_odom_base, dtype=np.float64)
        speed = float(np.linalg.norm(v_base_mps))
        rate = float(np.linalg.norm(omega_base_radps))
        totals = np.zeros(4)
        if self._items:
            last = self._items[-1]
            dt = max(0.0, (int(stamp_ns) - last.stamp_ns) * 1e-9)
            totals = last.totals + np.array([
                float(np.linalg.norm(T[:3, 3] - last.T[:3, 3])),
                _angle(last.T[:3, :3], T[:3, :3]),
                0.5 * (last.speed + speed) * dt,
                0.5 * (last.rate + rate) * dt,
            ])
        self._items.append(_Entry(int(stamp_ns), T, speed, rate, totals))

    def since(self, stamp_ns: int, now_ns: int) -> Motion:
        """Upper bounds of the distance and the rotation between ``stamp_ns`` and ``now_ns``
        (the newest message's time, normally ``now_ns``)."""
        items = self._items
        # the last message at or before the stamp, if it is close enough to stand for it
        start = bisect.bisect_right(items, stamp_ns, key=lambda e: e.stamp_ns) - 1
        if start >= 0 and stamp_ns - items[start].stamp_ns <= self.max_gap_ns:
            path, rotation, by_speed, by_rate = items[-1].totals - items[start].totals
            return Motion(max(path, by_speed), max(rotation, by_rate))
        age_s = max(0.0, (now_ns - stamp_ns) * 1e-9)
        after = [e for e in items if e.stamp_ns > stamp_ns]
        speed = max((e.speed for e in after), default=0.0)
        rate = max((e.rate for e in after), default=0.0)
        return Motion(speed * age_s, rate * age_s)
