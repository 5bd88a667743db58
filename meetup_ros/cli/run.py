"""``meetup-ros run`` (pipeline nodes from a params YAML, no ``launch``) and ``meetup-ros demo``.

``run`` starts the requested nodes one process each, as ``ros2 launch meetup_ros
pipeline.launch.py`` does, each with ``--ros-args --params-file`` of the same YAML (the node
reads its own section and ``/**``), and stops them on Ctrl-C. One process per node, not one
executor: with the GIL shared, a SLAM keyframe held up the 200 Hz IMU callbacks long enough
to overflow their queue. ``demo`` is the main job: start the nodes, replay the bundled bag
through them, record their outputs and final diagnostics, score them
(``evaluation.report``) and write ``out/demo/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from meetup_ros.cli import CommandError, check_out_dir
from meetup_ros.ros import EXIT_WITH_PARENT_ENV, stop_signals
from meetup_ros.ros.stop_signals import StopSignal

logger = logging.getLogger(__name__)

PIPELINE_NODES = {
    "vio_node": "meetup_ros.nodes.vio_node:VioNode",
    "slam_node": "meetup_ros.nodes.slam_node:SlamNode",
    "controller_node": "meetup_ros.nodes.controller_node:ControllerNode",
    "safety_monitor_node": "meetup_ros.nodes.safety_monitor_node:SafetyMonitorNode",
}
# After the graph shows every subscription, DDS still has to match the replay's publishers
# to them; what is published before that is lost (seen at 0.5 s on a loaded machine). So the
# replay waits for a matched subscription on each bag topic the nodes subscribe to, not a
# fixed delay; /groundtruth/* and /clock have no subscriber in the demo.
REPLAY_WAIT_TOPICS = (
    "/imu0", "/cam0/image_raw", "/cam1/image_raw", "/cam0/camera_info", "/cam1/camera_info",
)
REPLAY_WAIT_TIMEOUT_S = 20.0
# Node outputs (their publishers are created at start-up): the replay starts once every
# subscription on each is matched to its publishers (``_wait_matched``).
MATCHED_BEFORE_REPLAY = ("/odom", "/controller/state", "/controller/command", "/cmd",
                         "/depth")
# Subscriptions that must exist (counting the demo's recorder) before the replay starts.
READY_SUBSCRIBERS = {
    "/imu0": 1, "/cam0/image_raw": 2, "/cam1/image_raw": 1, "/odom": 4, "/depth": 2,
    "/controller/state": 2, "/controller/command": 2,
}
# Every node in the graph and the missing subscriptions unchanged this long: not coming.
READY_SETTLE_S = 10.0
DEFAULT_PARAMS = "pipeline.yaml"
# What the demo reads from its bag: the nodes' inputs (vio_node: IMU, cam0 and its intrinsics;
# slam_node: the stereo pair and both intrinsics) and the ground truth the report scores
# against. The ground-truth biases and /tf_static are optional (zero biases, identity).
DEMO_TOPICS = ("/imu0", "/cam0/image_raw", "/cam0/camera_info", "/cam1/image_raw",
               "/cam1/camera_info", "/groundtruth/odometry")
# Reports of the offline evaluation commands, shipped in models/ beside the weights they score.
OFFLINE_REPORTS = ("vio_report.json", "visual_report.json", "slam_report.json")
DEFAULT_BAG = "euroc_v1_01_easy_sample"
# Parameters that name a weights file, per node: what ``--models DIR`` points elsewhere.
WEIGHT_PARAMS = {
    "vio_node": ("weights_path",),
    "slam_node": ("depth_weights", "optimizer_weights"),
    "controller_node": ("network_path",),
    "safety_monitor_node": ("network_path",),
}
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


MODELS_HELP = (
    "folder of retrained weights (vio.pt, depth_code.pt, slam_optimizer.pt, governor.onnx: "
    "any of them); each replaces the params file's file of the same name"
)


def params_with_models(params_file: Path, models_dir: Path, out_file: Path) -> Path:
    """Write a copy of ``params_file`` whose weight parameters point into ``models_dir``.

    A weight parameter (``WEIGHT_PARAMS``) is replaced when ``models_dir`` has a file of the
    same name as its value; the others keep the shipped file, and the log says which.

    Raises:
        CommandError: ``models_dir`` is missing or holds none of the weight files.
    """
    import yaml

    from meetup_ros.ros.params import section_node_name

    if not models_dir.is_dir():
        raise CommandError(f"--models {str(models_dir)!r} is not a folder")
    check_params_file(params_file)
    document = yaml.safe_load(params_file.read_text())
    replaced, kept = [], []
    for section, node_params in document.items():
        node = section_node_name(section)
        keys = WEIGHT_PARAMS.get(node, ())
        params = node_params.get("ros__parameters") or {}
        for key in keys:
            if key not in params:
                continue
            candidate = models_dir / Path(str(params[key])).name
            if candidate.is_file():
                params[key] = str(candidate.resolve())
                replaced.append(f"{node}.{key}={candidate.name}")
            else:
                kept.append(f"{node}.{key}={params[key]}")
    if not replaced:
        raise CommandError(
            f"--models {str(models_dir)!r} holds none of the weight files the params file "
            f"names: {kept!r}"
        )
    logger.info("weights from %s: %s", models_dir, ", ".join(replaced))
    if kept:
        logger.warning("weights not in %s, shipped ones used: %s", models_dir, ", ".join(kept))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(
        f"# {params_file} with the weights of {models_dir.resolve()} (meetup-ros --models)\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return out_file


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="run pipeline nodes from a ROS params YAML (no ros2 launch needed)"
    )
    p.add_argument("--params", default=DEFAULT_PARAMS,
                   help=f"ROS params YAML, under config/ if not found (default {DEFAULT_PARAMS})")
    p.add_argument(
        "--nodes", nargs="+", default=list(PIPELINE_NODES), choices=list(PIPELINE_NODES),
        help="nodes to start (default: all four)",
    )
    p.add_argument("--models", default=None, metavar="DIR", help=MODELS_HELP)
    p.add_argument(
        "--use-sim-time", choices=("true", "false"), default="false",
        help="use_sim_time for every node, over the params file's (as the launch files do): "
             "false (default) on live sensors, true with a bag replay publishing /clock; "
             "with true and no /clock, periodic diagnostics and the monitor's watchdog wait",
    )
    p.set_defaults(func=_run)

    p = subparsers.add_parser(
        "demo", help="the main job: replay the bundled bag through the nodes and score them"
    )
    p.add_argument("--out", default="out/demo", help="output folder")
    p.add_argument("--bag", default=DEFAULT_BAG, help="input rosbag2 (data/ if relative)")
    p.add_argument("--params", default=DEFAULT_PARAMS,
                   help=f"ROS params YAML, under config/ if not found (default {DEFAULT_PARAMS})")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    p.add_argument(
        "--short", action="store_true",
        help="fewer stereo pairs in the offline scores (for tests); same replay",
    )
    p.add_argument("--timeout", type=float, default=300.0,
                   help="give up S seconds after the replay starts (the nodes' start-up is "
                        "not counted)")
    p.add_argument("--models", default=None, metavar="DIR", help=MODELS_HELP)
    p.set_defaults(func=_demo)


# ---- nodes, one process each --------------------------------------------------------------

def node_class(name: str) -> Any:
    import importlib

    module_name, _, class_name = PIPELINE_NODES[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_params_file(params_file: Path) -> None:
    """Fail early on a missing file or a section for a node not in the pipeline.

    (Each node rejects keys it does not declare when it starts.)

    Raises:
        CommandError: unreadable file or unknown section.
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


