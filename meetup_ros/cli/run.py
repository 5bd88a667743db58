"""``meetup-ros run`` (pipeline nodes from a params YAML, no ``launch``) and ``meetup-ros demo``.

``run`` builds the requested nodes in one process, each with the parameters the ROS params
file gives it (its own section over ``/**``), and spins them on a multi-threaded executor
until Ctrl-C: the same nodes and YAML that ``ros2 launch meetup_ros pipeline.launch.py``
starts. ``demo`` is the main job: replay the bundled bag through the nodes, record their
outputs, score them (``evaluation.report``) and write ``out/demo/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meetup_ros.cli import CommandError

logger = logging.getLogger(__name__)

PIPELINE_NODES = {
    "vio_node": "meetup_ros.nodes.vio_node:VioNode",
    "slam_node": "meetup_ros.nodes.slam_node:SlamNode",
    "controller_node": "meetup_ros.nodes.controller_node:ControllerNode",
    "safety_monitor_node": "meetup_ros.nodes.safety_monitor_node:SafetyMonitorNode",
}
DEFAULT_PARAMS = "pipeline.yaml"
# Reports of the offline evaluation commands, shipped in models/ beside the weights they score.
OFFLINE_REPORTS = ("vio_report.json", "slam_report.json")
DEFAULT_BAG = "euroc_v1_01_easy_sample"
OUTPUT_TOPICS = {
    "/odom": "nav_msgs/msg/Odometry",
    "/depth": "sensor_msgs/msg/Image",
    "/slam/pose": "geometry_msgs/msg/PoseStamped",
    "/slam/points": "sensor_msgs/msg/PointCloud2",
    "/controller/state": "sensor_msgs/msg/JointState",
    "/controller/command": "geometry_msgs/msg/TwistStamped",
    "/cmd": "geometry_msgs/msg/TwistStamped",
    "/safety/status": "std_msgs/msg/String",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="run pipeline nodes from a ROS params YAML (no ros2 launch needed)"
    )
    p.add_argument("--params", default=DEFAULT_PARAMS, help="ROS params YAML (config/)")
    p.add_argument(
        "--nodes", nargs="+", default=list(PIPELINE_NODES), choices=list(PIPELINE_NODES),
        help="nodes to start (default: all four)",
    )
    p.set_defaults(func=_run)

    p = subparsers.add_parser(
        "demo", help="the main job: replay the bundled bag through the nodes and score them"
    )
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--bag", default=DEFAULT_BAG, help="input rosbag2 (data/ if relative)")
    p.add_argument("--params", default=DEFAULT_PARAMS, help="ROS params YAML (config/)")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    p.add_argument(
        "--short", action="store_true",
        help="fewer stereo pairs in the offline scores (for tests); same replay",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="give up after S seconds")
    p.set_defaults(func=_demo)


# ---- building nodes -------------------------------------------------------------------------

def node_class(name: str) -> Any:
    module_name, _, class_name = PIPELINE_NODES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def node_overrides(params_file: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{node: {parameter: value}}`` for ``names`` from a params file.

    Raises:
        CommandError: unreadable file, or a section for a node that is not in the pipeline.
    """
    from meetup_ros.ros import RosInputError
    from meetup_ros.ros.params import load_params_file

    try:
        sections = load_params_file(params_file)
    except RosInputError as exc:
        raise CommandError(str(exc)) from None
    unknown = sorted(set(sections) - set(PIPELINE_NODES) - {"/**"})
    if unknown:
        raise CommandError(
            f"params file {str(params_file)!r} has section(s) {unknown!r} for nodes that are "
            f"not in the pipeline {sorted(PIPELINE_NODES)!r}"
        )
    common = sections.get("/**", {})
    return {name: {**common, **sections.get(name, {})} for name in names}


