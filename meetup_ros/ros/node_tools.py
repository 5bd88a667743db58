"""What every meetup_ros node shares: QoS, diagnostics with latency, TF when available, main.

Each node is one ``rclpy.node.Node`` subclass; it owns a :class:`NodeHealth` that counts
inputs, keeps latency trackers, and publishes ``diagnostic_msgs/DiagnosticArray`` on
``/diagnostics`` periodically and once more on shutdown.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from meetup_ros.ros import RosInputError, stop_signals
from meetup_ros.ros.convert import ns_to_stamp
from meetup_ros.ros.latency import LatencyTracker
from meetup_ros.ros.params import check_param, param
from meetup_ros.ros.stop_signals import LauncherGone, StopSignal

LEVELS = {"OK": DiagnosticStatus.OK, "WARN": DiagnosticStatus.WARN,
          "ERROR": DiagnosticStatus.ERROR, "STALE": DiagnosticStatus.STALE}


def reliable_qos(depth: int) -> QoSProfile:
    """Reliable, volatile, keep-last ``depth``: what every pipeline topic uses."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


SENSOR_RELIABILITY = ("reliable", "best_effort")


def sensor_qos(depth: int, reliability: str) -> QoSProfile:
    """A sensor input's subscription: ``reliable_qos`` or, with ``"best_effort"``, the same
    history with best-effort delivery, which also matches the best-effort publishers of
    camera and IMU drivers (ROS's sensor-data profile): a reliable subscription matches none
    of them, and a tester's best-effort camera fed slam_node nothing, one warning aside."""
    qos = reliable_qos(depth)
    if reliability == "best_effort":
        qos.reliability = ReliabilityPolicy.BEST_EFFORT
    return qos


