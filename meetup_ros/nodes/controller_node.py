"""controller_node: runs the deployed controller network (ONNX) on odometry + depth.

Subscribes ``/odom`` (nav_msgs/Odometry) and ``/depth`` (sensor_msgs/Image 32FC1). For each
odometry message it builds the 5-value state (speeds and yaw rate from the odometry twist,
nearest depth ahead from the latest depth image), runs ``models/governor.onnx`` with
onnxruntime and publishes ``/controller/state`` (JointState as a stamped named vector) and
``/controller/command`` (TwistStamped), both with the odometry message's stamp.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from meetup_ros import paths
from meetup_ros.control import ControlError
from meetup_ros.control.motion import MotionHistory
from meetup_ros.control.network import GovernorRuntime
from meetup_ros.control.state import (
    ADVISORIES,
    STATE_NAMES,
    advisory_command,
    build_state,
    nearest_depth_m,
)
from meetup_ros.ros import RosInputError
from meetup_ros.ros.convert import (
    image_to_depth_m,
    named_vector_msg,
    odometry_to_arrays,
    stamp_to_ns,
    twist_stamped_msg,
)
from meetup_ros.ros.node_tools import NodeHealth, reliable_qos, spin_node
from meetup_ros.ros.params import (
    check_param,
    declare_parameters,
    param,
    state_axes_param,
)

NODE_NAME = "controller_node"
ODOMETRY_PER_S = 50  # odometry messages held per second of depth_max_age_s (20 Hz VIO)


@dataclass(frozen=True)
class ControllerParams:
    network_path: str = param("governor.onnx", "controller ONNX file (models/ if relative)")
    odom_topic: str = param("odom", "odometry input (nav_msgs/Odometry)")
    depth_topic: str = param("depth", "depth input (sensor_msgs/Image 32FC1, metres)")
    state_topic: str = param("controller/state", "the state used (JointState named vector)")
    command_topic: str = param("controller/command", "the proposed command (TwistStamped)")
    forward_axis_base: tuple[float, ...] = param(
        (0.0, 0.0, 1.0), "forward (camera optical axis) in the base frame; EuRoC body +z"
    )
    up_axis_base: tuple[float, ...] = param((1.0, 0.0, 0.0), "up in the base frame; EuRoC body +x")
    depth_window_fraction: float = param(0.5, "central window of the depth image (fraction)")
    # Known shortcoming: robust to stray pixels, so an obstacle covering less of the window
    # than this percentile (a pole, a wire) is not the nearest depth.
    depth_percentile: float = param(5.0, "low percentile of window depths taken as nearest")
    depth_max_age_s: float = param(2.0, "older depth (vs the odometry stamp) is not used")
    depth_max_ahead_s: float = param(
        0.5, "depth stamped further after the odometry than this is not used (clock fault)"
    )
    depth_max_rotation_rad: float = param(
        0.15, "held depth is not used once the camera turned more than this since (rad): the "
              "central window (half the image) then looks elsewhere"
    )
    depth_unknown_m: float = param(
        0.1, "nearest depth assumed when no recent valid depth (pessimistic: close)"
    )
    advisory_speeds_mps: tuple[float, ...] = param(
        (1.0, 0.3, 0.0), "forward speed commanded for continue, slow, stop"
    )
    command_frame_id: str = param("base_link", "frame of the command twist")
    diagnostics_period_s: float = param(2.0, "period of /diagnostics (s); 0 disables")


MAX_DEPTH_UNKNOWN_M = 0.5  # the clearance property's depth bound (stop at or below it)


def _check_params(p: ControllerParams) -> None:
    """Refuse parameter values outside their meaning at start-up (a depth_percentile of 150
    was taken, and failed on the first depth image).

    Raises:
        RosInputError: naming the parameter, its value and what is expected.
    """
    def need(ok: bool, name: str, expected: str) -> None:
        check_param(p, ok, name, expected)

    need(0.0 < p.depth_window_fraction <= 1.0, "depth_window_fraction",
         "a fraction of the image in (0, 1]")
    need(0.0 <= p.depth_percentile <= 100.0, "depth_percentile", "a percentile in [0, 100]")
    # finite: an infinite depth_max_age_s sized the odometry history as inf
    for name in ("depth_max_age_s", "depth_max_ahead_s", "depth_max_rotation_rad"):
        need(math.isfinite(getattr(p, name)) and getattr(p, name) >= 0, name,
             "a finite value >= 0")
    # "Pessimistic: close" means inside the clearance property's 0.5 m, where the governor
    # must say stop: a tester's 50 m made no depth at all a "slow", certified, 0.3 m/s.
    need(0.0 <= p.depth_unknown_m <= MAX_DEPTH_UNKNOWN_M, "depth_unknown_m",
         f"a depth in [0, {MAX_DEPTH_UNKNOWN_M:g}] m (pessimistic: inside the clearance "
         "property's reach, config/governor_clearance_property.yaml, so that no depth stops)")
    need(all(math.isfinite(v) for v in p.advisory_speeds_mps), "advisory_speeds_mps",
         "finite speeds (m/s)")


class ControllerNode(Node):
    """Odometry + depth -> governor state -> ONNX scores -> proposed command."""

    def __init__(self, **node_kwargs: object) -> None:
        super().__init__(NODE_NAME, **node_kwargs)  # type: ignore[arg-type]
        self.params = declare_parameters(self, ControllerParams)
        p = self.params
        if len(p.advisory_speeds_mps) != len(ADVISORIES):
            raise RosInputError(
                f"advisory_speeds_mps {p.advisory_speeds_mps!r} needs {len(ADVISORIES)} values "
                f"for {list(ADVISORIES)!r}"
            )
        _check_params(p)
        self.axes = state_axes_param(p.forward_axis_base, p.up_axis_base)
        self._forward_base = self.axes.matrix()[0]
        network_path = paths.node_file(p.network_path, "models")
        self.runtime = GovernorRuntime(network_path)
        # A network of another shape (ACAS Xu: 5 -> 5) must stop the node here, not index
        # past ADVISORIES on the first odometry.
        self.runtime.require_sizes(STATE_NAMES, ADVISORIES)
        self.health = NodeHealth(self, ["state_to_command"], p.diagnostics_period_s)
        self._depth: tuple[int, float] | None = None  # (stamp_ns, nearest depth m)
        self._last_odom_ns: int | None = None
        # Recent odometry, to take the motion since a depth image into account.
        self._motion = MotionHistory(maxlen=max(16, int(ODOMETRY_PER_S * (p.depth_max_age_s
                                                                           + 1.0))))
        self.advisory_counts = {name: 0 for name in ADVISORIES}
        self.health.add_section("advisories", lambda: self.advisory_counts)
        self.state_pub = self.create_publisher(JointState, p.state_topic, reliable_qos(50))
        self.command_pub = self.create_publisher(TwistStamped, p.command_topic, reliable_qos(50))
        self.create_subscription(Image, p.depth_topic, self._on_depth, reliable_qos(10))
        self.create_subscription(Odometry, p.odom_topic, self._on_odom, reliable_qos(50))
        self.get_logger().info(
            f"controller on {p.odom_topic} + {p.depth_topic} -> {p.command_topic}; network "
            f"{network_path} ({list(STATE_NAMES)} -> {list(ADVISORIES)})"
        )

    def _on_depth(self, msg: Image) -> None:
        p = self.params
        try:
            depth_m = image_to_depth_m(msg, topic=p.depth_topic)
            stamp_ns = stamp_to_ns(msg.header.stamp, p.depth_topic)
        except RosInputError as exc:
            self.health.problem("bad_depth", str(exc))
            return
        nearest = nearest_depth_m(
            depth_m, window_fraction=p.depth_window_fraction, percentile=p.depth_percentile
        )
        if math.isnan(nearest):
            self.health.problem(
                "depth_without_valid_pixels",
                f"{p.depth_topic}: no valid depth in the central window; using "
                f"depth_unknown_m={p.depth_unknown_m!r}",
            )
            nearest = p.depth_unknown_m
        self._depth = (stamp_ns, float(nearest))
        self.health.counters["depth_received"] += 1

    def _current_depth_m(self, stamp_ns: int) -> float:
        p = self.params
        if self._depth is None:
            self.health.counters["state_without_depth"] += 1
            return p.depth_unknown_m
        depth_stamp_ns, nearest = self._depth
        age_s = (stamp_ns - depth_stamp_ns) * 1e-9
        if age_s > p.depth_max_age_s:
            self.health.problem(
                "stale_depth",
                f"{p.depth_topic}: latest depth is {age_s:.2f} s older than the odometry "
                f"(depth_max_age_s={p.depth_max_age_s!r}); using depth_unknown_m",
            )
            return p.depth_unknown_m
        if -age_s > p.depth_max_ahead_s:
            # A future stamp never ages: without this, one bad stamp would be used forever.
            self.health.problem(
                "future_depth",
                f"{p.depth_topic}: latest depth is stamped {-age_s:.2f} s after the odometry "
                f"(depth_max_ahead_s={p.depth_max_ahead_s!r}); using depth_unknown_m",
            )
            return p.depth_unknown_m
        # Depth up to depth_max_age_s old while moving: testers held one depth of 2.2 m for
        # 1.9 s at 1 m/s, and one of 3 m through a 90 deg turn towards a wall 0.4 m away, and
        # every command was certified on the old depth.
        moved = self._motion.since(depth_stamp_ns, stamp_ns)
        if moved.rotation_rad > p.depth_max_rotation_rad:
            self.health.counters["depth_turned_away"] += 1
            return p.depth_unknown_m
        if moved.distance_m > 0.0:
            self.health.counters["depth_shortened_by_motion"] += 1
        return max(nearest - moved.distance_m, min(nearest, p.depth_unknown_m))

    def _on_odom(self, msg: Odometry) -> None:
        p = self.params
        self.health.counters["odometry_received"] += 1
        with self.health.latency["state_to_command"].measure():
            try:
                odom = odometry_to_arrays(msg, topic=p.odom_topic)
            except RosInputError as exc:
                self.health.problem("bad_odometry", str(exc))
                return
            if msg.child_frame_id != p.command_frame_id:
                # The state's speeds would be another frame's, read as the base's.
                self.health.problem(
                    "bad_odometry", f"{p.odom_topic}: child_frame_id {msg.child_frame_id!r} "
                    f"is not command_frame_id {p.command_frame_id!r} (the base frame); ignored")
                return
            stamp_ns = odom.stamp_ns
            if self._last_odom_ns is not None and stamp_ns < self._last_odom_ns:
                self.health.problem(
                    "time_jumped_back",
                    f"{p.odom_topic}: stamp {stamp_ns!r} ns is before the previous "
                    f"{self._last_odom_ns!r} ns; dropping the depth held and restarting",
                )
                self._depth = None
                self._motion.clear()
            self._last_odom_ns = stamp_ns
            self._motion.add(stamp_ns, odom.T_odom_base, odom.v_base_mps, odom.omega_base_radps)
            try:
                state = build_state(
                    odom.v_base_mps,
                    odom.omega_base_radps,
                    self._current_depth_m(stamp_ns),
                    self.axes,
                )
                scores = self.runtime.scores(state)
            except ControlError as exc:
                self.health.problem("bad_state", f"{p.odom_topic}: {exc}")
                return
            if not np.all(np.isfinite(scores)):
                self.health.problem("non_finite_scores", f"network scores {scores!r}")
                return
            advisory, linear, angular = advisory_command(
                scores, p.advisory_speeds_mps, self._forward_base)
            self.advisory_counts[ADVISORIES[advisory]] += 1
            self.state_pub.publish(
                named_vector_msg(stamp_ns, STATE_NAMES, state, frame_id=msg.child_frame_id)
            )
            self.command_pub.publish(
                twist_stamped_msg(stamp_ns, linear.tolist(), angular.tolist(), p.command_frame_id)
            )
            self.health.counters["commands_published"] += 1

    def summary(self) -> dict[str, object]:
        return self.health.summary()

    def close(self) -> None:
        """Publish the final diagnostics and log the figures."""
        self.health.publish(final=True)
        self.get_logger().info(f"controller_node done: {self.summary()}")


def main(args: Sequence[str] | None = None) -> int:
    return spin_node(ControllerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