def _deaf_until_taken() -> None:
    """In a node's process before it runs Python: SIGINT and SIGTERM ignored until the node
    takes them (``ros/stop_signals.take``, entry.py's first lines). A Ctrl-C in the first
    0.1-0.3 s, while the interpreter itself started, killed it (-2) or ended it in "Fatal
    Python error: init_import_site" (a tester's group Ctrl-C at 0.1-0.3 s: `meetup-ros run`
    exited 1); Python keeps an inherited SIG_IGN until a handler is set. None is lost:
    ``NodeProcesses.stop`` sends its Ctrl-C again until the node is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class NodeProcesses:
    """The pipeline nodes as child processes (``python -m meetup_ros.nodes.entry <name>``),
    each stopping (as on Ctrl-C) if this process dies without stopping them (a SIGKILL)."""

    def __init__(self, params_file: Path, names: Sequence[str], log_dir: Path | None,
                 use_sim_time: str | None = None) -> None:
        self.params_file = params_file
        self.use_sim_time = use_sim_time
        self.names = list(names)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(self) -> None:
        for name in self.names:
            cmd = [sys.executable, "-m", "meetup_ros.nodes.entry", name, "--ros-args",
                   "--params-file", str(self.params_file)]
            if self.use_sim_time is not None:  # after the file: the later setting wins
                cmd += ["-p", f"use_sim_time:={self.use_sim_time}"]
            out: IO[bytes] | None = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                out = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop
                self._logs.append(out)
            self.procs[name] = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                env={**os.environ, "PYTHONUNBUFFERED": "1", EXIT_WITH_PARENT_ENV: "1"},
                preexec_fn=_deaf_until_taken,
            )
            logger.info("started %s (pid %d)", name, self.procs[name].pid)

    def exited(self) -> dict[str, int]:
        """Nodes that have exited already, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout_s: float = 20.0, resend_s: float = 0.5) -> dict[str, int]:
        """Ctrl-C every node (it publishes its final diagnostics), wait, kill stragglers.

        The Ctrl-C goes again every ``resend_s`` to a node still running: one still in its
        interpreter's start-up ignores it (``_deaf_until_taken``), and a node drops every
        stop signal after its first."""
        deadline = time.monotonic() + timeout_s
        while True:
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive or time.monotonic() >= deadline:
                break
            for proc in alive:
                proc.send_signal(signal.SIGINT)
            wait_until = min(deadline, time.monotonic() + resend_s)
            while time.monotonic() < wait_until and any(p.poll() is None for p in alive):
                time.sleep(0.02)
        codes: dict[str, int] = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                logger.error("%s did not stop within %.0f s; killing it", name, timeout_s)
                proc.kill()
            codes[name] = proc.wait()
        for handle in self._logs:
            handle.close()
        return codes

    def log_tail(self, name: str, lines: int = 15) -> str:
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def _run(args: argparse.Namespace) -> int:
    from meetup_ros import paths

    params_file = paths.config_path(args.params)
    check_params_file(params_file)
    if not args.models:
        return _run_nodes(params_file, args.nodes, args.use_sim_time)
    import tempfile

    # The rewritten params file lives as long as the nodes that read it.
    with tempfile.TemporaryDirectory(prefix="meetup_ros_") as tmp:
        return _run_nodes(
            params_with_models(params_file, Path(args.models), Path(tmp) / params_file.name),
            args.nodes, args.use_sim_time)


