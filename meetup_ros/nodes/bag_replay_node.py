"""Replay a rosbag2 over DDS at its recorded timing, with /clock (a pip-only ``ros2 bag play``).

The recorded CDR bytes are published as they are (rclpy publishers take serialized bytes), so
nothing is re-encoded; each message is decoded once, only to check it: one that does not
decode is logged, counted, not published, and fails the replay at its end. Topics whose
message type rclpy cannot import (``/tf_static`` where ``tf2_msgs`` is not installed) are
skipped with a warning (refused when nothing else is left to play). Several bags are played
merged in bag time; two holding a played topic over overlapping spans (the same recording
twice) are refused, as the offline readers refuse them. In loop mode the bag starts again at
its end; header stamps and /clock then go back, which is how downstream nodes see a loop.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from meetup_ros.bags import BagError, topics
from meetup_ros.bags.importer import QOS_DEPTH
from meetup_ros.bags.reader import bag_info, bags_overlap_error, iter_raw_messages
from meetup_ros.ros import RosInputError
from meetup_ros.ros.node_tools import freeze_startup_heap
from meetup_ros.ros.params import declare_parameters, param, param_fields

MAX_START_DELAY_S = 3600.0


@dataclass(frozen=True)
class BagReplayParams:
    """The replay's ROS parameters (``bag_replay_node --help`` lists them)."""

    bag: str = param("", f"rosbag2 folder(s), separated by {os.pathsep!r}")
    rate: float = param(1.0, "playback speed factor (> 0)")
    loop: bool = param(False, "restart at the end; header stamps and /clock then go back")
    topics: tuple[str, ...] = param(
        ("",), "topics to play; [''] = all (a ROS parameter list cannot be empty)")
    publish_clock: bool = param(True, "publish /clock (bag time)")
    clock_hz: float = param(100.0, "most /clock messages per second of bag time")
    start_delay_s: float = param(
        0.5, "wall time to wait after creating publishers, for discovery")
    max_loops: int = param(
        0, "with loop: stop after this many passes (0 = run until shutdown)")
    wait_for_subscribers: int = param(
        0, "before the first message, wait until each waited publisher has this many "
           "matched subscriptions, and every one the graph lists on its topic (0 = do not wait)")
    wait_topics: tuple[str, ...] = param(
        ("",), "publishers to wait for; [''] = every publisher the replay uses")
    wait_timeout_s: float = param(20.0, "give up waiting after this many seconds (wall)")
    wait_fail: bool = param(
        False, "on a wait timeout, fail the replay instead of warning and playing")


