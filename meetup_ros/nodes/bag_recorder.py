"""Record topics over DDS, as raw CDR, into an MCAP rosbag2 (a pip-only ``ros2 bag record``).

``BagRecorder`` attaches raw subscriptions to any node (the demo uses it in-process):
``start()``, ``stop()``, ``counts``. Message types come from the caller or from the ROS graph;
message definitions written to the bag come from the ``rosbags`` typestore of this ROS release.
Bag timestamps are receive times on the node's clock (sim time when the node uses it).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError

from meetup_ros.bags import BagError
from meetup_ros.bags.checksums import write_checksums
from meetup_ros.bags.importer import TYPESTORE, offered_qos
from meetup_ros.nodes.bag_replay_node import (
    import_message_type,
    interrupt_on_signals,
    topic_qos,
)

# How long to wait for a publisher of a topic given without its type (at most --duration).
DISCOVERY_TIMEOUT_S = 5.0


class BagRecorder:
    """Raw subscriptions on ``node`` for ``topics``, written to a new MCAP bag ``out_bag``."""

    def __init__(
        self,
        node: Node,
        out_bag: str | Path,
        topics: Sequence[str],
        *,
        msgtypes: Mapping[str, str] | None = None,
        compress: bool = True,
    ) -> None:
        if not topics:
            raise BagError("no topics to record; expected at least one topic name")
        self.node = node
        self.out_bag = Path(out_bag)
        if self.out_bag.exists():
            raise BagError(f"output bag {str(self.out_bag)!r} exists already; not overwriting")
        self.topics = list(dict.fromkeys(topics))
        self.msgtypes = dict(msgtypes or {})
        self.compress = compress
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._raw_subscriptions: list[Any] = []

    def _resolve_types(self, discovery_timeout_s: float) -> dict[str, str]:
        """topic -> ``pkg/msg/Name``, from the caller or by waiting for the graph."""
        resolved = {t: self.msgtypes[t] for t in self.topics if t in self.msgtypes}
        deadline = time.monotonic() + discovery_timeout_s
        while len(resolved) < len(self.topics):
            for name, types in self.node.get_topic_names_and_types():
                if name in self.topics and name not in resolved and types:
                    resolved[name] = types[0]
            if len(resolved) == len(self.topics) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        missing = [t for t in self.topics if t not in resolved]
        if missing:
            # In the command's terms (meetup-ros record is where a user meets this); the
            # library takes the same as BagRecorder(msgtypes=...).
            example = " ".join(f"--type {t}=pkg/msg/Name" for t in missing)
            raise BagError(
                f"cannot record {missing!r}: no publisher seen within {discovery_timeout_s:g} s "
                f"to tell the message type; start the publisher first or give the type "
                f"({example}, e.g. --type /imu0=sensor_msgs/msg/Imu)"
            )
        return resolved

    def start(self, discovery_timeout_s: float = DISCOVERY_TIMEOUT_S) -> None:
        """Open the bag and subscribe.

        Raises:
            BagError: a type is unknown to rclpy or rosbags, or the bag cannot be created.
        """
        resolved = self._resolve_types(discovery_timeout_s)
        classes = {}
        for topic, msgtype in resolved.items():
            msg_class = import_message_type(msgtype)
            if msg_class is None:
                raise BagError(f"cannot record {topic!r}: rclpy cannot import {msgtype!r}")
            if msgtype not in TYPESTORE.types:
                raise BagError(
                    f"cannot record {topic!r}: {msgtype!r} is not in the rosbags typestore"
                )
            classes[topic] = msg_class
        writer = Writer(self.out_bag, version=9, storage_plugin=StoragePlugin.MCAP)
        if self.compress:
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        try:
            writer.open()
            for topic, msgtype in resolved.items():
                self._connections[topic] = writer.add_connection(
                    topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[offered_qos(topic)]
                )
        except WriterError as exc:
            raise BagError(f"cannot create bag {str(self.out_bag)!r}: {exc}") from None
        self._writer = writer
        # topic_qos: reliable keep-all. A keep-last reader drops its oldest samples once a burst
        # outruns the depth while this node's executor is busy writing (1000 of 1141 /imu0 at
        # rate 5 under load); keep-all holds them and back-pressures the writer instead.
        for topic, msg_class in classes.items():
            self._raw_subscriptions.append(
                self.node.create_subscription(
                    msg_class, topic, self._callback(topic), topic_qos(topic), raw=True
                )
            )
        self.node.get_logger().info(f"recording {sorted(resolved)} to {self.out_bag}")

    def _callback(self, topic: str) -> Any:
        def on_message(rawdata: bytes) -> None:
            stamp_ns = self.node.get_clock().now().nanoseconds
            if stamp_ns <= 0:  # sim time before the first /clock
                stamp_ns = time.time_ns()
            with self._lock:
                if self._writer is None:
                    return
                self._writer.write(self._connections[topic], stamp_ns, rawdata)
                self.counts[topic] += 1

        return on_message

    def stop(self) -> dict[str, int]:
        """Unsubscribe and close the bag; returns messages written per recorded topic (0 where
        none arrived; empty when the bag was never opened)."""
        for sub in self._raw_subscriptions:
            self.node.destroy_subscription(sub)
        self._raw_subscriptions.clear()
        with self._lock:
            wrote = self._writer is not None
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                write_checksums(self.out_bag)
        # Only when a bag was written: a start that failed (no publisher, a mistyped type)
        # logged "recorded 0 messages to X" for a bag that does not exist (a tester's finding).
        if wrote:
            self.node.get_logger().info(
                f"recorded {sum(self.counts.values())} messages to {self.out_bag}"
            )
        return {topic: self.counts[topic] for topic in self._connections}


def run_recorder(
    out_bag: str | Path,
    topics: Sequence[str],
    *,
    duration_s: float | None = None,
    msgtypes: Mapping[str, str] | None = None,
    args: list[str] | None = None,
) -> dict[str, int]:
    """Init rclpy, record until ``duration_s`` or Ctrl-C, shut down; returns the counts.

    ``duration_s`` counts from the start, the wait for publishers (to tell the types) included:
    ``--duration 2`` waited 5 s for a publisher that never came (a tester's finding).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    interrupt_on_signals()
    node = Node("bag_recorder")
    recorder = BagRecorder(node, out_bag, topics, msgtypes=msgtypes)
    start = time.monotonic()
    try:
        recorder.start(discovery_timeout_s=DISCOVERY_TIMEOUT_S if duration_s is None
                       else min(DISCOVERY_TIMEOUT_S, duration_s))
        end = None if duration_s is None else start + duration_s
        while rclpy.ok() and (end is None or time.monotonic() < end):
            rclpy.spin_once(node, timeout_sec=0.05)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        counts = recorder.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    return counts