def _run_nodes(params_file: Path, names: list[str], use_sim_time: str | None = None) -> int:
    """Run the nodes until one exits, Ctrl-C or SIGTERM; 1 if any failed."""
    nodes = NodeProcesses(params_file, names, log_dir=None, use_sim_time=use_sim_time)
    # The nodes' own handling (ros/stop_signals.py): the first of Ctrl-C, SIGTERM (systemd,
    # containers, CI) or SIGUSR1 stops the nodes, later ones are dropped while they stop.
    # Taken also where the shell left SIGINT ignored (`meetup-ros run &` from a script could
    # not be stopped with it: a tester's).
    stop_signals.take()
    try:
        nodes.start()
        logger.info("running %s with %s; Ctrl-C to stop", names, params_file)
        while not nodes.exited():
            time.sleep(0.2)
        exited = nodes.exited()
        # a node that stopped cleanly (its own Ctrl-C) is no error; a failure is
        logger.log(logging.ERROR if any(exited.values()) else logging.WARNING,
                   "node(s) exited: %s; stopping the others", exited)
    except StopSignal as exc:
        logger.info("stopping the nodes on %s", exc)
    except KeyboardInterrupt:
        logger.info("stopping the nodes")
    finally:
        stop_signals.stopping()
    codes = nodes.stop()
    # `meetup-ros run` exits next: a Ctrl-C pressed again in its last second (the nodes'
    # interpreters ending) killed it (-2) after every node had stopped cleanly (a tester's).
    stop_signals.ignore_for_good()
    failed = {n: c for n, c in codes.items() if c != 0}
    if failed:
        logger.error("node(s) failed: %s", failed)
    return 1 if failed else 0


# ---- the main job ---------------------------------------------------------------------------

