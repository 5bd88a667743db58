"""vio_node: learned visual-inertial odometry on camera frames and IMU at their own rates.

Subscribes ``/imu0`` (sensor_msgs/Imu, reliable, queue >= 200 so 200 Hz survives a slow
frame) and ``/cam0/image_raw`` (mono8/rgb8/bgr8). Every IMU sample goes to the estimator
(``odometry.estimator.VioEstimator``), which windows them between frames; each frame yields
an estimate published as ``/odom`` (nav_msgs/Odometry, covariance filled) and, where tf2_ros
is installed, TF odom -> base_link. Time going back on either stream (a bag played in a loop)
resets the estimator; bad messages are logged with the topic and dropped.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import Image, Imu

from meetup_ros import paths
from meetup_ros.odometry.estimator import EstimatorStats, ImuInitError, VioEstimator
from meetup_ros.odometry.windowing import OdometryError
from meetup_ros.ros import RosInputError
from meetup_ros.ros.convert import image_to_mono8, imu_to_arrays, odometry_msg, stamp_to_ns
from meetup_ros.ros.node_tools import (
    MAX_TIMER_PERIOD_S,
    SENSOR_RELIABILITY,
    NodeHealth,
    check_realtime_priority,
    limit_cpu_threads,
    make_tf_broadcaster,
    realtime_priority_param,
    reliable_qos,
    sensor_events,
    sensor_qos,
    spin_node,
    transform_msg,
)
from meetup_ros.ros.params import check_param, declare_parameters, param

NODE_NAME = "vio_node"
SIZE_CHANGE_FRAMES = 20  # 1 s at 20 Hz of frames of one new size before it is taken


@dataclass(frozen=True)
class VioParams:
    weights_path: str = param("vio.pt", "VIO weights (models/ if relative)")
    image_topic: str = param("cam0/image_raw", "camera input (mono8, rgb8 or bgr8)")
    imu_topic: str = param("imu0", "IMU input (sensor_msgs/Imu)")
    odom_topic: str = param("odom", "odometry output (nav_msgs/Odometry)")
    imu_queue_depth: int = param(
        2000, "IMU subscription depth (>= 200): 10 s of 200 Hz held through a stall"
    )
    image_queue_depth: int = param(100, "image subscription depth (5 s at 20 Hz)")
    sensor_reliability: str = param(
        "reliable", "QoS of the IMU and image subscriptions: 'reliable' (lossless from "
                    "reliable publishers) or 'best_effort' (also matches drivers that publish "
                    "best effort, ROS's sensor-data profile)"
    )
    image_height: int = param(0, "expected image height (px); 0 = take the first image's")
    image_width: int = param(0, "expected image width (px); 0 = take the first image's")
    odom_frame: str = param("odom", "frame_id of /odom")
    base_frame: str = param("base_link", "child_frame_id of /odom (EuRoC body = IMU)")
    publish_tf: bool = param(True, "broadcast odom -> base_link (where tf2_ros is installed)")
    imu_wait_s: float = param(
        1.0, "a frame waits at most this long (wall time) for the IMU to reach its stamp"
    )
    diagnostics_period_s: float = param(2.0, "period of /diagnostics (s); 0 disables")
    torch_threads: int = param(
        1, "CPU threads of torch, BLAS and OpenMP in this node's process (several nodes "
        "share few cores)"
    )
    zero_velocity_update: bool = param(
        True, "zero the increment when two frames are the same picture and the IMU sees no "
              "acceleration and no rotation (the network alone drifts ~1 cm/s at rest)"
    )
    realtime_priority: int = realtime_priority_param()


MAX_QUEUE_DEPTH = 200_000


class VioNode(Node):
    """Camera + IMU -> VioEstimator -> /odom (+ TF)."""

    def __init__(self, **node_kwargs: object) -> None:
        super().__init__(NODE_NAME, **node_kwargs)  # type: ignore[arg-type]
        self.params = declare_parameters(self, VioParams)
        p = self.params
        if p.imu_queue_depth < 200:
            raise RosInputError(
                f"imu_queue_depth {p.imu_queue_depth!r} < 200 would drop 200 Hz IMU samples"
            )
        # A DDS history sizes its buffers by the depth: a tester's 2e9 was taken as given.
        for name in ("imu_queue_depth", "image_queue_depth"):
            if not 1 <= getattr(p, name) <= MAX_QUEUE_DEPTH:
                raise RosInputError(f"{name} {getattr(p, name)!r}: expected 1 to "
                                    f"{MAX_QUEUE_DEPTH} messages (1000 s of a 200 Hz IMU)")
        # Each refused naming itself: an imu_wait_s of inf failed in the flush timer with
        # "cannot convert float infinity to integer".
        if not (math.isfinite(p.imu_wait_s) and 0 <= p.imu_wait_s <= MAX_TIMER_PERIOD_S):
            raise RosInputError(
                f"imu_wait_s {p.imu_wait_s!r}: expected a finite wait in [0, "
                f"{MAX_TIMER_PERIOD_S:g}] s (wall time a frame waits for its IMU window)")
        for name in ("image_queue_depth", "torch_threads"):
            check_param(p, getattr(p, name) >= 1, name, "an integer >= 1")
        check_realtime_priority(p)
        check_param(p, p.sensor_reliability in SENSOR_RELIABILITY, "sensor_reliability",
                    f"one of {SENSOR_RELIABILITY}")
        for name in ("image_height", "image_width"):
            check_param(p, getattr(p, name) >= 0, name,
                        "pixels > 0, or 0 to take the first image's")
        # One without the other was ignored without a word: the size is fixed only by both.
        for name, other in (("image_height", "image_width"), ("image_width", "image_height")):
            check_param(p, getattr(p, name) == 0 or getattr(p, other) > 0, name,
                        f"0 with {other} 0, or set with {other} (both fix the expected size; "
                        f"{other} is {getattr(p, other)!r})")
        # tf2 refuses such names only when a reader looks the transform up, far from here.
        for name in ("odom_frame", "base_frame"):
            value = getattr(p, name)
            check_param(p, bool(value) and not any(c.isspace() for c in value)
                        and not value.startswith("/"), name,
                "a tf2 frame name: not empty, no spaces, no leading '/'")
        check_param(p, p.base_frame != p.odom_frame, "base_frame",
                    f"a frame other than odom_frame {p.odom_frame!r} (the odometry and TF "
                    "would be from that frame to itself)")
        # Oversubscribed intra-op threads made one 50 ms certificate take 2.4 s on 2 cores.
        cores = len(os.sched_getaffinity(0))
        if p.torch_threads > cores:
            self.get_logger().warning(
                f"torch_threads {p.torch_threads}: more than the {cores} core(s) this process "
                "may run on; the threads will wait for each other (expected <= "
                f"{cores}, and fewer where other nodes share them)")
        limit_cpu_threads(p.torch_threads)
        weights = paths.node_file(p.weights_path, "models")
        self.estimator = VioEstimator.from_weights(
            weights, zero_velocity_update=p.zero_velocity_update)
        self.health = NodeHealth(
            self, ["frame", "frame_cpu", "imu", "frame_wait_for_imu"], p.diagnostics_period_s
        )
        self.health.add_section("imu", self.estimator_stats)
        self._hw = (p.image_height, p.image_width) if p.image_height and p.image_width else None
        self._hw_fixed = self._hw is not None  # from the parameters: never re-learnt
        self._new_hw: tuple[int, int] | None = None  # a different size seen, and how often
        self._new_hw_count = 0
        self._seen: dict[str, int] = {}  # the estimator's counters at the last look
        self._frames: deque[tuple[int, np.ndarray, float]] = deque()
        self._imu_head_ns: int | None = None  # newest IMU stamp since the last jump back
        self._jump_ns = int(0.5e9)
        self.odom_pub = self.create_publisher(Odometry, p.odom_topic, reliable_qos(50))
        self.tf = make_tf_broadcaster(self) if p.publish_tf else None
        self.create_subscription(Imu, p.imu_topic, self._on_imu,
                                 sensor_qos(p.imu_queue_depth, p.sensor_reliability),
                                 event_callbacks=sensor_events(self.health, p.imu_topic))
        self.create_subscription(
            Image, p.image_topic, self._on_image,
            sensor_qos(p.image_queue_depth, p.sensor_reliability),
            event_callbacks=sensor_events(self.health, p.image_topic)
        )
        # Frames waiting for their IMU window are flushed on a wall-clock timer, so a camera
        # without IMU (or a stalled IMU) still gets through after imu_wait_s.
        self.create_timer(
            max(p.imu_wait_s / 2, 0.01), self._drain_frames,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self.get_logger().info(
            f"VIO on {p.image_topic} + {p.imu_topic} -> {p.odom_topic}; weights {weights}"
        )

    def _grew(self, stats: EstimatorStats, counter: str) -> bool:
        """Whether ``stats.<counter>`` (a snapshot of the estimator's) rose since the last
        look."""
        value = int(getattr(stats, counter))
        grew = value > self._seen.get(counter, 0)
        self._seen[counter] = value
        return grew

    def _check_resets(self, topic: str, stamp_ns: int) -> None:
        """Log what the estimator did with out-of-order input (it owns the policy)."""
        # One snapshot per call: this runs for every IMU sample (200 Hz), and ``stats``
        # builds a new record each time it is read.
        stats = self.estimator.stats
        if self._grew(stats, "resets"):
            self.health.problem(
                "resets", f"{topic} stamp {stamp_ns} ns: the estimator reset "
                f"({self.estimator.windower.last_reset_reason})",
            )
        if self._grew(stats, "dropped"):
            self.health.problem(
                "imu_rejected", f"{self.params.imu_topic} sample rejected "
                f"({self.estimator.windower.last_rejection})",
            )
        if self._grew(stats, "gaps"):
            self.health.problem(
                "imu_gaps", f"{self.params.imu_topic}: samples missing upstream before "
                f"{stamp_ns} ns ({stats.samples_missing} in {stats.gaps} gap(s) so far; never "
                "received, so not 'dropped'); the odometry integrates across them",
            )
        if self._grew(stats, "imu_rate_untrained"):
            text = (f"{self.params.imu_topic}: {self.estimator.last_rate_untrained}; the "
                    "odometry is not validated at this rate (estimated anyway)")
            # Every frame at such a rate counts (the imu section's imu_rate_untrained); said
            # once here, then kept as the status's WARN, as a log line a frame would flood.
            if self.health.counters["imu_rate_untrained"] == 0:
                self.health.problem("imu_rate_untrained", text)
            else:
                self.health.ongoing(text)
        if self._grew(stats, "inertial_only_windows"):
            self.health.problem(
                "camera_outage_steps", f"no {self.params.image_topic} frame for "
                f"{self.estimator.max_frame_gap_ns / 1e9:g} s of {self.params.imu_topic} "
                f"stamps (up to {stamp_ns} ns): a camera outage, or an IMU clock ahead of the "
                "camera's (frames that still come are then dropped as a clock mismatch); "
                "estimating without images, not published",
            )
        if self._grew(stats, "clock_mismatches"):
            self._grew(stats, "frames_dropped")  # dropped for this reason: said here
            self.health.problem(
                "clock_mismatch", f"{topic} stamp {stamp_ns} ns: {self.params.image_topic} "
                f"{self.estimator.last_clock_mismatch} (IMU on {self.params.imu_topic}; do "
                "their clocks agree, or has the IMU stopped?); frames dropped until they are "
                "not",
            )
        if self._grew(stats, "frames_too_close"):
            self._grew(stats, "frames_dropped")  # dropped for this reason: said here
            self.health.problem(
                "frames_too_close", f"{self.params.image_topic} "
                f"{self.estimator.last_too_close} (a resent frame, or two cameras on one "
                "topic?); dropped, its IMU samples go to the next frame",
            )
        if self._grew(stats, "frames_dropped"):
            self.health.problem(
                "frames_out_of_order", f"{topic} stamp {stamp_ns} ns not after the previous "
                "frame; dropped by the estimator",
            )

    def _on_imu(self, msg: Imu) -> None:
        p = self.params
        with self.health.latency["imu"].measure():
            try:
                stamp_ns, gyro_radps, accel_mps2 = imu_to_arrays(msg, topic=p.imu_topic)
            except RosInputError as exc:
                self.health.problem("bad_imu", f"dropped: {exc}")
                self._refused_imu(msg, str(exc))
                return
            if self._imu_head_ns is not None and stamp_ns < self._imu_head_ns - self._jump_ns:
                # A loop: frames still waiting belong to the previous pass.
                if self._frames:
                    self.health.problem(
                        "frames_dropped_at_time_jump",
                        f"{p.imu_topic} went back to {stamp_ns} ns: {len(self._frames)} "
                        "waiting frame(s) of the previous pass dropped",
                    )
                    self._frames.clear()
                self._imu_head_ns = None
            # Frames older than this sample have their whole IMU window: estimate them before
            # the sample goes in, so that after an IMU gap the estimator's camera-outage step
            # (at this sample's stamp) cannot overtake frames still waiting here.
            self._drain_frames(before_ns=stamp_ns)
            # Slightly late samples are merged in order by the estimator; a jump back of
            # more than its reset_backwards_s resets it (see odometry.windowing).
            self.estimator.add_imu(stamp_ns, gyro_radps, accel_mps2)
            self.health.counters["imu_accepted"] += 1  # refused ones: imu.dropped
            self._imu_head_ns = max(stamp_ns, self._imu_head_ns or stamp_ns)
            self._check_resets(p.imu_topic, stamp_ns)
        self._drain_frames()

    def _refused_imu(self, msg: Imu, why: str) -> None:
        """A sample received and refused is counted as such by the windower (received,
        dropped), so that the hole it leaves is not also reported as samples that never came
        (a tester's NaN sample was 'never received' and 'lost in transport')."""
        try:
            stamp_ns: int | None = stamp_to_ns(msg.header.stamp, self.params.imu_topic)
        except RosInputError:
            stamp_ns = None  # counted, but it cannot explain a gap
        self.estimator.windower.refuse(stamp_ns, "bad_message", why)
        # said above as bad_imu, not again as imu_rejected
        self._grew(self.estimator.stats, "dropped")

    def _on_image(self, msg: Image) -> None:
        p = self.params
        self._follow_size_change(msg)
        try:
            image = image_to_mono8(msg, topic=p.image_topic, expected_hw=self._hw)
            stamp_ns = stamp_to_ns(msg.header.stamp, p.image_topic)
        except RosInputError as exc:
            self.health.problem("bad_image", f"dropped: {exc}")
            return
        if stamp_ns == 0:
            self.health.problem("bad_image", f"dropped: {p.image_topic}: header.stamp is 0 "
                                "(unset by the driver)")
            return
        if self._hw is None:
            self._hw = (int(image.shape[0]), int(image.shape[1]))
        self.health.counters["frames_received"] += 1
        self._frames.append((stamp_ns, image, time.monotonic()))
        self._drain_frames()

    def _follow_size_change(self, msg: Image) -> None:
        """Take a new image size once it has held for ``SIZE_CHANGE_FRAMES`` frames.

        Only for a size learnt from the first image (``image_height/width`` 0): a camera
        reconfigured to another resolution would otherwise have every frame dropped for good.
        The network resizes each frame to its own input, so one pair across the change is
        still a valid pair. One odd frame stays an error.
        """
        hw = (int(msg.height), int(msg.width))
        if self._hw_fixed or self._hw is None or hw == self._hw or min(hw) <= 0:
            self._new_hw, self._new_hw_count = None, 0
            return
        if hw != self._new_hw:
            self._new_hw, self._new_hw_count = hw, 0
        self._new_hw_count += 1
        if self._new_hw_count >= SIZE_CHANGE_FRAMES:
            self.get_logger().warning(
                f"{self.params.image_topic}: image size (height, width) changed from "
                f"{self._hw} to {hw} for {self._new_hw_count} frames; taking the new size")
            self.health.counters["image_size_changes"] += 1
            self._hw, self._new_hw, self._new_hw_count = hw, None, 0

    def _drain_frames(self, before_ns: int | None = None) -> None:
        """Process waiting frames whose IMU window is complete (or that waited long enough).

        Camera and IMU arrive on separate subscriptions in no guaranteed order; a frame is
        handed to the estimator once an IMU sample at or after its stamp has arrived, so that
        its window holds every sample up to the frame (none merged late). ``before_ns``: an
        IMU sample with that stamp is arriving, so frames stamped before it are complete.
        """
        now = time.monotonic()
        while self._frames:
            stamp_ns, image, received = self._frames[0]
            complete = ((self._imu_head_ns is not None and self._imu_head_ns >= stamp_ns)
                        or (before_ns is not None and stamp_ns < before_ns))
            if not complete and now - received < self.params.imu_wait_s:
                return
            if not complete:
                # Said as the estimator will take it: before its gravity initialisation a
                # frame is not estimated at all (a camera without IMU waits for good).
                est = self.estimator
                outcome = ("estimated with the samples there" if est.initialised else
                           f"not estimated: the gravity initialisation has {est.init_samples} "
                           f"of its {est.gravity_init_samples} IMU samples")
                self.health.problem(
                    "frames_without_full_imu_window",
                    f"{self.params.image_topic} frame at {stamp_ns} ns waited "
                    f"{self.params.imu_wait_s:g} s for {self.params.imu_topic} to reach its stamp "
                    f"(newest IMU stamp {self._imu_head_ns}); {outcome}",
                )
            self._frames.popleft()
            self.health.latency["frame_wait_for_imu"].add(now - received)
            self._process_frame(stamp_ns, image)

    def _process_frame(self, stamp_ns: int, image: np.ndarray) -> None:
        p = self.params
        latency = self.health.latency
        # CPU time beside wall time: when "frame" grows and "frame_cpu" does not, the node
        # waits for a core (other processes), not for its own work. The process's CPU time,
        # torch's threads included (with torch_threads 2 the calling thread's alone was half).
        with latency["frame"].measure(), latency["frame_cpu"].measure(time.process_time):
            try:
                estimate = self.estimator.add_frame(stamp_ns, image)
            except ImuInitError as exc:
                self.health.problem("imu_init_failed", f"{p.imu_topic}: {exc}")
                return
            except OdometryError as exc:
                self.health.problem("bad_image", f"{p.image_topic}: {exc}")
                return
            finally:
                self._check_resets(p.image_topic, stamp_ns)
            if estimate is None:
                return
            self._publish(estimate)

    def _publish(self, estimate: Any) -> None:
        p = self.params
        self.odom_pub.publish(
            odometry_msg(
                estimate.stamp_ns, estimate.T_odom_base, estimate.v_base_mps,
                estimate.omega_base_radps, estimate.pose_covariance, estimate.twist_covariance,
                frame_id=p.odom_frame, child_frame_id=p.base_frame,
            )
        )
        if self.tf is not None:
            self.tf.sendTransform(
                transform_msg(estimate.stamp_ns, estimate.T_odom_base, p.odom_frame, p.base_frame)
            )
        self.health.counters["odometry_published"] += 1

    def estimator_stats(self) -> dict[str, int]:
        stats = self.estimator.stats
        if isinstance(stats, dict):
            return {str(k): int(v) for k, v in stats.items()}
        return {k: int(v) for k, v in vars(stats).items() if isinstance(v, int | float)}

    def summary(self) -> dict[str, object]:
        return self.health.summary()

    def close(self) -> None:
        self.health.publish(final=True)
        self.get_logger().info(f"vio_node done: {self.summary()}")


def main(args: Sequence[str] | None = None) -> int:
    return spin_node(VioNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
