"""VioEstimator: the runtime API of the learned VIO (numpy in, numpy out; no ROS).

IMU samples go in at 200 Hz through :meth:`VioEstimator.add_imu` (validation and a queue
insert only); each camera frame through :meth:`VioEstimator.add_frame` closes an IMU window
(:mod:`meetup_ros.odometry.windowing`), runs the network once and composes the se(3)
increment onto ``T_odom_base`` with the exponential map. The odom frame is gravity-aligned
(z up) with the yaw of the first pose 0 and its origin at the first pose; base = EuRoC body =
IMU frame.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pypose as pp
import torch
from scipy.spatial.transform import Rotation

from meetup_ros.odometry.model import (
    GRAVITY_MPS2,
    MODEL_NAME,
    VioNet,
    VioNetConfig,
    gravity_attitude,
    image_pair_tensor,
    imu_sample_features,
    se3_exp,
    window_features,
)
from meetup_ros.odometry.stationary import StationaryDetector
from meetup_ros.odometry.windowing import (
    NS_PER_S,
    ImuWindow,
    ImuWindower,
    OdometryError,
    say_again,
)

logger = logging.getLogger(__name__)


# The tilt of a gravity initialisation that averaging cannot remove (the accelerometer bias
# left after the learned one, the ground truth's own alignment), per axis: the bundled EuRoC
# bag's 20-sample initialisation is 0.44 deg off its ground truth with a spread-only sigma of
# 0.04 deg, so 0.5 deg (one measurement, rounded up).
INIT_TILT_FLOOR_RAD = float(np.radians(0.5))


# Inertial-only steps of a camera outage: the 20 Hz frame interval the network was trained on.
OUTAGE_STEP_NS = 50_000_000
# Without images the rotation follows the gyro alone, whose bias the network knows only so
# well: its error grows at a steady rate, not as the square root of the steps' independent
# variances, which were 2-4x overconfident after 1-3 s without images on the held-out flight
# (0.0017 rad/s rms per axis there; 0.0007 rad/s in yaw over a 3 s outage at rest on the
# bundled bag). The flight's rate, rounded up:
GYRO_DRIFT_RADPS = 0.002

# The published twist is the interval's increment over its duration. Its covariance is not the
# increment's variance alone (which put the held-out flight's velocity errors at NEES 8.5,
# median, for a 95 % bound of 7.8, and its rate errors at 4.5 with outliers of 1000+):
# - the linear part is the filter's body velocity at the interval's start plus the IMU's
#   displacement, so the filter's own velocity variance is in it, TWIST_VELOCITY_VAR_SCALE
#   times (x1 left the flight's 3-dof NEES above 7.8 in 16 % of intervals, x2 in 2.7 %);
# - the angular part is the gyro's plus the network's learned residual, which departs from the
#   gyro by 0.007-0.019 rad/s rms per interval in flight, growing with the rate:
#   a floor of GYRO_DRIFT_RADPS plus TWIST_RATE_SCALE_ERROR of the rate's norm.
# The safety monitor sizes its region from this covariance; the wider rate sigma at rest
# (about 0.005 rad/s, was 0.002) took regions out of the ones it had certified until it proved
# each with a margin (runtime.py's `margin`, the monitor's `proof_margin`).
TWIST_VELOCITY_VAR_SCALE = 2.0
TWIST_RATE_SCALE_ERROR = 0.04

# The IMU rate of weights that do not record theirs ("imu_rate_hz", written by the trainer
# since it is measured there): the shipped models/vio.pt predates the record and was trained
# on EuRoC's 200 Hz IMU only.
UNRECORDED_IMU_RATE_HZ = 200.0
# The network takes each sample's dt as an input, but has seen one rate: on the held-out
# flight the 200 Hz IMU averaged to 100 Hz scored 0.963 m and interpolated to 400 Hz 1.022 m,
# against 0.783 m as recorded, without a word. A rate further off than this fraction is said
# (once) and counted; a 200 Hz IMU with a drifting clock is not.
IMU_RATE_TOLERANCE = 0.25
# Sample periods the measured rate is the median of before it is compared (0.1 s at 200 Hz):
# enough that a few late or bunched samples at the start cannot make a rate of their own.
IMU_RATE_MIN_PERIODS = 20


class ImuInitError(OdometryError):
    """The IMU samples meant for the gravity initialisation are not a body at rest."""


@dataclass(frozen=True)
class OdometryEstimate:
    """One pose estimate at a camera frame (covariances in ROS order x y z rx ry rz)."""

    stamp_ns: int
    T_odom_base: np.ndarray  # (4, 4) float64
    v_base_mps: np.ndarray  # (3,) body frame
    omega_base_radps: np.ndarray  # (3,) body frame
    pose_covariance: np.ndarray  # (6, 6), position in odom, rotation about odom axes
    twist_covariance: np.ndarray  # (6, 6), body frame
    imu_samples_used: int
    inertial_only: bool = False


@dataclass
class EstimatorStats:
    received: int = 0
    dropped: int = 0
    used: int = 0
    pending: int = 0
    late_merged: int = 0
    discarded_on_reset: int = 0
    resets: int = 0
    frames: int = 0
    frames_dropped: int = 0
    inertial_only_windows: int = 0
    zero_velocity_updates: int = 0
    init_failures: int = 0
    clock_mismatches: int = 0
    frames_before_init: int = 0  # not estimated: the gravity initialisation's samples not there
    frames_too_close: int = 0  # dropped: too soon after the previous frame (also in dropped)
    gaps: int = 0  # IMU stretches without samples (upstream losses; windowing.GAP_PERIODS)
    samples_missing: int = 0
    # network steps with the IMU's measured rate off the weights' trained one (IMU_RATE_TOLERANCE)
    imu_rate_untrained: int = 0


def trained_imu_rate_hz(metadata: dict[str, Any], source: str = "the weights") -> float:
    """The IMU rate (Hz) the weights' ``metadata`` records they were trained on; weights that
    record none are the shipped ones, trained on EuRoC's 200 Hz (``UNRECORDED_IMU_RATE_HZ``).

    Raises:
        OdometryError: the record is there but not a rate.
    """
    rate = metadata.get("imu_rate_hz")
    if rate is None:
        return UNRECORDED_IMU_RATE_HZ
    if (isinstance(rate, bool) or not isinstance(rate, int | float)
            or not np.isfinite(rate) or rate <= 0):
        raise OdometryError(f"{source}: metadata imu_rate_hz = {rate!r}, expected the IMU "
                            "rate in Hz (> 0) they were trained on")
    return float(rate)


def _rotation_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    return np.asarray(pp.SO3(torch.as_tensor(q_xyzw, dtype=torch.float64)).matrix().numpy())


class VioEstimator:
    """Multi-rate LSTM VIO over one camera and one IMU.

    Args:
        model: the network (eval mode is set here).
        imu_rate_hz: nominal IMU rate.
        gravity_init_samples: IMU samples averaged for the initial roll and pitch.
        max_frame_gap_s: with no frame for this long, the queued IMU samples are consumed in
            an inertial-only step, so a camera outage neither fills the queue nor loses them;
            a frame this far past the newest IMU sample is dropped as a clock mismatch.
            Measured in IMU stamps, so it must exceed the camera's latency behind its IMU:
            at 0.25 s a camera 0.3 s late had every frame dropped.
        max_outage_s: an IMU stamp further than this past the last frame is not a camera
            outage but clocks that disagree: no inertial-only step then (it would move the
            last frame stamp past every coming frame, and each would reset the estimator).
        reset_backwards_s: a stamp this far back on either stream resets the estimator.
        min_frame_interval_s: a camera frame sooner than this after the previous one is dropped
            (counted, logged): the network was trained on 20 Hz frames, about 10 IMU samples
            an interval, and on a frame resent 1 ms later (no IMU sample in between) it made
            up an increment that, divided by 1 ms, was published as a 1.24 rad/s yaw rate at
            rest. The dropped frame's IMU samples go to the next frame's window. An interval
            of a normal length without IMU samples (an IMU gap) is still estimated. 20 ms,
            under half the trained interval: a second camera 12 ms after the first on one
            topic turned the pose 6.75 deg at rest at 10 ms; a 40 Hz camera is kept whole,
            a faster one decimated.
        bias_gyro_radps, bias_accel_mps2: IMU biases subtracted from every sample.
        metadata: the weights' metadata; its ``imu_rate_hz`` is the rate the network was
            trained on (200 Hz where none is recorded). An IMU whose measured rate is more
            than ``IMU_RATE_TOLERANCE`` off it is warned of once and counted
            (``stats.imu_rate_untrained``), not refused: the odometry is not validated there.
        zero_velocity_update: set an interval's increment to zero when its two frames are the
            same picture and the body neither accelerates nor turns (:mod:`.stationary`); the
            network alone drifts about 1 cm/s at rest.
    """

    def __init__(
        self,
        model: VioNet,
        *,
        imu_rate_hz: float = 200.0,
        gravity_init_samples: int = 20,
        max_frame_gap_s: float = 1.0,
        max_outage_s: float = 5.0,
        reset_backwards_s: float = 0.5,
        min_frame_interval_s: float = 0.02,
        bias_gyro_radps: np.ndarray | None = None,
        bias_accel_mps2: np.ndarray | None = None,
        metadata: dict[str, Any] | None = None,
        zero_velocity_update: bool = True,
    ) -> None:
        if gravity_init_samples < 1:
            raise OdometryError(
                f"gravity_init_samples = {gravity_init_samples!r}, expected >= 1"
            )
        if not max_frame_gap_s > 0:
            raise OdometryError(f"max_frame_gap_s = {max_frame_gap_s!r}, expected > 0")
        self.model = model.eval()
        self.metadata = dict(metadata or {})
        self.trained_imu_rate_hz = trained_imu_rate_hz(self.metadata)
        self._trained_rate_recorded = "imu_rate_hz" in self.metadata
        self.imu_rate_hz = float(imu_rate_hz)
        self.gravity_init_samples = int(gravity_init_samples)
        self.max_frame_gap_ns = int(max_frame_gap_s * NS_PER_S)
        self.max_outage_ns = int(max_outage_s * NS_PER_S)
        self.reset_backwards_ns = int(reset_backwards_s * NS_PER_S)
        if not min_frame_interval_s >= 0:
            raise OdometryError(
                f"min_frame_interval_s = {min_frame_interval_s!r}, expected >= 0")
        self.min_frame_interval_ns = int(min_frame_interval_s * NS_PER_S)
        self.bias_gyro = np.zeros(3) if bias_gyro_radps is None else np.asarray(
            bias_gyro_radps, dtype=np.float64).reshape(3)
        self.bias_accel = np.zeros(3) if bias_accel_mps2 is None else np.asarray(
            bias_accel_mps2, dtype=np.float64).reshape(3)
        cfg = model.config
        self.image_hw = (cfg.image_height, cfg.image_width)
        self.windower = ImuWindower(imu_rate_hz, reset_backwards_s=reset_backwards_s)
        self._frames = 0
        self._frames_dropped = 0
        self._inertial_only = 0
        self._zupts = 0
        self._init_failures = 0
        self._clock_mismatches = 0
        self.last_clock_mismatch = ""
        self._too_close = 0
        self._before_init = 0
        self.last_too_close = ""  # the newest frame dropped as too close, with both stamps
        self._rate_untrained = 0
        self._said_rate = False  # the untrained IMU rate warned of (once an estimator)
        self.last_rate_untrained = ""  # the newest such rate, with the trained one
        self.stationary = StationaryDetector() if zero_velocity_update else None
        # the gyro bias the estimator knows: the configured one and the network's learned one
        self._gyro_bias = self.bias_gyro + model.bias_gyro_radps.detach().double().numpy()
        self._clear()
        self._warm_up()

    def _warm_up(self) -> None:
        """Run each part of a step once on dummy input: torch's first call costs ~0.25 s,
        OpenCV's first phase correlation ~6 ms and numpy's first SVD ~1 ms more, which would
        otherwise land on the first real frames (the first step after initialisation took
        14.7 ms instead of 6.5, one of the two slowest frames that set the node's p99)."""
        n = round(self.imu_rate_hz / 20)
        window = ImuWindow(0, 0, np.arange(n, dtype=np.int64), np.zeros((n, 3)),
                           np.tile([0.0, 0.0, 9.81], (n, 1)), np.full(n, 1 / self.imu_rate_hz))
        image = np.zeros((2 * self.image_hw[0], 2 * self.image_hw[1]), dtype=np.uint8)
        for _ in range(2):
            self._infer(window, image, image)
            self._infer(window, None, None)
        if self.stationary is not None:
            texture = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
            self.stationary.is_stationary(texture, texture, window.accel_mps2,
                                          window.gyro_radps)
        np.linalg.svd(np.eye(3))
        se3_exp(np.full(6, 1e-3))
        self._core_state = self.model.initial_state(1)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_weights(cls, path: str | Path, **cfg: Any) -> VioEstimator:
        """Load ``models/vio.pt`` (weights-only file written by the trainer).

        Raises:
            OdometryError: the file is missing, unreadable, not VIO weights, or does not fit.
        """
        from meetup_ros.training.checkpoint import CheckpointError, load_weights

        path = Path(path)
        try:
            state_dict, metadata = load_weights(path)
        except CheckpointError as exc:
            raise OdometryError(str(exc)) from None
        if metadata.get("model") != MODEL_NAME:
            raise OdometryError(
                f"weights file {str(path)!r} is not odometry weights: its metadata names "
                f"model {metadata.get('model')!r} (kind {metadata.get('kind')!r}), expected "
                f"{MODEL_NAME!r}"
            )
        try:
            config = VioNetConfig.from_dict(dict(metadata.get("config", {})))
        except OdometryError as exc:
            raise OdometryError(f"weights file {str(path)!r}: {exc}") from None
        model = VioNet(config)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise OdometryError(
                f"weights file {str(path)!r} does not fit the network {config!r}: {exc}"
            ) from None
        cfg.setdefault("metadata", metadata)
        trained_imu_rate_hz(dict(cfg["metadata"] or {}), f"weights file {str(path)!r}")
        return cls(model, **cfg)

    # -- state ---------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._initialised = False
        # The newest gravity_init_samples readings: the attitude at the first frame.
        self._init_accel: deque[np.ndarray] = deque(maxlen=self.gravity_init_samples)
        self._said_waiting = False  # "waiting for the initialisation's samples" said once
        self._T_odom_base = np.eye(4)
        self._pose_cov = np.zeros((6, 6))
        self._drift_std = np.zeros(3)  # see _add_velocity_drift
        self._rot_drift_std = 0.0  # see _add_rotation_drift
        self._zupt_rotation = np.zeros(3)  # see _step: the rotation the updates zeroed
        self._last_step_inertial = False  # the last step was a camera-outage step
        self._core_state = self.model.initial_state(1)
        self._last_frame_ns: int | None = None
        self._last_pair_image: np.ndarray | None = None

    def reset(self, reason: str) -> None:
        """Start over (pose at the origin, attitude from gravity again); the windower's reset
        logs the reason (one line a reset, throttled)."""
        self.windower.reset(reason)
        self._clear()

    def initialise(self, stamp_ns: int, T_odom_base: np.ndarray,
                   v_odom_mps: np.ndarray | None = None) -> None:
        """Start from a known pose and velocity (e.g. ground truth) instead of gravity at rest.

        Args:
            stamp_ns: the stamp of that state; IMU samples up to it are discarded.
            T_odom_base: (4, 4) pose; v_odom_mps: (3,) velocity in the odom frame (default 0).
        """
        self._T_odom_base = np.asarray(T_odom_base, dtype=np.float64).copy()
        v_body = np.zeros(3) if v_odom_mps is None else (
            self._T_odom_base[:3, :3].T @ np.asarray(v_odom_mps, dtype=np.float64))
        self._core_state = self.model.initial_state(1, torch.as_tensor(v_body)[None])
        self._drift_std = np.zeros(3)
        self._rot_drift_std = 0.0
        self._zupt_rotation = np.zeros(3)
        self._initialised = True
        self._last_frame_ns = int(stamp_ns)
        self.windower.take(int(stamp_ns))  # samples before the start are not ours

    @property
    def initialised(self) -> bool:
        return self._initialised

    @property
    def init_samples(self) -> int:
        """IMU samples there for the gravity initialisation (of ``gravity_init_samples``)."""
        return len(self._init_accel)

    @property
    def stats(self) -> EstimatorStats:
        w = self.windower.stats
        return EstimatorStats(
            received=w.received, dropped=w.dropped, used=w.used, pending=self.windower.pending,
            late_merged=w.late_merged, discarded_on_reset=w.discarded_on_reset,
            resets=w.resets, frames=self._frames, frames_dropped=self._frames_dropped,
            inertial_only_windows=self._inertial_only,
            zero_velocity_updates=self._zupts, init_failures=self._init_failures,
            clock_mismatches=self._clock_mismatches, frames_too_close=self._too_close,
            frames_before_init=self._before_init,
            gaps=w.gaps,
            samples_missing=w.samples_missing,
            imu_rate_untrained=self._rate_untrained,
        )

    # -- input ---------------------------------------------------------------------------------
    def add_imu(self, stamp_ns: int, gyro_radps: np.ndarray, accel_mps2: np.ndarray) -> None:
        """Queue one IMU sample (cheap: checks and an ordered insert)."""
        accepted = self.windower.add(stamp_ns, gyro_radps, accel_mps2)
        if self.windower.reset_happened:
            self._clear()
        if not accepted:
            return
        if not self._initialised:
            self._init_accel.append(np.asarray(accel_mps2, dtype=np.float64).reshape(3))
        oldest = self.windower.oldest_pending_ns
        ahead_ns = None if self._last_frame_ns is None else int(stamp_ns) - self._last_frame_ns
        if ahead_ns is None or oldest is None or ahead_ns <= self.max_frame_gap_ns:
            return
        if ahead_ns <= self.max_outage_ns:
            # camera outage: consume what is queued without images
            self._outage_steps(int(stamp_ns))
            self._inertial_only += 1
        # Further ahead the clocks disagree: no step; add_frame drops and counts the frames.

    def _outage_steps(self, end_ns: int) -> None:
        """Inertial-only steps up to ``end_ns``, each about the frame interval the network
        was trained on (``OUTAGE_STEP_NS``).

        One 1 s window (200 samples, where it saw about 10) came out with a variance that
        put a 3 s camera outage at rest 9 sigma off in position and 64 sigma in yaw;
        evaluate-vio's inertial-only run, whose covariance is checked against the error in
        flight, steps the same way. Cost: 20 inferences (about 0.1 s on one core) a second of
        outage, in the call that found it.
        """
        last = self._last_frame_ns
        assert last is not None
        steps = max(1, round((end_ns - last) / OUTAGE_STEP_NS))
        for k in range(1, steps + 1):
            self._step(last + (end_ns - last) * k // steps, None)
        # The next frame's pair would span the outage, its IMU window the last step only.
        self._last_pair_image = None

    def add_frame(self, stamp_ns: int, image: np.ndarray | None) -> OdometryEstimate | None:
        """Close the IMU window at this frame and estimate the pose (None until initialised).

        ``image`` None runs the inertial-only mode for this interval.

        Raises:
            OdometryError: the image is not uint8 (H, W).
        """
        stamp_ns = int(stamp_ns)
        if image is not None and (not isinstance(image, np.ndarray) or image.dtype != np.uint8
                                  or image.ndim != 2):
            raise OdometryError(
                f"image at {stamp_ns} ns is {type(image).__name__} "
                f"{getattr(image, 'dtype', None)} {getattr(image, 'shape', None)!r}, "
                "expected uint8 (H, W)"
            )
        if self._last_frame_ns is not None and stamp_ns <= self._last_frame_ns:
            if (stamp_ns < self._last_frame_ns - self.reset_backwards_ns
                    and not self._last_step_inertial):
                self.reset(f"frame stamp {stamp_ns} ns is before the previous "
                           f"{self._last_frame_ns} ns (time went back)")
            else:
                # Behind the previous frame, or behind an inertial-only step the IMU ran
                # ahead to (a camera lagging its IMU): that stretch is estimated already.
                self._frames_dropped += 1
                newest_imu = self.windower.newest_ns
                behind_ns = None if newest_imu is None else newest_imu - stamp_ns
                if (self._last_step_inertial and behind_ns is not None
                        and behind_ns > self.max_frame_gap_ns):
                    # Frames still come, stamped this far behind the IMU: the "camera outage"
                    # that made the inertial-only step was the IMU's clock running ahead (a
                    # tester's +2 s IMU clock was logged as an outage, then 94 frames "not
                    # after the previous frame", nothing about clocks).
                    self._clock_mismatch(
                        f"frame at {stamp_ns} ns is {behind_ns / NS_PER_S:.3f} s behind the "
                        f"newest IMU sample at {newest_imu} ns: the IMU stamps run "
                        f"{behind_ns / NS_PER_S:.3f} s ahead of the frames (the inertial-only "
                        f"step to {self._last_frame_ns} ns was no camera outage)")
                    return None
                if say_again(self._frames_dropped):
                    logger.warning(
                        "frame at %d ns is not after the previous %s at %d ns; dropped "
                        "(%d so far)", stamp_ns,
                        "inertial-only step" if self._last_step_inertial else "frame",
                        self._last_frame_ns, self._frames_dropped)
                return None
        # After the time-went-back check: a bag loop's first frames arrive before its IMU and
        # must reset the estimator (emptying the windower), not be taken for a clock mismatch.
        newest_imu = self.windower.newest_ns
        mismatch = None
        if newest_imu is not None and newest_imu - stamp_ns > self.max_outage_ns:
            # The IMU runs far ahead of this frame: its window would be empty, and the network
            # never ran on images without IMU. No estimate until the clocks agree.
            mismatch = f"{(newest_imu - stamp_ns) / NS_PER_S:.3f} s behind"
        elif newest_imu is not None and stamp_ns - newest_imu > self.max_frame_gap_ns:
            # The frame is far ahead of the IMU (a camera clock ahead, or an IMU that stopped):
            # the window would miss most of its interval. Estimated from what there was, a
            # camera 10 s ahead published a 0.45 m jump at rest. No estimate until it catches up.
            mismatch = f"{(stamp_ns - newest_imu) / NS_PER_S:.3f} s ahead of"
        if mismatch is not None:
            self._frames_dropped += 1
            self._clock_mismatch(f"frame at {stamp_ns} ns is {mismatch} the newest IMU sample "
                                 f"at {newest_imu} ns", " or the IMU stopped")
            return None
        if (image is not None and self._initialised and self._last_frame_ns is not None
                and stamp_ns - self._last_frame_ns < self.min_frame_interval_ns):
            # A frame resent, or a second camera on the topic: nothing the network can
            # estimate, and a rate from it would be divided by almost nothing. Camera frames
            # only: a caller's inertial-only frame (image None) is asked for at its stamp, as
            # evaluate-vio's first ground-truth stamp a few ms after its start state.
            self._frames_dropped += 1
            self._too_close += 1
            window_n = self.windower.count_until(stamp_ns)
            self.last_too_close = (
                f"frame at {stamp_ns} ns is {(stamp_ns - self._last_frame_ns) / 1e6:.3f} ms "
                f"after the previous one at {self._last_frame_ns} ns ({window_n} IMU "
                f"sample(s) between), expected >= {self.min_frame_interval_ns / 1e6:g} ms")
            if say_again(self._too_close):
                logger.warning("%s (%d so far): a resent frame or two cameras on one topic? "
                               "dropped", self.last_too_close, self._too_close)
            return None
        self._frames += 1
        if not self._initialised:
            n = len(self._init_accel)
            if n < self.gravity_init_samples:
                # One sample (all there was at the first frame) tilted the odom frame 23 deg
                # under 2 m/s^2 of vibration: the average needs its samples. Said once a start
                # (a camera without IMU waits for good; the node's diagnostics count it).
                self._before_init += 1
                if not self._said_waiting:
                    self._said_waiting = True
                    logger.info("frame at %d ns: %d of the %d IMU samples the gravity "
                                "initialisation averages are there; frames are not estimated "
                                "until they are", stamp_ns, n, self.gravity_init_samples)
                self._last_pair_image = image
                return None
            # The network subtracts its learned accelerometer bias from every sample; the
            # attitude must come from the same corrected readings, or the bias that tilted
            # the gravity estimate is subtracted a second time and integrates into drift.
            learned_bias = self.model.bias_accel_mps2.detach().double().numpy()
            accel = np.asarray(self._init_accel) - self.bias_accel - learned_bias
            try:
                q = gravity_attitude(accel)
            except OdometryError as exc:
                # Start over with fresh samples: a few bad ones must not block the start.
                self._init_accel.clear()
                self._said_waiting = False
                self._init_failures += 1
                self.windower.take(stamp_ns)
                self._last_pair_image = image
                raise ImuInitError(
                    f"gravity initialisation from {n} IMU sample(s) failed ({exc}); "
                    "retrying with the next samples"
                ) from None
            self._T_odom_base = np.eye(4)
            self._T_odom_base[:3, :3] = _rotation_matrix(q)
            self._pose_cov = self._initial_covariance(accel)
            self._initialised = True
            self._last_frame_ns = stamp_ns
            self._last_pair_image = image
            window = self.windower.take(stamp_ns)
            tilt_std = np.degrees(np.sqrt(np.diag(self._pose_cov)[3:5]))
            logger.info("VIO initialised at %d ns from gravity (%d IMU samples averaged, tilt "
                        "sigma %.2f / %.2f deg about odom x / y; %d before the first frame "
                        "not integrated)", stamp_ns, n, tilt_std[0], tilt_std[1], len(window))
            return self._estimate(stamp_ns, np.zeros(6), np.zeros(6), 1.0, len(window), False)
        if (self._last_step_inertial and self._last_frame_ns is not None
                and stamp_ns - self._last_frame_ns > 2 * OUTAGE_STEP_NS):
            # The first frame after an outage: the rest of the outage (under max_frame_gap_s)
            # in steps too, not one window of up to 200 samples.
            self._outage_steps(stamp_ns - OUTAGE_STEP_NS)
        return self._step(stamp_ns, image)

    def _initial_covariance(self, accel: np.ndarray) -> np.ndarray:
        """The pose covariance of a gravity initialisation from ``accel`` (N, 3), corrected.

        Position and yaw are 0 by the odom frame's definition (1e-9: ROS readers take an
        all-zero covariance as unknown). Roll and pitch come from the mean of N readings: a
        horizontal specific-force error e tilts the estimate by e / g, so each tilt variance is
        the spread of the readings along the other horizontal odom axis over g^2, plus the
        accelerometer bias left after the learned one, which no averaging removes
        (``INIT_TILT_FLOOR_RAD``). N is the readings' effective number, N (1 - rho) /
        (1 + rho) with rho their lag-1 autocorrelation: white vibration averages out as 1/N,
        but the readings of a swaying body are correlated and their mean is hardly better
        than one of them (a tester's 1-2 Hz sway of 2 m/s^2 tilted the start 7-11 deg under a
        claimed 0.5-0.9 with N = 20). Known limit: a sway much slower than the 0.1 s of the
        average is a near-constant offset to it, indistinguishable from tilt, so the sigma can
        still be low; start at rest.
        """
        R = self._T_odom_base[:3, :3]
        horizontal = (accel @ R.T)[:, :2]  # readings in the odom frame: x, y
        n = len(accel)
        spread = horizontal.var(axis=0, ddof=1) if n > 1 else np.zeros(2)
        n_eff = np.full(2, float(n))
        if n > 2:
            centred = horizontal - horizontal.mean(axis=0)
            lag1 = (centred[1:] * centred[:-1]).sum(axis=0)
            rho = np.clip(lag1 / np.maximum((centred * centred).sum(axis=0), 1e-30), 0.0, 0.999)
            n_eff = np.maximum(1.0, n * (1.0 - rho) / (1.0 + rho))
        tilt_var = spread[::-1] / (n_eff[::-1] * GRAVITY_MPS2**2) + INIT_TILT_FLOOR_RAD**2
        return np.diag([1e-9, 1e-9, 1e-9, tilt_var[0], tilt_var[1], 1e-9])

    # -- one interval --------------------------------------------------------------------------
    def _step(self, stamp_ns: int, image: np.ndarray | None) -> OdometryEstimate:
        assert self._last_frame_ns is not None
        window = self.windower.take(stamp_ns)
        self._check_imu_rate()
        duration_s = max((stamp_ns - self._last_frame_ns) / NS_PER_S, 1e-3)
        inertial_only = image is None or self._last_pair_image is None
        # the filter's body-velocity variance at the interval's start: the twist's velocity
        var_v = self._core_state[3][0].detach().double().numpy().copy()
        xi, var = self._infer(window, self._last_pair_image, image)
        previous = self._last_pair_image
        phi = xi[3:].copy()  # the network's rotation, before an update zeroes it
        at_rest = False
        # The gyro as the network sees it (the configured and the learned bias subtracted):
        # unchanged frames while it reads a turn are a frozen camera, not a body at rest, and
        # zeroing the increment then erased a real 0.5 rad/s turn. A zero-velocity update
        # constrains the velocity; the rotation is zeroed with it only because the gyro agrees.
        if (self.stationary is not None and image is not None and previous is not None
                and len(window) > 0
                and self.stationary.is_stationary(previous, image,
                                                  window.accel_mps2 - self.bias_accel,
                                                  window.gyro_radps - self._gyro_bias)):
            # The network still ran, so its recurrent state has seen this interval.
            xi = np.zeros(6)
            at_rest = True
            if self._zupts == 0:
                logger.info("at rest (unchanged frames, no acceleration, no rotation): "
                            "zero-velocity updates on")
            self._zupts += 1
        if at_rest:
            # The update zeroes the rotation the network (gyro) measured, up to the detector's
            # max_gyro_radps: the vibration's wobble at rest (the bundled bag's ground truth
            # turns up to 0.15 deg and back). What it zeroed is in the attitude's error until it
            # comes back, so the published covariance carries it (odom axes, see _estimate).
            self._zupt_rotation += self._T_odom_base[:3, :3] @ phi
        if np.any(xi):  # Exp(0) = I: at rest (zero-velocity updates) nothing to compose
            self._T_odom_base = self._T_odom_base @ se3_exp(xi)
        # Renormalise the rotation so float round-off cannot accumulate over long runs.
        u, _, vt = np.linalg.svd(self._T_odom_base[:3, :3])
        self._T_odom_base[:3, :3] = u @ vt
        R = self._T_odom_base[:3, :3]
        rot6 = np.zeros((6, 6))
        rot6[:3, :3] = R
        rot6[3:, 3:] = R
        self._pose_cov = self._pose_cov + rot6 @ np.diag(var) @ rot6.T
        self._add_velocity_drift(R, duration_s, at_rest)
        self._add_rotation_drift(duration_s, inertial_only)
        self._last_frame_ns = stamp_ns
        self._last_step_inertial = image is None
        if image is not None:
            self._last_pair_image = image
        # The twist's variance (body frame): see TWIST_VELOCITY_VAR_SCALE. At rest the
        # published twist is zero and its error the real motion the update zeroed: no filter
        # velocity in it, but the rotation rate the gyro measured.
        rate = phi / duration_s
        twist_var = np.asarray(var) / duration_s**2
        if not at_rest:
            twist_var[:3] += TWIST_VELOCITY_VAR_SCALE * var_v
        twist_var[3:] += (GYRO_DRIFT_RADPS**2
                          + (TWIST_RATE_SCALE_ERROR * float(np.linalg.norm(rate)))**2)
        if at_rest:
            twist_var[3:] += rate**2
        return self._estimate(stamp_ns, xi, var, duration_s, len(window), inertial_only,
                              twist_var)

    def _clock_mismatch(self, text: str, or_else: str = "") -> None:
        """Count a frame dropped because the camera and IMU clocks disagree, and say it."""
        self._clock_mismatches += 1
        self.last_clock_mismatch = text
        if say_again(self._clock_mismatches):
            logger.warning("%s (%d so far): the camera and IMU clocks disagree%s; dropped",
                           text, self._clock_mismatches, or_else)

    def _check_imu_rate(self) -> None:
        """Count a network step whose IMU runs at a rate the weights were not trained on
        (warned of once an estimator: the windows' measured rate, as gap detection uses it)."""
        measured = self.windower.measured_rate_hz(IMU_RATE_MIN_PERIODS)
        if measured is None:
            return
        rate_hz, periods = measured
        trained = self.trained_imu_rate_hz
        if abs(rate_hz / trained - 1.0) <= IMU_RATE_TOLERANCE:
            return
        self._rate_untrained += 1
        recorded = ("" if self._trained_rate_recorded
                    else " (EuRoC's: they record no rate)")
        self.last_rate_untrained = (
            f"IMU rate {rate_hz:.1f} Hz (median of its last {periods} sample periods) is "
            f"{rate_hz / trained - 1.0:+.0%} off the {trained:g} Hz the VIO weights were "
            f"trained on{recorded}, expected within {IMU_RATE_TOLERANCE:.0%}")
        if not self._said_rate:
            self._said_rate = True
            logger.warning("%s: the odometry is not validated at this rate (on the held-out "
                           "EuRoC flight, 100 Hz and 400 Hz scored 23 %% and 30 %% worse than "
                           "200 Hz); estimating anyway, each step counted as "
                           "imu_rate_untrained", self.last_rate_untrained)

    def _add_velocity_drift(self, R: np.ndarray, duration_s: float, at_rest: bool) -> None:
        """Grow the position covariance by the velocity filter's uncertainty, integrated.

        The increments' own variances are per interval and independent, but a velocity error
        persists from interval to interval, so the position error it makes grows linearly in
        time, not as its square root: measured on the held-out flight without images, the
        per-interval variances alone put the error at 13-18x the covariance after 1 s and
        50-140x after 2-5 s. The filter's body-velocity standard deviation is integrated as a
        fully correlated error (``_drift_std``, per odom axis) until a zero-velocity update
        says the velocity is known again.
        """
        if at_rest:
            self._drift_std = np.zeros(3)
            return
        var_v = self._core_state[3][0].detach().double().numpy()
        std_odom = np.sqrt(np.diag(R @ np.diag(var_v) @ R.T))
        grown = self._drift_std + std_odom * duration_s
        self._pose_cov[:3, :3] += np.diag(grown**2 - self._drift_std**2)
        self._drift_std = grown

    def _add_rotation_drift(self, duration_s: float, inertial_only: bool) -> None:
        """Grow the rotation covariance over a stretch without images (GYRO_DRIFT_RADPS).

        The gyro's residual bias is a fully correlated error within the stretch, so its
        standard deviation (``_rot_drift_std``, per odom axis) grows linearly in time; a step
        with images ends the stretch (the network sees the rotation again), and what has
        built up stays in the covariance: a heading error is not undone.
        """
        if not inertial_only:
            self._rot_drift_std = 0.0
            return
        grown = self._rot_drift_std + GYRO_DRIFT_RADPS * duration_s
        self._pose_cov[3:, 3:] += np.eye(3) * (grown**2 - self._rot_drift_std**2)
        self._rot_drift_std = grown

    def _infer(
        self, window: ImuWindow, image0: np.ndarray | None, image1: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        gyro = window.gyro_radps - self.bias_gyro
        accel = window.accel_mps2 - self.bias_accel
        # scipy, not pp.mat2SO3: the same xyzw quaternion for a tenth of the time per frame
        q_xyzw = torch.from_numpy(Rotation.from_matrix(self._T_odom_base[:3, :3]).as_quat())
        feats = imu_sample_features(gyro, accel, window.dt_s)
        h, w = self.image_hw
        use_images = image0 is not None and image1 is not None
        with torch.no_grad():
            aux = window_features(
                torch.as_tensor(gyro)[None], torch.as_tensor(accel)[None],
                torch.as_tensor(window.dt_s)[None], q_xyzw[None],
            )
            if use_images:
                assert image0 is not None and image1 is not None
                pair = torch.from_numpy(image_pair_tensor(image0, image1, h, w))[None, None]
            else:
                pair = torch.zeros(1, 1, 3, h, w)
            imu = torch.from_numpy(feats)[None, None]
            if imu.shape[2] == 0:
                imu = torch.zeros(1, 1, 1, feats.shape[1])
            xi, logvar, self._core_state, _ = self.model(
                imu, torch.tensor([[len(window)]]), pair,
                torch.tensor([[1.0 if use_images else 0.0]]), aux[:, None], self._core_state,
            )
        return (xi[0, 0].double().numpy(), np.exp(logvar[0, 0].double().numpy()))

    def _estimate(
        self, stamp_ns: int, xi: np.ndarray, var: np.ndarray, duration_s: float, used: int,
        inertial_only: bool, twist_var: np.ndarray | None = None,
    ) -> OdometryEstimate:
        if twist_var is None:
            twist_var = np.asarray(var) / duration_s**2
        twist_cov = np.diag(twist_var) if np.any(twist_var) else np.eye(6) * 1e-6
        pose_cov = self._pose_cov.copy()
        # the rotation zero-velocity updates zeroed (see _step), per odom axis
        pose_cov[3:, 3:] += np.diag(self._zupt_rotation**2)
        if not np.any(pose_cov):
            pose_cov = np.eye(6) * 1e-9  # a known start; ROS readers treat all-zero as unknown
        return OdometryEstimate(
            stamp_ns=stamp_ns,
            T_odom_base=self._T_odom_base.copy(),
            v_base_mps=np.asarray(xi[:3]) / duration_s,
            omega_base_radps=np.asarray(xi[3:]) / duration_s,
            pose_covariance=pose_cov,
            twist_covariance=twist_cov,
            imu_samples_used=used,
            inertial_only=inertial_only,
        )