def _init_context() -> Any:
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    # Ctrl-C arrives as KeyboardInterrupt, so the demo can stop its nodes cleanly.
    rclpy.init(context=context, args=[], signal_handler_options=SignalHandlerOptions.NO)
    return context


def _wait_ready(helper: Any, nodes: NodeProcesses, timeout_s: float,
                settle_s: float | None = None) -> list[str]:
    """Wait until every node's subscriptions are in the graph; returns failures.

    Once every pipeline node is in the graph and what is missing has not changed for
    ``settle_s``, waiting longer cannot help (a params file that moved a node's input to
    another topic: a tester waited the whole 120 s for an error that named neither): the
    failure then names the topic's subscribers and each node's own subscriptions.
    """
    settle_s = READY_SETTLE_S if settle_s is None else settle_s
    deadline = time.monotonic() + timeout_s
    last: dict[str, int] | None = None
    settled_since = time.monotonic()
    missing: dict[str, int] = {}
    while time.monotonic() < deadline:
        if nodes.exited():
            return [f"{n}: exited with code {c} while starting:\n{nodes.log_tail(n)}"
                    for n, c in nodes.exited().items()]
        missing = {t: n for t, n in READY_SUBSCRIBERS.items() if helper.count_subscribers(t) < n}
        if not missing:
            return []
        if missing != last or not _all_subscribed(helper):
            last, settled_since = missing, time.monotonic()
        elif time.monotonic() - settled_since >= settle_s:
            return [f"every node is up, but after {settle_s:g} s: "
                    + _subscribers_said(helper, missing)]
        time.sleep(0.2)
    return [f"nodes not ready within {timeout_s:g} s: " + _subscribers_said(helper, missing)]


def _node_inputs(helper: Any) -> dict[str, list[str]]:
    """Each pipeline node in the graph -> the topics it subscribes to (not the ones every
    node has)."""
    inputs = {}
    for name, namespace in helper.get_node_names_and_namespaces():
        if name in PIPELINE_NODES:
            inputs[name] = sorted(t for t, _ in helper.get_subscriber_names_and_types_by_node(
                name, namespace) if t not in ("/parameter_events", "/clock"))
    return inputs


def _all_subscribed(helper: Any) -> bool:
    """Every pipeline node is in the graph with its inputs (a node is listed from its
    construction, seconds before its subscriptions: weights, the verifier's warm-up)."""
    inputs = _node_inputs(helper)
    return set(inputs) == set(PIPELINE_NODES) and all(inputs.values())


def _subscribers_said(helper: Any, missing: dict[str, int]) -> str:
    """Who subscribes to each topic short of subscribers, and what each pipeline node
    subscribes to (a topic renamed in the params file shows there)."""
    said = []
    for topic, want in missing.items():
        names = sorted({i.node_name for i in helper.get_subscriptions_info_by_topic(topic)})
        said.append(f"{topic} has {len(names)} subscriber(s) of the {want} the demo expects "
                    f"({', '.join(names) or 'none'})")
    own = [f"{name}: {topics}" for name, topics in _node_inputs(helper).items()]
    return ("; ".join(said) + ". The nodes subscribe to: " + "; ".join(own)
            + " (the demo plays the bundled topics: a params file must keep the nodes' inputs)")