def sensor_events(health: NodeHealth, topic: str) -> Any:
    """Subscription events for a sensor input: an incompatible publisher is said with the
    parameter that fixes it (rmw's own warning names only the policy, and a tester's
    best-effort camera fed nothing with no word of ``sensor_reliability``)."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    def incompatible(info: Any) -> None:
        health.problem(
            "incompatible_publishers",
            f"{topic}: a publisher's QoS is incompatible with this subscription's (policy "
            f"{info.last_policy_kind}); for a driver that publishes best effort, set "
            "sensor_reliability: best_effort")

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if isinstance(value, np.ndarray | list | tuple):
        return "[" + ", ".join(format_value(float(v)) for v in np.asarray(value).ravel()) + "]"
    return str(value)


def diagnostic_status(
    name: str, level: str, message: str, values: Mapping[str, Any], hardware_id: str = ""
) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=LEVELS[level],
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=format_value(v)) for k, v in values.items()],
    )


MATCHED_SECTION = "matched_subscriptions"
MATCHED_PUBLISHERS_SECTION = "matched_publishers"
_NOT_PIPELINE = ("/diagnostics", "/rosout", "/parameter_events")
# The longest period a ROS timer takes: rclpy counts it in int64 nanoseconds (a period of
# 1e10 s, or inf, is a TypeError or OverflowError from create_timer).
MAX_TIMER_PERIOD_S = 1e9


class NodeHealth:
    """Counters, latency trackers and the periodic ``/diagnostics`` publication of one node.

    The node's status (name = node name) holds its counters and, per latency tracker,
    ``latency.<name>.p50_ms`` / ``.p99_ms`` / ``.count``; each section added with
    :meth:`add_section` is a further status named ``"<node>: <section>"``. The demo's report
    reads these back from the recorded ``/diagnostics`` (``evaluation.report``).

    The section ``matched_subscriptions`` gives, per topic the node publishes, how many
    subscriptions DDS has matched to that publisher (the graph lists endpoints before they are
    matched, and a reliable volatile subscription misses what is published before its match).
    The section ``matched_publishers`` gives, per topic the node subscribes to, how many
    publishers DDS has matched to that subscription: the other side of the match, which can
    come later (a slam_node starved of CPU at start-up lost the replay's second image of each
    camera while the replay's publishers counted it as matched).
    For the first ``STARTUP_S`` these two sections alone are also published every
    ``STARTUP_PERIOD_S`` on the steady clock (a sim-time timer does not run before the first
    /clock), so that a replay can wait until every subscriber is matched (``cli.run``).
    """

    STARTUP_S = 10.0  # of spinning; the demo's nodes are matched 0.2-2.6 s after start
    STARTUP_PERIOD_S = 0.25
    # A problem keeps the status at WARN this long (wall time) after its last occurrence,
    # then the status is OK again and its message still names the last problem and its age.
    WARN_HOLD_S = 10.0

    def __init__(self, node: Node, latency_names: Sequence[str], period_s: float = 2.0,
                 period_param: str = "diagnostics_period_s") -> None:
        if not (math.isfinite(period_s) and 0 <= period_s <= MAX_TIMER_PERIOD_S):
            raise RosInputError(
                f"{period_param} {period_s!r}: expected a finite period in [0, "
                f"{MAX_TIMER_PERIOD_S:g}] s (0 disables the periodic /diagnostics)")
        self._node = node
        self.latency = {name: LatencyTracker() for name in latency_names}
        self.counters: Counter[str] = Counter()
        self.last_problem = ""
        self._last_problem_at = 0.0  # time.monotonic() of the last problem
        # Public: a node publishing more on /diagnostics (the monitor's certificates) uses
        # this one rather than a second publisher on the topic.
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(50))
        self._timer = node.create_timer(period_s, self.publish) if period_s > 0 else None
        self._sections: dict[str, Callable[[], Mapping[str, Any]]] = {
            MATCHED_SECTION: self.matched_subscriptions,
            MATCHED_PUBLISHERS_SECTION: self.matched_publishers}
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._startup_ticks = int(self.STARTUP_S / self.STARTUP_PERIOD_S)
        self._startup_timer = node.create_timer(self.STARTUP_PERIOD_S, self._startup_tick,
                                                clock=steady) if period_s > 0 else None

    def _startup_tick(self) -> None:
        self._startup_ticks -= 1
        if self._startup_ticks <= 0 and self._startup_timer is not None:
            self._startup_timer.cancel()
        self._publish([self._section_status(section, "running")
                       for section in (MATCHED_SECTION, MATCHED_PUBLISHERS_SECTION)])

    def matched_subscriptions(self) -> dict[str, int]:
        """Per published topic (not /diagnostics, /rosout): subscriptions matched by DDS."""
        return {pub.topic_name: pub.get_subscription_count() for pub in self._node.publishers
                if pub.topic_name not in _NOT_PIPELINE}

    def matched_publishers(self) -> dict[str, int]:
        """Per subscribed topic (not /parameter_events): publishers matched by DDS."""
        return {sub.topic_name: sub.get_publisher_count() for sub in self._node.subscriptions
                if sub.topic_name not in _NOT_PIPELINE}

    def add_section(self, name: str, values: Callable[[], Mapping[str, Any]]) -> None:
        """Publish ``values()`` as the status ``"<node>: <name>"`` with every diagnostics."""
        self._sections[name] = values

    def problem(self, counter: str, text: str) -> None:
        """Count and log a bad input or failure; the node goes on."""
        self.counters[counter] += 1
        self.last_problem = text
        self._last_problem_at = time.monotonic()
        # Throttle repeats of the same kind so a broken stream cannot flood the log.
        if self.counters[counter] <= 5 or self.counters[counter] % 100 == 0:
            self._node.get_logger().warning(f"{text} (#{self.counters[counter]} {counter})")

    def ongoing(self, text: str) -> None:
        """A problem already counted and logged is still there: keep the status at WARN."""
        self.last_problem = text
        self._last_problem_at = time.monotonic()

    def summary(self) -> dict[str, Any]:
        """Counters, latency ``{"p50","p99","max","count"}`` in ms and the sections."""
        return {
            "counters": dict(self.counters),
            "latency_ms": {name: t.summary_ms() for name, t in self.latency.items()},
            **{name: dict(values()) for name, values in self._sections.items()},
        }

    def status(self) -> DiagnosticStatus:
        values: dict[str, Any] = dict(self.counters)
        for name, tracker in self.latency.items():
            stats = tracker.summary_ms()
            values[f"latency.{name}.p50_ms"] = stats["p50"]
            values[f"latency.{name}.p99_ms"] = stats["p99"]
            values[f"latency.{name}.max_ms"] = stats["max"]
            values[f"latency.{name}.count"] = stats["count"]
        age_s = time.monotonic() - self._last_problem_at
        if self.last_problem and age_s < self.WARN_HOLD_S:
            level, message = "WARN", self.last_problem
        elif self.last_problem:
            level, message = "OK", f"running (last problem {age_s:.0f} s ago: {self.last_problem})"
        else:
            level, message = "OK", "running"
        return diagnostic_status(self._node.get_name(), level, message, values)

    def _section_status(self, section: str, message: str) -> DiagnosticStatus:
        return diagnostic_status(f"{self._node.get_name()}: {section}", "OK", message,
                                 dict(self._sections[section]()))

    def _publish(self, statuses: list[DiagnosticStatus]) -> None:
        array = DiagnosticArray()
        array.header.stamp = self._node.get_clock().now().to_msg()
        array.status = statuses
        self.publisher.publish(array)

    def publish(self, final: bool = False) -> None:
        """Publish the statuses; ``final`` waits (1 s at most) until subscribers have them."""
        main = self.status()
        if final:
            main.message = f"final: {main.message}"
        self._publish([main] + [self._section_status(section, "final" if final else "running")
                                for section in self._sections])
        if final:
            from rclpy.duration import Duration

            self.publisher.wait_for_all_acked(Duration(seconds=1.0))


def make_tf_broadcaster(node: Node) -> Any | None:
    """A ``tf2_ros.TransformBroadcaster`` where tf2_ros imports, else None (logged once)."""
    try:
        import tf2_ros
    except ImportError:
        node.get_logger().info("tf2_ros is not installed: TF is not broadcast (topics only)")
        return None
    return tf2_ros.TransformBroadcaster(node)


def transform_msg(stamp_ns: int, T_parent_child: np.ndarray, parent: str, child: str) -> Any:
    """A ``geometry_msgs/TransformStamped`` for a 4x4 transform."""
    from geometry_msgs.msg import TransformStamped

    from meetup_ros.ros.convert import rotation_to_quaternion_xyzw

    msg = TransformStamped()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = parent
    msg.child_frame_id = child
    t, q = msg.transform.translation, msg.transform.rotation
    t.x, t.y, t.z = (float(v) for v in T_parent_child[:3, 3])
    q.x, q.y, q.z, q.w = (float(v) for v in rotation_to_quaternion_xyzw(T_parent_child[:3, :3]))
    return msg


def lower_cpu_priority(node: Node, nice_increment: int) -> None:
    """Raise this process's niceness by ``nice_increment`` (0 leaves it as it is).

    For nodes whose work is background (keyframes at a few Hz), so that on few cores the
    20 Hz odometry and the per-tick safety certificate pre-empt them. Lowering only: an
    unprivileged process cannot raise its priority, so a negative value is an error.

    Raises:
        RosInputError: a negative increment.
    """
    if nice_increment < 0:
        raise RosInputError(
            f"nice_increment {nice_increment!r} < 0: a node may only lower its own priority"
        )
    if nice_increment:
        niceness = os.nice(nice_increment)
        node.get_logger().info(f"CPU priority lowered: niceness now {niceness}")


REALTIME_PRIORITY_MAX = 49  # above 50 a PREEMPT_RT kernel's IRQ threads (the NIC's: DDS) wait


def realtime_priority_param() -> Any:
    """The ``realtime_priority`` field of a node's parameters class (applied by spin_node)."""
    return param(
        0, "SCHED_FIFO priority of this node's process when it runs as its own process "
           f"(1-{REALTIME_PRIORITY_MAX}; 0 = normal scheduling); needs root, CAP_SYS_NICE or "
           "an rtprio limit, else a warning and normal priority")


def check_realtime_priority(params: Any) -> None:
    """Refuse a ``realtime_priority`` outside 0 .. :data:`REALTIME_PRIORITY_MAX`, naming it."""
    check_param(params, 0 <= params.realtime_priority <= REALTIME_PRIORITY_MAX,
                "realtime_priority", "0 (normal scheduling) or a SCHED_FIFO priority in "
                f"[1, {REALTIME_PRIORITY_MAX}]")


def raise_to_realtime(logger: Any, priority: int) -> None:
    """Put every thread of this process under SCHED_FIFO at ``priority`` (0 leaves them).

    For a node whose latency is the product (the odometry per frame): on 2 cores shared by
    four nodes, a frame otherwise waits for a core behind slam_node's keyframes. Measured in
    `make demo`: vio_node's p99 9.4-13.7 ms in 8 of 8 runs, the machine idle; with helpers'
    work on it 10.2-12.1 ms in 7 of 8 (21.0 in one, as much CPU time as wall time), against
    20.0-27.3 ms alternating without. Keep real-time threads fewer than the cores: with the
    monitor at SCHED_FIFO too, both cores could be taken at once. Threads
    started later (by these) inherit the policy. The kernel's RT throttling
    (sched_rt_runtime_us, by default 0.95 s of every 1 s) still leaves the other tasks their
    share should a callback spin.
    Without the privilege (root, CAP_SYS_NICE or an rtprio limit) this warns and the node
    runs at normal priority.
    """
    if priority == 0:
        return
    if not hasattr(os, "sched_setscheduler"):
        logger.warning(f"realtime_priority {priority}: SCHED_FIFO is not available on this "
                       "platform; running at normal priority")
        return
    try:
        for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        logger.warning(
            f"realtime_priority {priority}: not permitted to use SCHED_FIFO (needs root, "
            "CAP_SYS_NICE, or an rtprio limit: /etc/security/limits.conf, docker "
            "--ulimit rtprio=...); running at normal priority")
        return
    except (OSError, ValueError) as exc:
        logger.warning(f"realtime_priority {priority}: SCHED_FIFO refused ({exc}); running "
                       "at normal priority")
        return
    logger.info(f"real-time priority: SCHED_FIFO {priority}")


def limit_cpu_threads(count: int) -> None:
    """Run this process's numeric work on ``count`` threads: torch's intra-op pool, and through
    threadpoolctl the BLAS libraries (numpy's OpenBLAS, OpenCV's own copy) and OpenMP.

    numpy's OpenBLAS started 2 threads on 2 cores, and its idle worker spins for a while after
    each product large enough to split: around slam_node's first keyframe that was ~50 ms of
    CPU on the core the other nodes needed (the keyframe's process CPU time, p99 76-128 ms
    over 5 demos, 59-62 with OPENBLAS_NUM_THREADS=1 over 3).

    threadpoolctl reaches only the libraries loaded so far; one loaded later (OpenCV's
    OpenBLAS where a node imports cv2 after this call) sizes its pool from the environment
    when it loads, so the cap is written there too, for it and for child processes.
    """
    import torch
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(count)
    torch.set_num_threads(count)
    threadpool_limits(limits=count)  # kept for the process's life (not used as a context)


def freeze_startup_heap(logger: Any) -> None:
    """Put everything allocated so far (modules, weights, a bag's index) beyond the reach of
    Python's cyclic garbage collector.

    A full collection walks every tracked object while holding the GIL: 74 ms in a started
    vio_node (241 thousand objects), 50-53 ms in slam_node and the safety monitor, 175 ms in
    the test suite's process; whichever frame or publish it lands on is that much late. After
    this, full collections walk only what the node allocates while running (0.00 ms right
    after). Start-up objects live as long as the process anyway; the only cost is that a
    reference cycle among them is never reclaimed.
    """
    started = time.monotonic()
    gc.collect()
    gc.freeze()
    logger.debug(f"start-up heap frozen: {gc.get_freeze_count()} objects, "
                 f"{(time.monotonic() - started) * 1e3:.0f} ms")


class RosLogHandler(logging.Handler):
    """The ROS-free cores' Python logging (IMU windower, estimator, SLAM frontend) through a
    node's rclpy logger: each line then has its level, the node's name and the core that
    said it, where before Python's last-resort handler printed bare text on stderr."""

    def __init__(self, log: Any) -> None:
        super().__init__(logging.INFO)
        self.log = log  # an rclpy logger: the package's until the node exists, then the node's

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.levelno >= logging.ERROR:
                self.log.error(text)
            elif record.levelno >= logging.WARNING:
                self.log.warning(text)
            else:
                self.log.info(text)
        except Exception:  # a log line must never take the node down
            self.handleError(record)


class TransportLoss:
    """Messages lost between a publisher and this node's callback, from the DDS publication
    sequence numbers rclpy passes with each message (``MessageInfo``).

    A reliable subscription with KEEP_LAST history drops its oldest samples without a word
    when the callback falls behind (a tester's slam_node lost 5 of 95 stereo pairs while its
    frontend was built): a jump in the number is that many lost. Known limit: the numbers are
    per publisher, and rclpy does not say which publisher sent a message; with two publishers
    on one topic their numbers interleave, so a number at or below the last one restarts the
    count (a publisher restarted) and a jump may then be the other publisher's, an overcount.
    """

    def __init__(self, health: NodeHealth) -> None:
        self.health = health
        self._last: dict[str, int] = {}

    def seen(self, topic: str, info: Mapping[str, Any] | None) -> None:
        number = None if info is None else info.get("publication_sequence_number")
        if not isinstance(number, int) or number <= 0:
            return  # the middleware does not number its samples
        last = self._last.get(topic)
        self._last[topic] = number
        if last is None or number <= last + 1:
            return
        lost = number - last - 1
        self.health.counters["messages_lost_in_transport"] += lost
        self.health.problem(
            "transport_losses",
            f"{topic}: {lost} message(s) lost before this callback (publication sequence "
            f"{last} -> {number}): the subscription's queue overflowed or the network dropped "
            "them")


def _ros_arg_values(args: Sequence[str], flags: tuple[str, ...]) -> list[str]:
    """The values that follow any of ``flags`` among the ROS arguments of ``args``."""
    found, in_ros_args = [], False
    items = list(args)
    for i, item in enumerate(items):
        if item == "--ros-args":
            in_ros_args = True
        elif item == "--":
            in_ros_args = False
        elif in_ros_args and item in flags and i + 1 < len(items):
            found.append(items[i + 1])
    return found


def params_files(args: Sequence[str]) -> list[str]:
    """The ``--params-file`` paths among the ROS arguments of ``args``, in order."""
    return _ros_arg_values(args, ("--params-file",))


def param_overrides(args: Sequence[str]) -> list[str]:
    """The ``-p``/``--param`` values among the ROS arguments of ``args``, in order."""
    return _ros_arg_values(args, ("-p", "--param"))


def check_params_files(node: Node, args: Sequence[str]) -> None:
    """Check each ``--params-file`` on its own against the node's parameter dataclass.

    rcl merges the files, and where a later file gives a key a value of another type than an
    earlier one (``deadline_s: fast``, ``"true"`` for a bool), it drops the later value
    without a word: the node then ran on the first file's value (a tester's override, as the
    README suggests making them). Alone, each file is refused by name; so each is checked so.

    Raises:
        RosInputError: naming the file, the node and the parameter.
    """
    from meetup_ros.ros.params import (
        build_params,
        node_params,
        params_sections,
        read_params_document,
    )

    params = getattr(node, "params", None)
    if params is None or not dataclasses.is_dataclass(params):
        return
    name, fqn = node.get_name(), node.get_fully_qualified_name()
    files = params_files(args)
    applied = False
    for path in files:
        document = read_params_document(path)
        sections = params_sections(document, path)
        applied = applied or name in sections
        build_params(type(params), node_params(sections, name), f"params file {path!r} ({name})")
        bare = [key for key in document if str(key) in (name, f"/{name}")]
        if node.get_namespace() != "/" and bare:
            # rcl matches a bare `name:` section only to /name: under a namespace it is
            # ignored without a word (a tester's tighter safety region never applied).
            raise RosInputError(
                f"params file {path!r}: section {bare[0]!r} applies only to /{name}, not to "
                f"{fqn}; key it /**/{name} (any namespace) or {fqn}")
    if files and not applied:
        # A renamed node (-r __node:=...) matches none of the files' node sections and runs
        # on the code's defaults: said, with what it runs on (a tester's went unnoticed).
        node.get_logger().warning(
            f"no section of {files} applies to {fqn} (sections are matched by node name, "
            f"{name!r}): running on the code's defaults and /**")


def _node_label(node_factory: Callable[[], Node]) -> str:
    """The name a node class takes unless remapped (``SlamNode`` -> ``slam_node``), for what
    is logged before the node exists."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", getattr(node_factory, "__name__", "node")).lower()


def spin_node(node_factory: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Init rclpy, build one node, spin until Ctrl-C or shutdown, then clean up.

    The node's ``close()`` (if any) runs before the node is destroyed, so that its final
    diagnostics are published while the publisher still exists. Returns 0, or 1 when the
    node could not be built (the reason is logged).
    """
    # rclpy's own SIGINT handler would shut the context down before the node could publish
    # its final diagnostics. From here a stop signal is recorded and taken between two steps
    # below, never raised inside rclpy or a node's construction (ros/stop_signals.py); one
    # that came during the imports was raised there already.
    stop_signals.take()
    stop_signals.defer()
    # What is logged before the node exists goes under its default name, not "[meetup_ros]",
    # whichever of four nodes it was (a tester's)
    label = _node_label(node_factory)
    try:
        rclpy.init(
            args=list(args) if args is not None else None,
            signal_handler_options=SignalHandlerOptions.NO,
        )
    except Exception as exc:  # rcl's own message names the file and line (--params-file)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rclpy.logging.get_logger(label).error(f"cannot start: {first}")
        return 2
    node: Node | None = None
    code = 0
    parent_pid = os.getppid()
    handler = RosLogHandler(rclpy.logging.get_logger("meetup_ros"))
    cores = logging.getLogger("meetup_ros")
    cores.addHandler(handler)
    cores.setLevel(logging.INFO)
    cores.propagate = False
    try:
        stop_signals.raise_pending()  # one that came while rclpy started
        # A stop asked for while the node is built (weights, the monitor's start proofs: a
        # few seconds) is taken once it is built, and it then stops as from spinning.
        node = node_factory()
        stop_signals.raise_pending()
        handler.log = node.get_logger()
        check_params_files(node, list(args) if args is not None else sys.argv)
        freeze_startup_heap(node.get_logger())
        # Here, not in the node: a node built inside another process (the tests) must not
        # put that process under SCHED_FIFO.
        params = getattr(node, "params", None)
        raise_to_realtime(node.get_logger(), int(getattr(params, "realtime_priority", 0)))
        # Measured alternative, not usable: rclpy.experimental.EventsExecutor (kilted wheels)
        # cut vio_node's per-frame p99 in `make demo` to 11-17 ms, but vio_node then handled
        # 25 of 95 frames and dropped ~896 of 1141 IMU samples, and with every node on it the
        # monitor issued 23-25 certificates instead of 95 (three runs each, 2026-12-04).
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        # A bounded wait, not rclpy.spin(): with use_sim_time and no /clock, no timer ever
        # wakes the wait set, and Ctrl-C would only be seen at the next message.
        # The stop is taken between two turns (within their 0.2 s timeout), so that the
        # callback in hand finishes.
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
            stop_signals.raise_pending()
    except (LauncherGone, StopSignal) as exc:
        log = node.get_logger() if node is not None else rclpy.logging.get_logger(label)
        if isinstance(exc, LauncherGone):
            log.warning(f"the launcher that started this node (pid {parent_pid}) is gone; "
                        "stopping as on Ctrl-C")
        else:
            log.info(f"stopping on {exc}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # a node that cannot start: say why and exit non-zero
        # Under the node's name, with the files its parameters came from: under
        # `meetup-ros run` four nodes share one terminal, and "[meetup_ros]: node failed:
        # deadline_s -1.0: ..." named neither (a tester's)
        if node is None:
            given = list(args) if args is not None else sys.argv
            # and the -p overrides: a bad -p value was blamed on the file (a tester's)
            sources = params_files(given) + [f"-p {v}" for v in param_overrides(given)]
            where = f" (parameters from {', '.join(sources)})" if sources else ""
            rclpy.logging.get_logger(label).error(f"cannot start: {exc}{where}")
        else:
            node.get_logger().error(f"failed: {exc}")
        code = 1
    finally:
        # A terminal's Ctrl-C reaches both a launcher and its node processes: a second
        # SIGINT must not cut the final diagnostics short (the handler drops the stop
        # signals after the first; here for a stop that came by no signal).
        stop_signals.stopping()
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close) and node.context.ok():
                try:
                    close()
                except Exception as exc:  # shutting down anyway; say why the summary is missing
                    node.get_logger().warning(f"final diagnostics not published: {exc}")
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code
