"""Zero-velocity detection from a frame pair and its IMU window (a ZUPT for the estimator).

A visual-inertial estimator at rest drifts: whatever velocity error it has integrates into
position, and nothing in an unchanged image says "stop". When two consecutive frames are the
same picture, the camera has not moved, and the interval's increment can be set to zero.

"The same picture" is tested with phase correlation: the shift must be under ``max_shift_px``
and the correlation peak (1 for identical images up to a shift) above ``min_response``.
Measured on the real data in ``../shared/data`` at 376 px width: the EuRoC frames at rest
(rotors running, vibration) shift at most 0.39 px with peaks >= 0.98; every moving pair of
the KITTI and TUM sequences peaks at <= 0.86 (forward driving can shift < 0.1 px, which is
why the peak, not the shift alone, decides). The mean specific force must also be within
``max_accel_dev_mps2`` of g, so a frame pair that looks the same while the body accelerates
(a textureless view, an occluded lens) is not taken as rest. The mean angular rate, with
the gyro bias the caller knows subtracted, must be under ``max_gyro_radps``: a frozen or
stuck camera driver repeats the same picture while the body turns, and a tester's 0.5 rad/s
turn for 4.7 s was published as "at rest" at the identity. Unchanged frames say nothing about
rotation when the camera is not live, and the gyro measures it directly, so the gyro has the
last word. At rest with rotors running the EuRoC bag's bias-corrected window mean is at most
0.056 rad/s (the learned bias leaves about 0.035 rad/s of the true one on z).

Known limits: not checked on a hovering vehicle, whose frames can look unchanged for a moment
while it drifts slowly (the update then zeroes a small real motion); a moving object that
fills the view defeats the test; the texture check (``min_contrast``) keeps flat images out;
a turn slower than ``max_gyro_radps`` seen by a frozen camera is still zeroed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from meetup_ros.odometry.model import GRAVITY_MPS2  # the g the network and preintegration use


@dataclass(frozen=True)
class StationaryConfig:
    max_shift_px: float = 0.5
    min_response: float = 0.95
    max_accel_dev_mps2: float = 0.5
    min_contrast: float = 5.0  # grey-level standard deviation; flatter images say nothing
    # norm of the window's mean bias-corrected angular rate; 2.7x the at-rest maximum measured
    max_gyro_radps: float = 0.15


class StationaryDetector:
    """``is_stationary(image0, image1, accel, gyro)``: both frames the same picture, no
    acceleration, no rotation."""

    def __init__(self, config: StationaryConfig | None = None) -> None:
        self.config = config or StationaryConfig()
        self._window: np.ndarray | None = None

    def is_stationary(self, image0: np.ndarray, image1: np.ndarray,
                      accel_mps2: np.ndarray, gyro_radps: np.ndarray) -> bool:
        """``image0``, ``image1``: uint8 (H, W) of the same shape; ``accel_mps2``,
        ``gyro_radps``: (N, 3) of the interval, biases the caller knows subtracted."""
        cfg = self.config
        if image0.shape != image1.shape or len(accel_mps2) == 0 or len(gyro_radps) == 0:
            return False
        mean_rate = float(np.linalg.norm(np.asarray(gyro_radps, dtype=np.float64).mean(0)))
        if mean_rate > cfg.max_gyro_radps:
            return False
        mean_force = float(np.linalg.norm(np.asarray(accel_mps2, dtype=np.float64).mean(0)))
        if abs(mean_force - GRAVITY_MPS2) > cfg.max_accel_dev_mps2:
            return False
        a = image0.astype(np.float32)
        b = image1.astype(np.float32)
        if float(a.std()) < cfg.min_contrast or float(b.std()) < cfg.min_contrast:
            return False
        if self._window is None or self._window.shape != a.shape:
            self._window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(a, b, self._window)
        return bool(np.hypot(dx, dy) <= cfg.max_shift_px and response >= cfg.min_response)