def _wait_matched(helper: Any, topics: Sequence[str], timeout_s: float,
                  inputs: Sequence[str] = ()) -> None:
    """Wait until every subscription on each of ``topics`` is matched to its publishers,
    and every node's subscription on each of ``inputs`` (the replay's topics) is matched to
    every publisher the graph lists there: the match has two sides, and a slam_node starved
    of CPU at start-up matched the replay's image publishers after they had counted it,
    losing the second image of each camera (``matched_publishers``, ``NodeHealth``).

    The graph shows a node's endpoints before DDS has matched them to the other processes'
    endpoints, and a reliable volatile subscription misses what is published before its
    match: fresh clones' demos lost the first 2.2-2.35 s of /odom at the controller while the
    recorder (the earlier stand-in for every subscriber) was already matched. So each node
    reports, per topic it publishes, the subscriptions DDS has matched (the
    ``matched_subscriptions`` section of its /diagnostics, ``NodeHealth``), and the replay
    waits until that reaches the graph's subscriber count (the recorder's included) for each
    topic. The report still
    counts what a node did not receive (``*_lost_in_transport``).
    """
    from diagnostic_msgs.msg import DiagnosticArray

    from meetup_ros.ros.node_tools import MATCHED_PUBLISHERS_SECTION, MATCHED_SECTION

    # section -> topic -> reporting node -> matched count
    reports: dict[str, dict[str, dict[str, int]]] = {MATCHED_SECTION: {},
                                                     MATCHED_PUBLISHERS_SECTION: {}}
    matched, subscribed = reports[MATCHED_SECTION], reports[MATCHED_PUBLISHERS_SECTION]

    def on_diagnostics(msg: Any) -> None:
        for status in msg.status:
            node, _, section = status.name.partition(": ")
            if section in reports:
                for kv in status.values:
                    reports[section].setdefault(kv.key, {})[node] = int(kv.value)

    subscription = helper.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics,
                                              50)
    start = time.monotonic()
    deadline = start + timeout_s
    try:
        while time.monotonic() < deadline:
            unmatched = [t for t in topics if not matched.get(t)
                         or min(matched[t].values()) < helper.count_subscribers(t)]
            # every subscriber the graph lists has reported, each matched to every publisher
            unmatched += [t for t in inputs
                          if len(subscribed.get(t, {})) < helper.count_subscribers(t)
                          or min(subscribed.get(t, {}).values(), default=0)
                          < max(1, helper.count_publishers(t))]
            if not unmatched:
                logger.info("every subscription on %s matched after %.2f s",
                            ", ".join([*topics, *inputs]), time.monotonic() - start)
                return
            time.sleep(0.05)
        logger.warning("subscriptions on %s not all matched after %.0f s (per publisher: %s); "
                       "starting the replay anyway (early messages may be lost)",
                       unmatched, timeout_s, reports)
    finally:
        helper.destroy_subscription(subscription)


