"""The speed governor's input: body speeds, yaw rate and the nearest depth ahead.

Axes come from the camera that sees ahead: forward is cam0's optical axis, up is cam0's
-y (image up), left is up x forward, all expressed in the base (EuRoC body = IMU) frame.
On EuRoC, cam0 looks along body +z and body +x points up, the defaults here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meetup_ros.control import ControlError

STATE_NAMES: tuple[str, ...] = (
    "forward_speed_mps",
    "lateral_speed_mps",
    "vertical_speed_mps",
    "yaw_rate_radps",
    "nearest_depth_m",
)
ADVISORIES: tuple[str, ...] = ("continue", "slow", "stop")

# The operating envelope the governor is trained and verified over (lower, upper per state).
ENVELOPE_LOWER = np.array([-0.5, -1.5, -1.0, -1.5, 0.1])
ENVELOPE_UPPER = np.array([3.0, 1.5, 1.0, 1.5, 10.0])


@dataclass(frozen=True)
class StateAxes:
    """Unit vectors in the base frame: forward (camera optical axis) and up."""

    forward_base: tuple[float, ...] = (0.0, 0.0, 1.0)
    up_base: tuple[float, ...] = (1.0, 0.0, 0.0)

    def matrix(self) -> np.ndarray:
        """Rows forward, left, up: ``(3, 3)`` mapping base-frame vectors onto state axes."""
        forward = np.asarray(self.forward_base, dtype=np.float64)
        up = np.asarray(self.up_base, dtype=np.float64)
        if forward.shape != (3,) or up.shape != (3,):
            raise ControlError(f"axes must be 3-vectors, got {forward!r} and {up!r}")
        for name, axis in (("forward", forward), ("up", up)):
            # a zero or non-finite axis has no direction: dividing by its norm gave NaN axes
            if not (np.all(np.isfinite(axis)) and np.any(axis != 0)):
                raise ControlError(
                    f"{name} axis {axis.tolist()!r} is not a direction: expected a finite, "
                    "non-zero 3-vector")
        forward, up = forward / np.abs(forward).max(), up / np.abs(up).max()  # no overflow
        forward = forward / np.linalg.norm(forward)
        # Remove any forward component from up so the three axes are orthonormal.
        up = up - forward * float(forward @ up)
        norm = np.linalg.norm(up)
        if norm < 1e-6:
            raise ControlError(f"up axis {self.up_base!r} is parallel to forward {forward!r}")
        up = up / norm
        left = np.cross(up, forward)
        return np.stack([forward, left, up])


def nearest_depth_m(
    depth_m: np.ndarray,
    *,
    window_fraction: float = 0.5,
    percentile: float = 5.0,
    min_valid_fraction: float = 0.02,
) -> float:
    """A robust nearest depth ahead: a low percentile of valid depths in a central window.

    Args:
        depth_m: ``(H, W)`` depth in metres, NaN or <= 0 where invalid.
        window_fraction: the central window's height and width as fractions of the image.
        percentile: which low percentile (a minimum would follow a single outlier).
        min_valid_fraction: fewer valid pixels than this fraction of the window -> NaN.

    Returns:
        The depth in metres, or NaN when the window holds too few valid pixels.
    """
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise ControlError(f"depth_m must be (H, W), got shape {depth_m.shape!r}")
    if not 0.0 < window_fraction <= 1.0 or not 0.0 <= percentile <= 100.0:
        raise ControlError(
            f"window_fraction {window_fraction!r} must be in (0, 1] and percentile "
            f"{percentile!r} in [0, 100]"
        )
    height, width = depth_m.shape
    win_h = max(1, round(height * window_fraction))
    win_w = max(1, round(width * window_fraction))
    top, left = (height - win_h) // 2, (width - win_w) // 2
    window = depth_m[top: top + win_h, left: left + win_w]
    valid = window[np.isfinite(window) & (window > 0)]
    if valid.size < max(1, min_valid_fraction * window.size):
        return float("nan")
    return float(np.percentile(valid, percentile))


def build_state(
    v_base_mps: np.ndarray,
    omega_base_radps: np.ndarray,
    nearest_depth: float,
    axes: StateAxes | None = None,
) -> np.ndarray:
    """The ``(5,)`` state in the order of :data:`STATE_NAMES`.

    Args:
        v_base_mps: linear velocity of the base in the base frame, ``(3,)``.
        omega_base_radps: angular velocity in the base frame, ``(3,)``.
        nearest_depth: metres ahead (from :func:`nearest_depth_m`); must be finite.
        axes: forward and up in the base frame (EuRoC's by default).
    """
    v = np.asarray(v_base_mps, dtype=np.float64).reshape(-1)
    w = np.asarray(omega_base_radps, dtype=np.float64).reshape(-1)
    finite = bool(np.all(np.isfinite(v)) and np.all(np.isfinite(w)))
    if v.shape != (3,) or w.shape != (3,) or not finite:
        raise ControlError(
            f"velocities must be finite 3-vectors, got v_base_mps={v!r}, omega_base_radps={w!r}"
        )
    if not np.isfinite(nearest_depth):
        raise ControlError(f"nearest_depth {nearest_depth!r} is not finite")
    A = (axes or StateAxes()).matrix()
    forward, left, up = A @ v
    yaw_rate = float(A[2] @ w)
    return np.array([forward, left, up, yaw_rate, float(nearest_depth)], dtype=np.float64)


def state_sigma(twist_covariance: np.ndarray, axes: StateAxes | None = None) -> np.ndarray:
    """One-sigma of the first four state values from a 6x6 twist covariance (base frame).

    The depth's sigma is 0 here: its uncertainty enters the region through the configured
    radius (the depth image carries no per-pixel variance on the wire).
    """
    cov = np.asarray(twist_covariance, dtype=np.float64)
    if cov.shape != (6, 6):
        raise ControlError(f"twist_covariance must be 6x6, got shape {cov.shape!r}")
    if not np.all(np.isfinite(cov)):
        raise ControlError(f"twist_covariance has non-finite entries (diagonal "
                           f"{np.diag(cov).tolist()!r}): the state's uncertainty is unknown")
    if np.any(np.diag(cov) < 0):
        # No covariance has a negative variance: clipping it to 0 would shrink the region
        # (a tester's negative variance passed as "verified").
        raise ControlError(f"twist_covariance has negative variances {np.diag(cov).tolist()!r}")
    scale = max(float(np.abs(cov).max()), 1e-300)
    tolerance = 1e-9 * scale  # round-off of a valid covariance is far smaller
    if np.any(np.abs(cov - cov.T) > tolerance):
        raise ControlError("twist_covariance is not symmetric: not a covariance")
    for block, what in ((cov[:3, :3], "linear block"), (cov[3:, 3:], "angular block"),
                        (cov, "6x6 matrix")):
        # A tester's diagonal 1e-4 with off-diagonal 10 was read for its diagonal alone; a
        # second's cross terms between the blocks, 1.0 on variances of 1e-4.
        if float(np.linalg.eigvalsh(block).min()) < -tolerance:
            raise ControlError(f"twist_covariance's {what} is not positive semi-definite: "
                               "not a covariance")
    A = (axes or StateAxes()).matrix()
    lin = A @ cov[:3, :3] @ A.T
    ang = A[2] @ cov[3:, 3:] @ A[2]
    variances = np.array([lin[0, 0], lin[1, 1], lin[2, 2], ang, 0.0])
    unknown = [name for name, v in zip(STATE_NAMES[:4], variances[:4], strict=True) if v <= 0.0]
    if unknown:
        # Zero is no variance, not an exact value: a planar odometry leaves the axes it does
        # not estimate at 0 (ROS's 'unknown' for a whole matrix), and a tester's zero forward
        # variance alone certified the radii only.
        raise ControlError(
            f"twist_covariance gives no variance along {unknown} (0): that uncertainty is "
            "unknown, not zero (fill it in at the odometry, or set use_odometry_covariance "
            "false to size the region by the radii alone)")
    return np.sqrt(variances)


def advisory_command(scores: np.ndarray, speeds_mps: tuple[float, ...],
                     forward_base: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """The governor's command from its scores: ``(advisory index, linear (3,) m/s, angular
    (3,) rad/s)``, the top advisory's speed along the forward axis, no rotation. The one rule
    controller_node publishes and safety_monitor_node checks commands against."""
    top = int(np.argmax(scores))
    return top, np.asarray(forward_base, dtype=np.float64) * float(speeds_mps[top]), np.zeros(3)