def import_message_type(msgtype: str) -> Any | None:
    """The rclpy message class of ``pkg/msg/Name``, or None when it is not installed."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        return None
    pkg, kind, name = parts
    try:
        module = importlib.import_module(f"{pkg}.{kind}")
    except ImportError:
        return None
    return getattr(module, name, None)


def topic_qos(topic: str) -> QoSProfile:
    """Reliable keep-all for every topic; /tf_static latched (transient local) as tf expects.

    Keep-all, not keep-last: a bag pass is a burst (1141 IMU samples in 1.4 s at rate 4), and
    a reliable keep-last writer overwrites samples a slow reader has not acknowledged yet once
    the burst outruns its depth (seen: 1000 of 1141 recorded). A keep-all writer keeps every
    unacknowledged sample and blocks ``publish`` instead (Fast DDS: 5000 pending samples per
    reader), so a reader that falls behind slows the replay down rather than losing data.
    The same holds for keep-all readers (the recorder, the tests): a busy executor delays
    samples instead of dropping the oldest. (``depth`` is ignored with keep-all; it stays
    >= 200 for tools that print it.)
    """
    if topic == topics.TF_STATIC:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL,
        depth=QOS_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


@dataclass
class ReplayReport:
    """What a replay published, and how late against the schedule (ms)."""

    published: Counter[str] = field(default_factory=Counter)
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> msgtype
    clock_messages: int = 0
    loops: int = 0
    bag_duration_s: float = 0.0
    wall_s: float = 0.0
    # the wait for matched subscriptions before the first message (not part of wall_s)
    wait_s: float = 0.0
    # the first pass's schedule: a message stamped t is due at
    # start_wall_s + (t - start_stamp_ns) / 1e9 / rate on time.monotonic()
    start_wall_s: float = 0.0
    start_stamp_ns: int = 0
    unmatched_topics: dict[str, int] = field(default_factory=dict)  # topic -> matched count
    # the most recent 100k publishes: a looping replay must not grow without bound
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    error: str | None = None
    summary_logged: bool = False  # the node logged summary() at the end of playback
    # messages whose CDR does not decode as their topic's type: not published (every
    # subscriber would drop them silently), counted per topic, and the replay fails at the end
    undecodable: Counter[str] = field(default_factory=Counter)

    def lateness_stats(self) -> dict[str, float]:
        if not self.lateness_ms:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        values = np.asarray(self.lateness_ms)
        return {
            "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)),
            "max": float(values.max()),
        }

    def summary(self) -> str:
        stats = self.lateness_stats()
        lines = [
            f"replayed {sum(self.published.values())} messages in {self.wall_s:.2f} s wall "
            f"({self.loops} pass(es) of {self.bag_duration_s:.2f} s), "
            f"{self.clock_messages} /clock; lateness p50 {stats['p50']:.2f} ms, "
            f"p99 {stats['p99']:.2f} ms, max {stats['max']:.2f} ms"
        ]
        lines += [f"  {t}: {n}" for t, n in sorted(self.published.items())]
        lines += [f"  skipped {t} ({m}: not importable)" for t, m in self.skipped_topics.items()]
        lines += [f"  too few matched subscriptions on {t} ({n}) after the wait"
                  for t, n in self.unmatched_topics.items()]
        lines += [f"  undecodable {t}: {n} (not published)"
                  for t, n in sorted(self.undecodable.items())]
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)


class BagReplayNode(Node):
    """Publishes a bag's messages on a background thread; ``start()``, ``wait()``, ``stop()``.

    Keyword arguments override the parameters (``bag`` may be a list of paths).
    """

    def __init__(
        self, *, node_name: str = "bag_replay", context: Any = None, **overrides: Any
    ) -> None:
        fields = param_fields(BagReplayParams)
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise TypeError(f"unknown BagReplayNode parameter(s) {unknown!r}; "
                            f"expected some of {sorted(fields)!r}")
        if isinstance(overrides.get("bag"), list | tuple):
            overrides["bag"] = os.pathsep.join(str(p) for p in overrides["bag"])
        for name in ("topics", "wait_topics"):  # None or [] = all (a ROS list can't be empty)
            if not overrides.get(name, [""]):
                overrides.pop(name)
        super().__init__(
            node_name,
            context=context,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        try:
            params = declare_parameters(self, BagReplayParams)
        except RosInputError as exc:  # an unknown key in the params file, a wrong type
            raise BagError(str(exc)) from exc
        self.params = params
        self.bag_paths = [p for p in params.bag.split(os.pathsep) if p]
        self.rate = params.rate
        self.loop = params.loop
        self.topic_filter = [t for t in params.topics if t] or None
        self.publish_clock = params.publish_clock
        self.start_delay_s = params.start_delay_s
        self.max_loops = params.max_loops
        self.wait_for_subscribers = params.wait_for_subscribers
        self.wait_timeout_s = params.wait_timeout_s
        self.wait_fail = params.wait_fail
        wait_topics = [t for t in params.wait_topics if t]
        if self.wait_for_subscribers < 0:
            raise BagError(
                f"parameter 'wait_for_subscribers' = {self.wait_for_subscribers!r}; expected >= 0"
            )
        # inf overflowed the first sleep naming nothing; -1 and a negative loop count were
        # taken without a word
        if not 0.0 <= self.start_delay_s <= MAX_START_DELAY_S:
            raise BagError(f"parameter 'start_delay_s' = {self.start_delay_s!r}; expected 0 to "
                           f"{MAX_START_DELAY_S:g} s")
        if self.max_loops < 0:
            raise BagError(f"parameter 'max_loops' = {self.max_loops!r}; expected >= 0 "
                           "(0 = until shutdown)")
        if not self.wait_timeout_s > 0:
            raise BagError(f"parameter 'wait_timeout_s' = {self.wait_timeout_s!r}; expected > 0")
        if not self.bag_paths:
            raise BagError("parameter 'bag' is empty; expected a rosbag2 folder")
        if not 0 < self.rate < float("inf"):
            raise BagError(f"parameter 'rate' = {self.rate!r}; expected > 0, finite")
        clock_hz = params.clock_hz
        if not 0 < clock_hz < float("inf"):
            raise BagError(f"parameter 'clock_hz' = {clock_hz!r}; expected > 0, finite")
        self.clock_period_ns = int(1e9 / clock_hz)

        info = bag_info(self.bag_paths, count_messages=False)  # what to publish
        self.report = ReplayReport(bag_duration_s=info["duration_s"])
        wanted = self.topic_filter or list(info["topics"])
        missing = [t for t in wanted if t not in info["topics"]]
        if missing:
            raise BagError(
                f"topic(s) {missing!r} not in bag {self.bag_paths!r}; "
                f"it has {sorted(info['topics'])!r}"
            )
        self._msg_classes = self._importable(wanted, info)
        overlap = bags_overlap_error(info, self._msg_classes)
        if overlap:
            raise BagError(overlap)
        for topic, msgtype in self.report.skipped_topics.items():
            self.get_logger().warning(
                f"skipping {topic} ({msgtype}): rclpy cannot import that message type"
            )
        self._bag_publishers: dict[str, Any] = {
            topic: self.create_publisher(msg_class, topic, topic_qos(topic))
            for topic, msg_class in self._msg_classes.items()
        }
        self._clock_pub = (
            self.create_publisher(Clock, topics.CLOCK, topic_qos(topics.CLOCK))
            if self.publish_clock else None
        )
        publishing = list(self._bag_publishers) + ([topics.CLOCK] if self._clock_pub else [])
        unknown_waits = [t for t in wait_topics if t not in publishing]
        if unknown_waits:
            raise BagError(f"parameter 'wait_topics' = {unknown_waits!r}: the replay does not "
                           f"publish them; expected some of {publishing!r}")
        self.wait_topics = wait_topics or publishing
        self.done = threading.Event()
        self._stop_event = threading.Event()
        self._play_thread: threading.Thread | None = None
        self.get_logger().info(
            f"replaying {self.bag_paths} at rate {self.rate:g}: "
            f"{len(self._bag_publishers)} topic(s), loop={self.loop}, clock={self.publish_clock}"
        )

    def _importable(self, wanted: list[str], info: dict[str, Any]) -> dict[str, Any]:
        """The rclpy message class of each wanted topic that has one; the others go to
        ``report.skipped_topics``.

        Raises:
            BagError: no wanted topic can be played. An empty selection read every topic of
                the bag (rosbags' meaning of no connections), each then "undecodable".
        """
        classes = {}
        for topic in wanted:
            msgtype = info["topics"][topic][0]
            msg_class = import_message_type(msgtype)
            if msg_class is None:
                self.report.skipped_topics[topic] = msgtype
            else:
                classes[topic] = msg_class
        if not classes:
            skipped = ", ".join(f"{t} ({m})" for t, m in self.report.skipped_topics.items())
            raise BagError(f"nothing to play from bag {self.bag_paths!r}: "
                           + (f"{skipped} cannot be imported by rclpy here" if skipped
                              else "it holds no topic"))
        return classes

    # --- control -------------------------------------------------------------------------
    def start(self) -> None:
        """Start playback on a background thread."""
        if self._play_thread is not None:
            return
        self._play_thread = threading.Thread(
            target=self._play_safely, name="bag_replay", daemon=True
        )
        self._play_thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until playback ended; True when it did."""
        return self.done.wait(timeout_s)

    def _publisher(self, topic: str) -> Any:
        return self._clock_pub if topic == topics.CLOCK else self._bag_publishers[topic]

    def matched_subscriptions(self) -> dict[str, int]:
        """Matched subscriptions (DDS endpoint matching, not just the graph) per waited topic."""
        return {t: int(self._publisher(t).get_subscription_count()) for t in self.wait_topics}

    def _short_of_subscribers(self) -> dict[str, int]:
        """Waited topics whose publisher has fewer matched subscriptions than
        ``wait_for_subscribers`` or than the graph lists (topic -> matched count)."""
        needed = self.wait_for_subscribers
        return {t: n for t, n in self.matched_subscriptions().items()
                if n < max(needed, self.count_subscribers(t))}

    def wait_for_subscriptions(self) -> dict[str, int]:
        """Wait until every waited publisher has ``wait_for_subscribers`` matched subscriptions
        and is matched to every subscription the graph lists on its topic.

        A topic in the graph is not enough: what a publisher sends before DDS has matched it
        to a reader is lost for that reader, and matching took seconds under load. Nor is one
        matched subscription: /cam0/image_raw has vio_node's and slam_node's, and slam_node,
        matched second, lost the first images (3 of 95 in a tester's demo). Returns the
        topics still short of subscribers (topic -> matched count); empty when all are matched.
        """
        if self.wait_for_subscribers <= 0:
            return {}
        needed = self.wait_for_subscribers
        self.get_logger().info(
            f"waiting up to {self.wait_timeout_s:g} s for {needed} matched subscription(s), "
            f"and every one the graph lists, on each of {self.wait_topics}"
        )
        start = time.monotonic()
        deadline = start + self.wait_timeout_s
        while True:
            short = self._short_of_subscribers()
            if not short or time.monotonic() >= deadline:
                break
            if self._stop_event.wait(0.02):
                break
        self.report.wait_s = time.monotonic() - start
        if short:
            self.get_logger().warning(
                f"after {self.report.wait_s:.2f} s, fewer than {needed} matched subscription(s) "
                f"(or than the graph lists) on {sorted(short)} (matched: {short}); "
                + ("failing" if self.wait_fail else "replaying anyway")
            )
        else:
            self.get_logger().info(
                f"all {len(self.wait_topics)} waited topic(s) have >= {needed} matched "
                f"subscription(s) after {self.report.wait_s:.2f} s"
            )
        return short

    def stop(self) -> None:
        self._stop_event.set()
        if self._play_thread is not None:
            self._play_thread.join(timeout=5.0)

    # --- playback ------------------------------------------------------------------------
    def _play_safely(self) -> None:
        try:
            self._play()
        except BagError as exc:
            self.report.error = str(exc)
            self.get_logger().error(f"replay failed: {exc}")
        except Exception as exc:  # a publish after shutdown; report it instead of dying silently
            if self.context.ok():
                self.report.error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"replay failed: {exc!r}")
        finally:
            self.done.set()

    def _publish_clock(self, stamp_ns: int) -> None:
        assert self._clock_pub is not None
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self._clock_pub.publish(msg)
        self.report.clock_messages += 1

    def _play(self) -> None:
        short = self.wait_for_subscriptions()
        if self._stop_event.is_set():
            return
        if short:
            self.report.unmatched_topics = short
            if self.wait_fail:
                raise BagError(
                    f"topic(s) {sorted(short)!r} have fewer than {self.wait_for_subscribers} "
                    f"matched subscription(s) (or than the graph lists) after "
                    f"{self.wait_timeout_s:g} s "
                    f"(matched: {short!r}); expected wait_for_subscribers to be met"
                )
        # the schedule (and wall_s, lateness) starts after the wait and the start delay
        if self._stop_event.wait(self.start_delay_s):
            return
        wall_start = time.monotonic()
        topic_list = list(self._bag_publishers)
        while not self._stop_event.is_set():
            pass_start_wall = time.monotonic()
            bag_start_ns: int | None = None
            last_clock_ns: int | None = None
            for msg in iter_raw_messages(self.bag_paths, topic_list):
                if self._stop_event.is_set():
                    break
                if bag_start_ns is None:
                    # the schedule starts at the first message read, not before opening the
                    # bag: opening took > 100 ms under load, which made every early message late
                    pass_start_wall = time.monotonic()
                    bag_start_ns = msg.stamp_ns
                    if self.report.loops == 0:
                        self.report.start_wall_s = pass_start_wall
                        self.report.start_stamp_ns = bag_start_ns
                target = pass_start_wall + (msg.stamp_ns - bag_start_ns) / 1e9 / self.rate
                delay = target - time.monotonic()
                if delay > 0 and self._stop_event.wait(delay):
                    break
                if self._clock_pub is not None and (
                    last_clock_ns is None or msg.stamp_ns - last_clock_ns >= self.clock_period_ns
                    or msg.stamp_ns < last_clock_ns
                ):
                    self._publish_clock(msg.stamp_ns)
                    last_clock_ns = msg.stamp_ns
                rawdata = bytes(msg.rawdata)
                if not self._decodes(msg.topic, msg.stamp_ns, rawdata):
                    continue
                self._bag_publishers[msg.topic].publish(rawdata)
                self.report.published[msg.topic] += 1
                self.report.lateness_ms.append((time.monotonic() - target) * 1e3)
            else:
                self.report.loops += 1
                if not self.loop or (self.max_loops and self.report.loops >= self.max_loops):
                    break
                self.get_logger().info(
                    f"loop {self.report.loops} done; restarting (stamps go back)"
                )
                continue
            break
        self.report.wall_s = time.monotonic() - wall_start
        if self.report.undecodable:
            self.report.error = (
                f"{sum(self.report.undecodable.values())} message(s) of bag {self.bag_paths!r} "
                f"could not be decoded and were not published: {dict(self.report.undecodable)!r}"
            )
            self.get_logger().error(self.report.summary())
        else:
            self.get_logger().info(self.report.summary())
        self.report.summary_logged = True

    def _decodes(self, topic: str, stamp_ns: int, rawdata: bytes) -> bool:
        """Whether ``rawdata`` decodes as ``topic``'s type; logs and counts it if not.

        Published as is, a message no subscriber can decode vanished without a word (vio_node
        got 1140 of 1141 IMU samples from a bag with one garbled message). rclpy's C decoder
        takes tens of microseconds for an image, little against the replay's schedule.
        """
        try:
            deserialize_message(rawdata, self._msg_classes[topic])
        except Exception as exc:  # rclpy raises RMWError (or others) on bad CDR
            self.report.undecodable[topic] += 1
            self.get_logger().warning(
                f"message on {topic} at bag time {stamp_ns} ns cannot be decoded "
                f"({type(exc).__name__}: {exc}); not published")
            return False
        return True


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (entry points only).

    rclpy's own handler would shut the context down under the playback thread; and a shell
    starts background jobs with SIGINT ignored, which Python would keep.
    """
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)


def run_replay(
    bag_paths: str | Sequence[str],
    *,
    rate: float = 1.0,
    loop: bool = False,
    topics: Sequence[str] | None = None,
    publish_clock: bool = True,
    wait_for_subscribers: int = 0,
    wait_timeout_s: float = 20.0,
    wait_fail: bool = False,
    args: list[str] | None = None,
) -> ReplayReport:
    """Init rclpy, replay the bag to the end (or Ctrl-C), shut down; return the report.

    With ``wait_for_subscribers`` > 0 the replay first waits (up to ``wait_timeout_s``) for that
    many matched subscriptions on every topic it publishes, then starts without a fixed delay.
    """
    paths = [bag_paths] if isinstance(bag_paths, str) else list(bag_paths)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_on_signals()
    node: BagReplayNode | None = None
    try:
        node = BagReplayNode(
            bag=paths, rate=rate, loop=loop, topics=list(topics) if topics else None,
            publish_clock=publish_clock, wait_for_subscribers=wait_for_subscribers,
            wait_timeout_s=wait_timeout_s, wait_fail=wait_fail,
            # the wait replaces the fixed discovery delay
            start_delay_s=0.0 if wait_for_subscribers > 0 else BagReplayParams.start_delay_s,
        )
        freeze_startup_heap(node.get_logger())
        node.start()
        while rclpy.ok() and not node.done.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
        return node.report
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is not None:
            node.stop()
            return node.report
        raise
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()


def main(args: list[str] | None = None) -> int:
    """Console script ``bag_replay_node``: parameters from --ros-args."""
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # rcl's message names the file and line (a bad --params-file)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        rclpy.logging.get_logger("bag_replay").error(f"cannot start: {first}")
        return 2
    interrupt_on_signals()
    node: BagReplayNode | None = None
    try:
        node = BagReplayNode()
        freeze_startup_heap(node.get_logger())
        node.start()
        while rclpy.ok() and not node.done.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
        return 1 if node.report.error else 0
    except BagError as exc:
        rclpy.logging.get_logger("bag_replay").error(str(exc))
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