def run_demo(
    bag: Path,
    out_dir: Path,
    *,
    params_file: Path,
    rate: float = 1.0,
    short: bool = False,
    timeout_s: float = 300.0,
    drain_quiet_s: float = 1.5,
    models_dir: Path | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Replay ``bag`` through the pipeline nodes, record, score; returns (report, failures).

    ``models_dir``: retrained weights that replace the shipped ones of the same names (see
    :func:`params_with_models`); the offline reports are then taken from that folder only,
    since the shipped ones score the shipped weights.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from meetup_ros import paths
    from meetup_ros.bags.reader import bag_info
    from meetup_ros.evaluation.report import build_report
    from meetup_ros.nodes.bag_recorder import BagRecorder
    from meetup_ros.nodes.bag_replay_node import BagReplayNode
    from meetup_ros.ros.node_tools import freeze_startup_heap

    check_params_file(params_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_dir = paths.share_dir() / "models"
    if models_dir is not None:
        params_file = params_with_models(params_file, models_dir, out_dir / "params.yaml")
        weights_dir = models_dir
    recorded_bag = out_dir / "outputs_bag"
    if recorded_bag.exists():
        shutil.rmtree(recorded_bag)  # the demo's own output of a previous run
    # and its report: a run that fails must not leave the previous figures looking current
    (out_dir / "report.json").unlink(missing_ok=True)
    failures: list[str] = []
    # the replay publishes /clock: the nodes follow it (the file's default is live sensors)
    nodes = NodeProcesses(params_file, list(PIPELINE_NODES), log_dir=out_dir / "logs",
                          use_sim_time="true")
    context = _init_context()
    # One thread: the recorder's callbacks only append, and rclpy's multi-threaded executor
    # cost this process half a core in bookkeeping during the replay (lateness p99 350-820
    # ms against 5 ms now), taken from the nodes it measures.
    executor = SingleThreadedExecutor(context=context)
    stop_spin = threading.Event()

    def spin() -> None:
        while not stop_spin.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.1)

    spinner = threading.Thread(target=spin, name="demo", daemon=True)
    recorder = None
    replay = None
    wall_s = float("nan")
    try:
        helper = Node("meetup_demo", context=context)
        in_bag = bag_info([str(bag)], count_messages=False)["topics"]
        replay = BagReplayNode(
            bag=[str(bag)], rate=rate, context=context, start_delay_s=0.0,
            wait_for_subscribers=1, wait_timeout_s=REPLAY_WAIT_TIMEOUT_S, wait_fail=True,
            wait_topics=[t for t in REPLAY_WAIT_TOPICS if t in in_bag],
        )
        executor.add_node(helper)
        executor.add_node(replay)
        spinner.start()
        recorder = BagRecorder(helper, recorded_bag, list(OUTPUT_TOPICS), msgtypes=OUTPUT_TOPICS)
        recorder.start()
        nodes.start()
        failures += _wait_ready(helper, nodes, timeout_s=120.0)
        if not failures:
            _wait_matched(helper, MATCHED_BEFORE_REPLAY, timeout_s=REPLAY_WAIT_TIMEOUT_S,
                          inputs=[t for t in REPLAY_WAIT_TOPICS if t in in_bag])
            freeze_startup_heap(helper.get_logger())  # no full collection stalls the replay
            wall_start = time.monotonic()
            replay.start()
            if not replay.wait(timeout_s):
                failures.append(f"replay did not finish within {timeout_s:g} s")
            # Drain: the nodes are done when no new output was recorded for drain_quiet_s.
            # /diagnostics does not count: the nodes publish it on their own clocks (every
            # 0.25 s at start-up), not in answer to the replay.
            def outputs() -> int:
                return sum(n for t, n in recorder.counts.items() if t != "/diagnostics")

            last, quiet_since = outputs(), time.monotonic()
            while time.monotonic() - quiet_since < drain_quiet_s:
                time.sleep(0.1)
                now = outputs()
                if now != last:
                    last, quiet_since = now, time.monotonic()
                if time.monotonic() - wall_start > timeout_s:
                    failures.append(f"outputs still coming after {timeout_s:g} s")
                    break
            # From the first message published (after the wait) to the last output recorded.
            wall_s = quiet_since - wall_start - replay.report.wait_s
            if replay.report.error:
                failures.append(f"replay: {replay.report.error}")
            for name, code in nodes.exited().items():
                failures.append(f"{name}: exited with code {code} during the replay:\n"
                                f"{nodes.log_tail(name)}")
    finally:
        running = set(nodes.procs) - set(nodes.exited())
        codes = nodes.stop()
        for name in running:
            if codes.get(name, 0) != 0:
                failures.append(f"{name}: exit code {codes[name]} at shutdown:\n"
                                f"{nodes.log_tail(name)}")
        time.sleep(0.5)  # the final /diagnostics reach the recorder
        if recorder is not None:
            recorder.stop()
        stop_spin.set()
        if spinner.is_alive():
            spinner.join(timeout=5.0)
        # listed before the shutdown, which forgets the executor's nodes (rclpy 9); the
        # context's shutdown would leave every other node, with its DDS endpoints, alive
        spun = executor.get_nodes()
        executor.shutdown(timeout_sec=2.0)
        for node in spun:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
    if replay is None or not replay.done.is_set():
        return {}, failures  # the nodes never ran on the bag: nothing to score
    if replay.report.error:
        # a corrupt or unreadable bag stops the replay part-way: figures over the part
        # played would pass for the bag's
        failures.append(f"replay of {str(bag)!r} failed: {replay.report.error}")
        return {}, failures
    from meetup_ros.bags.errors import BagError

    try:
        report = build_report(
            recorded_bag=recorded_bag,
            input_bag=bag,
            node_summaries=None,
            replay={
                "wall_s": wall_s,
                "bag_duration_s": replay.report.bag_duration_s,
                "rate": rate,
                "published": dict(replay.report.published),
                "skipped_topics": dict(replay.report.skipped_topics),
            },
            out_dir=out_dir,
            short=short,
            offline_reports=tuple(weights_dir / name for name in OFFLINE_REPORTS
                                  if (weights_dir / name).is_file()),
            **_slam_weights(params_file),
        )
    except BagError as exc:  # the input bag read again for ground truth, or the recording
        failures.append(f"scoring: {exc}")
        return {}, failures
    if models_dir is not None:
        report["models"] = str(models_dir.resolve())
        (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report, failures


def _scoring_problem(bag: Path) -> str:
    """What keeps the bag from being scored, found before any node starts ("" if nothing):
    a tester's one NaN pose ended the demo in a traceback after the whole run, naming
    nothing, and a camera message whose data was half its step * height failed the scoring
    after it (the nodes had dropped that frame). The scoring reads the bag as this does."""
    from meetup_ros.bags.errors import BagError
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.odometry.dataset import OdometryError, check_groundtruth_values

    try:
        seq = read_sequence(bag)
    except BagError as exc:
        return f"{exc} (the demo's figures are scored against this bag: refused before the " \
               "nodes start)"
    try:
        check_groundtruth_values(seq, use="the demo's trajectory figures are scored against "
                                          "it: refused before the nodes start")
    except OdometryError as exc:
        return str(exc)
    return ""


def _slam_weights(params_file: Path) -> dict[str, str]:
    """The depth and optimiser weights slam_node runs with, for the report's offline scores."""
    import yaml

    from meetup_ros.ros.params import section_node_name

    document = yaml.safe_load(params_file.read_text())
    for section, node_params in document.items():
        if section_node_name(section) == "slam_node":
            params = node_params.get("ros__parameters") or {}
            return {k: str(params[k]) for k in ("depth_weights", "optimizer_weights")
                    if k in params}
    return {}


def check_positive_option(option: str, value: float) -> None:
    """Refuse a non-finite or non-positive number given to ``option`` (a CLI flag).

    Raises:
        CommandError: naming the option, the value and what is expected.
    """
    if not (math.isfinite(value) and value > 0):
        raise CommandError(f"{option} {value!r}: expected a finite value > 0")


def _demo(args: argparse.Namespace) -> int:
    from meetup_ros import paths

    # Before anything starts: --rate 0 ended in the replay node's traceback, and --timeout 0
    # ran the nodes for ~11 s before failing.
    check_positive_option("--rate", args.rate)
    check_positive_option("--timeout", args.timeout)
    # before the bag and the nodes: --out a file was a FileExistsError traceback (a tester's)
    check_out_dir(Path(args.out))
    bag = paths.data_path(args.bag)
    if not bag.exists():
        looked = "" if bag == Path(args.bag) else f" (nor {str(bag)!r} under data/)"
        raise CommandError(f"bag {args.bag!r} does not exist{looked}")
    from meetup_ros.bags.errors import BagError
    from meetup_ros.bags.reader import bag_info

    out_dir = Path(args.out)
    try:
        info = bag_info(bag)  # its checksums and index, before any node starts
    except BagError as exc:
        (out_dir / "report.json").unlink(missing_ok=True)  # not this bag's figures
        raise CommandError(str(exc)) from None
    absent = [t for t in DEMO_TOPICS if t not in info["topics"]]
    empty = [t for t in DEMO_TOPICS if t in info["topics"] and info["topics"][t][1] == 0]
    if absent or empty:
        # Before any node starts: without them the nodes ran, the replay ended and the
        # scoring failed as a "node failure" though no node had failed.
        (out_dir / "report.json").unlink(missing_ok=True)
        problems = ([f"lacks {absent!r}"] if absent else []) + (
            [f"has no message on {empty!r}"] if empty else [])
        raise CommandError(f"bag {str(bag)!r} {' and '.join(problems)}, which the demo needs "
                           f"(it needs {list(DEMO_TOPICS)!r})")
    problem = _scoring_problem(bag)
    if problem:
        (out_dir / "report.json").unlink(missing_ok=True)
        raise CommandError(problem)
    params_file = paths.config_path(args.params)
    start = time.monotonic()
    report, failures = run_demo(
        bag, out_dir, params_file=params_file, rate=args.rate, short=args.short,
        timeout_s=args.timeout, models_dir=Path(args.models) if args.models else None,
    )
    for failure in failures:
        # not always a node's: a timeout or the scoring too (a tester's "node failure: scoring")
        logger.error("demo failure: %s", failure)
    if report:
        keys = ("ate_rmse_m", "rpe_trans_m", "ate_rmse_m_dead_reckoning", "frames",
                "imu_samples_received", "imu_samples_dropped", "certificates", "commands",
                "depth_absrel",
                "learned_over_gn_iterations", "replay_speedup", "latency_ms")
        for key in keys:
            logger.info("%s: %s", key, report.get(key))
        if report.get("errors"):
            logger.error("figures not computed: %s", report["errors"])
        print(f"report: {out_dir / 'report.json'} ({time.monotonic() - start:.1f} s)")
    return 1 if failures or not report or report.get("errors") else 0