@dataclass
class Pipeline:
    """Pipeline nodes on one multi-threaded executor, spun on a background thread."""

    context: Any
    nodes: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    executor: Any = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def build(self, params_file: Path, names: Sequence[str], **extra: dict[str, Any]) -> None:
        from rclpy.parameter import Parameter

        overrides = node_overrides(params_file, names)
        for name in names:
            values = {**overrides[name], **extra.get(name, {})}
            try:
                self.nodes[name] = node_class(name)(
                    context=self.context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in values.items()],
                )
            except Exception as exc:  # a node that cannot start is a failed run
                self.failures.append(f"{name}: could not start: {exc}")
                logger.error("%s could not start: %s", name, exc)

    def add(self, node: Any) -> None:
        self.nodes[node.get_name()] = node

    def start(self, num_threads: int = 4) -> None:
        from rclpy.executors import MultiThreadedExecutor

        self.executor = MultiThreadedExecutor(num_threads=num_threads, context=self.context)
        for node in self.nodes.values():
            self.executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name="pipeline", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except (ExternalShutdownException, KeyboardInterrupt):
                return
            except Exception as exc:  # a callback raised: the node failed; keep the rest up
                self.failures.append(f"callback raised {type(exc).__name__}: {exc}")
                logger.exception("a node callback raised")

    def spin_forever(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def close(self) -> None:
        """Final diagnostics from every node, then stop spinning and destroy the nodes."""
        for node in self.nodes.values():
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    self.failures.append(f"{node.get_name()}: close raised {exc}")
        time.sleep(0.3)  # let the final /diagnostics reach subscribers in this process
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
        for node in self.nodes.values():
            node.destroy_node()


def _init_context() -> Any:
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    # Ctrl-C arrives as KeyboardInterrupt, so the nodes publish their final diagnostics
    # before the context shuts down.
    rclpy.init(context=context, args=[], signal_handler_options=SignalHandlerOptions.NO)
    return context


def _run(args: argparse.Namespace) -> int:
    import rclpy

    from meetup_ros import paths

    params_file = paths.config_path(args.params)
    context = _init_context()
    pipeline = Pipeline(context)
    try:
        pipeline.build(params_file, args.nodes)
        if pipeline.failures:
            raise CommandError("; ".join(pipeline.failures))
        pipeline.start(num_threads=max(2, len(pipeline.nodes)))
        logger.info("running %s with %s; Ctrl-C to stop", sorted(pipeline.nodes), params_file)
        pipeline.spin_forever()
    except KeyboardInterrupt:
        pass
    finally:
        pipeline.close()
        rclpy.try_shutdown(context=context)
    return 1 if pipeline.failures else 0


# ---- the main job ---------------------------------------------------------------------------

def _counts(pipeline: Pipeline) -> tuple[int, ...]:
    return tuple(sum(n.health.counters.values()) for n in pipeline.nodes.values()
                 if hasattr(n, "health"))


def run_demo(
    bag: Path,
    out_dir: Path,
    *,
    params_file: Path,
    rate: float = 1.0,
    short: bool = False,
    timeout_s: float = 300.0,
    drain_quiet_s: float = 1.5,
) -> tuple[dict[str, Any], list[str]]:
    """Replay ``bag`` through the pipeline, record, score; returns (report, failures)."""
    import rclpy
    from rclpy.node import Node

    from meetup_ros import paths
    from meetup_ros.evaluation.report import build_report
    from meetup_ros.nodes.bag_recorder import BagRecorder
    from meetup_ros.nodes.bag_replay_node import BagReplayNode

    out_dir.mkdir(parents=True, exist_ok=True)
    recorded_bag = out_dir / "outputs_bag"
    if recorded_bag.exists():
        shutil.rmtree(recorded_bag)  # the demo's own output of a previous run
    context = _init_context()
    pipeline = Pipeline(context)
    replay = None
    recorder = None
    try:
        pipeline.build(params_file, list(PIPELINE_NODES))
        if pipeline.failures:
            return {}, pipeline.failures
        recorder_node = Node("demo_recorder", context=context)
        pipeline.add(recorder_node)
        replay = BagReplayNode(bag=[str(bag)], rate=rate, context=context)
        pipeline.add(replay)
        pipeline.start(num_threads=6)
        recorder = BagRecorder(recorder_node, recorded_bag, list(OUTPUT_TOPICS),
                               msgtypes=OUTPUT_TOPICS)
        recorder.start()
        time.sleep(0.5)  # discovery between the replay's publishers and the nodes
        wall_start = time.monotonic()
        replay.start()
        if not replay.wait(timeout_s):
            pipeline.failures.append(f"replay did not finish within {timeout_s:g} s")
        # Drain: the nodes are done when no counter moved for drain_quiet_s.
        last, quiet_since = _counts(pipeline), time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() - quiet_since < drain_quiet_s and time.monotonic() < deadline:
            time.sleep(0.1)
            now = _counts(pipeline)
            if now != last:
                last, quiet_since = now, time.monotonic()
        wall_s = quiet_since - wall_start
        if replay.report.error:
            pipeline.failures.append(f"replay: {replay.report.error}")
        summaries = {
            name: node.summary() for name, node in pipeline.nodes.items()
            if name in PIPELINE_NODES
        }
    finally:
        pipeline.close()
        if recorder is not None:
            recorder.stop()
        rclpy.try_shutdown(context=context)
    (out_dir / "node_summaries.json").write_text(json.dumps(summaries, indent=2, default=str))
    report = build_report(
        recorded_bag=recorded_bag,
        input_bag=bag,
        node_summaries=summaries,
        replay={
            "wall_s": wall_s,
            "bag_duration_s": replay.report.bag_duration_s,
            "rate": rate,
            "published": dict(replay.report.published),
            "skipped_topics": dict(replay.report.skipped_topics),
        },
        out_dir=out_dir,
        short=short,
        offline_reports=tuple(paths.model_path(name) for name in OFFLINE_REPORTS),
    )
    return report, pipeline.failures


def _demo(args: argparse.Namespace) -> int:
    from meetup_ros import paths

    bag = paths.data_path(args.bag)
    if not bag.exists():
        raise CommandError(f"bag {str(bag)!r} does not exist")
    params_file = paths.config_path(args.params)
    out_dir = Path(args.out)
    start = time.monotonic()
    report, failures = run_demo(
        bag, out_dir, params_file=params_file, rate=args.rate, short=args.short,
        timeout_s=args.timeout,
    )
    for failure in failures:
        logger.error("node failure: %s", failure)
    if report:
        keys = ("ate_rmse_m", "ate_rmse_m_dead_reckoning", "frames", "certificates",
                "depth_absrel", "learned_over_gn_iterations", "replay_speedup")
        for key in keys:
            logger.info("%s: %s", key, report.get(key))
        print(f"report: {out_dir / 'report.json'} ({time.monotonic() - start:.1f} s)")
    return 1 if failures or not report else 0
