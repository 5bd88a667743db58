"""The pipeline nodes, started for real in this process and fed over DDS (loopback only).

Each test builds its nodes in a fresh rclpy context with a driver node that publishes inputs
(messages from the bundled bag, or crafted bad ones) and collects outputs, all spun by one
multi-threaded executor on a background thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import PoseStamped, TwistStamped  # noqa: E402
from governors import always_continue_onnx  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, Imu, JointState, PointCloud2  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from meetup_ros.control.state import STATE_NAMES  # noqa: E402
from meetup_ros.ros import convert as cv  # noqa: E402
from meetup_ros.ros.node_tools import reliable_qos  # noqa: E402

pytestmark = pytest.mark.dds

REPO_ROOT = Path(__file__).resolve().parent.parent
BAG = REPO_ROOT / "data" / "euroc_v1_01_easy_sample"
STAMP0_NS = 1_403_715_273_262_142_976


class Harness:
    """A context, an executor thread, and a driver node with publishers and collectors."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, args=[])
        # One thread: the pool of a multi-threaded executor only adds GIL contention here.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.driver = Node("test_driver", context=self.context)
        self.executor.add_node(self.driver)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._publishers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # surfaced by close(): a node callback raised
                self.errors.append(exc)

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        return node

    def collect(self, topic: str, msg_type: Any) -> None:
        def store(msg: Any) -> None:
            with self._lock:
                self.received[topic].append(msg)

        self.driver.create_subscription(msg_type, topic, store, reliable_qos(500))

    def publish(self, topic: str, msg: Any) -> None:
        if topic not in self._publishers:
            self._publishers[topic] = self.driver.create_publisher(
                type(msg), topic, reliable_qos(500)
            )
            self.wait_for(lambda: self._publishers[topic].get_subscription_count() > 0, 5.0,
                          f"a subscriber on {topic}")
        self._publishers[topic].publish(msg)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")

    def count(self, topic: str) -> int:
        with self._lock:
            return len(self.received[topic])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        # The nodes are listed before the executor's shutdown, which forgets them (rclpy 9:
        # get_nodes() is empty after it), and destroyed here: the context's shutdown leaves
        # every other node alive (it untracks each node from the list it is iterating). A node
        # left alive keeps its subscriptions matched after the test, and the bag replay of a
        # later test, waiting for one matched subscription per topic, started on a previous
        # test's vio_node: the frames published before the node under test matched were lost.
        nodes = list(self.executor.get_nodes())
        self.executor.shutdown(timeout_sec=2)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        assert not self.errors, f"a node callback raised: {self.errors!r}"


def _overrides(**values: Any) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def _odom(stamp_ns: int, forward_mps: float, twist_var: float = 1e-4) -> Odometry:
    # EuRoC axes: forward = body +z.
    return cv.odometry_msg(
        stamp_ns, np.eye(4), [0.0, 0.0, forward_mps], [0.0, 0.0, 0.0],
        np.eye(6) * 1e-4, np.eye(6) * twist_var,
    )


def _depth(stamp_ns: int, depth_m: float) -> Image:
    depth = np.full((48, 64), depth_m, dtype=np.float32)
    depth[:4] = np.nan  # invalid rows outside the central window
    return cv.array_to_image(depth, "32FC1", stamp_ns, "cam0")


# ---- controller_node ----------------------------------------------------------------------

def test_controller_state_and_command_share_the_stamp(harness: Harness, tmp_path: Path) -> None:
    from meetup_ros.nodes.controller_node import ControllerNode

    onnx_path = always_continue_onnx(tmp_path / "g.onnx")
    node = harness.add(ControllerNode(
        context=harness.context,
        parameter_overrides=_overrides(network_path=str(onnx_path), diagnostics_period_s=0.0),
    ))
    harness.collect("/controller/state", JointState)
    harness.collect("/controller/command", TwistStamped)
    harness.publish("/depth", _depth(STAMP0_NS, 2.5))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 1, 5, "depth")
    harness.publish("/odom", _odom(STAMP0_NS + 50_000_000, 0.8))
    harness.wait_for(lambda: harness.count("/controller/command") == 1, 5, "a command")
    state_msg = harness.received["/controller/state"][0]
    command = harness.received["/controller/command"][0]
    assert state_msg.header.stamp == command.header.stamp
    assert cv.stamp_to_ns(command.header.stamp) == STAMP0_NS + 50_000_000
    assert list(state_msg.name) == list(STATE_NAMES)
    # no odometry at the depth's stamp: 0.8 m/s x 0.05 s travelled since comes off the 2.5 m
    np.testing.assert_allclose(state_msg.position, [0.8, 0.0, 0.0, 0.0, 2.46], atol=1e-9)
    assert command.twist.linear.z == pytest.approx(1.0)  # 'continue' speed along body +z

    # Bad input: a mono8 image on /depth is logged and dropped; the node keeps running.
    harness.publish("/depth", cv.array_to_image(np.zeros((4, 4), np.uint8), "mono8", 1, "x"))
    harness.wait_for(lambda: node.health.counters["bad_depth"] == 1, 5, "bad_depth")
    assert "encoding 'mono8'" in node.health.last_problem
    # Time going back: the held depth is dropped; the state uses the pessimistic default.
    harness.publish("/odom", _odom(STAMP0_NS, 0.8))
    harness.wait_for(lambda: harness.count("/controller/state") == 2, 5, "a second state")
    assert node.health.counters["time_jumped_back"] == 1
    assert harness.received["/controller/state"][1].position[4] == pytest.approx(0.1)


# ---- safety_monitor_node ------------------------------------------------------------------

def _monitor(harness: Harness, onnx_path: Path, **params: Any) -> Any:
    from meetup_ros.nodes.safety_monitor_node import SafetyMonitorNode

    values = {
        "network_path": str(onnx_path),
        "property_paths": [str(REPO_ROOT / "config" / "governor_property.yaml")],
        "diagnostics_period_s": 0.0,
        # The states here carry EuRoC's 2014 stamps on the system clock: the age check (on
        # by default) is off unless a test turns it on.
        "max_state_age_s": 0.0,
        **params,
    }
    node = harness.add(SafetyMonitorNode(context=harness.context,
                                         parameter_overrides=_overrides(**values)))
    for topic, kind in (("/cmd", TwistStamped), ("/safety/status", String),
                        ("/diagnostics", DiagnosticArray)):
        harness.collect(topic, kind)
    return node


def _propose(harness: Harness, stamp_ns: int, state: list[float], speed_mps: float) -> None:
    harness.publish("/controller/state", cv.named_vector_msg(stamp_ns, STATE_NAMES,
                                                             np.array(state)))
    harness.publish("/controller/command",
                    cv.twist_stamped_msg(stamp_ns, (0.0, 0.0, speed_mps), (0, 0, 0), "base_link"))


def _last_certificate(harness: Harness) -> Any:
    for array in reversed(harness.received["/diagnostics"]):
        for status in array.status:
            if status.name.endswith("certificate"):
                return status
    raise AssertionError("no certificate on /diagnostics")


def test_monitor_gate_open_only_when_verified(harness: Harness, tmp_path: Path) -> None:
    """An always-'continue' network: verified far from the property's domain (command
    passes), violated inside it (fallback, ERROR with a counterexample)."""
    onnx_path = always_continue_onnx(tmp_path / "g.onnx")
    node = _monitor(harness, onnx_path, use_odometry_covariance=False)
    # Slow and far: the region misses the property's domain, so the property holds there.
    _propose(harness, STAMP0_NS, [0.1, 0.0, 0.0, 0.0, 5.0], 1.0)
    harness.wait_for(lambda: harness.count("/cmd") == 1, 10, "/cmd after a verified state")
    assert harness.received["/safety/status"][-1].data == "verified"
    assert harness.received["/cmd"][-1].twist.linear.z == pytest.approx(1.0)
    assert _last_certificate(harness).level == DiagnosticStatus.OK
    # Fast and close: 'continue' on top inside the domain, a real counterexample.
    _propose(harness, STAMP0_NS + 50_000_000, [1.0, 0.0, 0.0, 0.0, 0.6], 1.0)
    harness.wait_for(lambda: harness.count("/cmd") == 2, 10, "/cmd after a violated state")
    assert harness.received["/safety/status"][-1].data == "violated"
    fallback = harness.received["/cmd"][-1]
    assert fallback.twist.linear.z == 0.0
    assert cv.stamp_to_ns(fallback.header.stamp) == STAMP0_NS + 50_000_000
    certificate = _last_certificate(harness)
    assert certificate.level == DiagnosticStatus.ERROR
    values = {kv.key: kv.value for kv in certificate.values}
    assert "counterexample_x" in values and "counterexample_y" in values
    assert node.certificates["violated"] == 1 and node.certificates["verified"] == 1


def test_monitor_gate_closed_on_unknown(harness: Harness, tmp_path: Path) -> None:
    """A deadline too short to prove anything non-trivial: unknown, so the fallback goes out."""
    onnx_path = REPO_ROOT / "models" / "governor.onnx"
    node = _monitor(harness, onnx_path, deadline_s=1e-6, deadline_grace_s=0.0,
                    use_odometry_covariance=False)
    # Inside the domain; the shipped governor is safe there but there is no time to prove it.
    _propose(harness, STAMP0_NS, [1.0, 0.0, 0.0, 0.0, 0.6], 1.0)
    harness.wait_for(lambda: harness.count("/cmd") == 1, 10, "/cmd after an unknown state")
    assert harness.received["/safety/status"][-1].data == "unknown"
    assert harness.received["/cmd"][-1].twist.linear.z == 0.0
    assert _last_certificate(harness).level == DiagnosticStatus.WARN
    # A state with a value missing from the named vector is logged; the node goes on.
    harness.publish("/controller/state", cv.named_vector_msg(STAMP0_NS + 1, ["a"], np.zeros(1)))
    harness.wait_for(lambda: node.health.counters["bad_state"] == 1, 5, "bad_state")
    assert node.certificates["unknown"] == 1


# ---- vio_node and slam_node on the bundled bag ----------------------------------------------

def _replay(topics: list[str], rate: float = 1.0) -> dict[str, int]:
    """Play the bundled bag's ``topics`` over DDS from another process (the pip-only
    ``bag_replay_node``), so that its thread does not share this process's GIL with the node
    under test; returns the messages per topic it published. The replay starts once each of
    its publishers has a matched subscription (the node under test subscribes to every topic
    played): DDS discovery between processes took over 1.5 s on a loaded machine, and what is
    published before matching is lost."""
    from meetup_ros.bags.reader import bag_info

    cmd = [
        sys.executable, "-m", "meetup_ros.nodes.bag_replay_node", "--ros-args",
        "-p", f"bag:={BAG}", "-p", f"rate:={rate}", "-p", "publish_clock:=false",
        "-p", f"topics:=[{','.join(topics)}]", "-p", "start_delay_s:=0.0",
        "-p", "wait_for_subscribers:=1", "-p", "wait_timeout_s:=20.0", "-p", "wait_fail:=true",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = bag_info(BAG)["topics"]
    return {topic: int(counts[topic][1]) for topic in topics}


def test_vio_node_on_the_bag(harness: Harness) -> None:
    from meetup_ros.nodes.vio_node import VioNode

    node = harness.add(VioNode(context=harness.context,
                               parameter_overrides=_overrides(diagnostics_period_s=0.0)))
    harness.collect("/odom", Odometry)
    published = _replay(["/imu0", "/cam0/image_raw"])
    frames = published["/cam0/image_raw"]
    harness.wait_for(lambda: node.health.counters["frames_received"] == frames, 40,
                     f"{frames} frames (node: {node.summary()})")
    harness.wait_for(lambda: harness.count("/odom") >= frames - 2, 40,
                     f"odometry (node: {node.summary()})")
    odom = harness.received["/odom"][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
    pose_cov = np.array(odom.pose.covariance).reshape(6, 6)
    assert np.all(np.diag(pose_cov) > 0), "pose covariance not filled"
    imu = published["/imu0"]
    harness.wait_for(lambda: node.health.counters["imu_accepted"] == imu, 40,
                     f"{imu} IMU samples (node: {node.summary()})")
    assert node.estimator_stats().get("dropped", 0) == 0

    # Bad input, each logged with the topic, the node keeps running.
    bad_imu = Imu()
    bad_imu.header.stamp = cv.ns_to_stamp(STAMP0_NS + 10**10)
    bad_imu.linear_acceleration.x = float("nan")
    harness.publish("/imu0", bad_imu)
    harness.wait_for(lambda: node.health.counters["bad_imu"] == 1, 5, "bad_imu")
    assert "/imu0: linear_acceleration" in node.health.last_problem
    harness.publish("/cam0/image_raw",
                    cv.array_to_image(np.zeros((10, 10), np.uint8), "mono8", STAMP0_NS, "cam0"))
    harness.wait_for(lambda: node.health.counters["bad_image"] == 1, 5, "bad_image")
    assert "image size" in node.health.last_problem

    # A loop: the bag again from its start, stamps go back, the estimator resets and goes on.
    published_before = harness.count("/odom")
    _replay(["/imu0", "/cam0/image_raw"])
    harness.wait_for(lambda: harness.count("/odom") >= published_before + frames - 2, 40,
                     f"odometry after the loop (node: {node.summary()})")
    assert node.health.counters["resets"] >= 1


def test_slam_node_on_the_bag(harness: Harness) -> None:
    from meetup_ros.nodes.slam_node import SlamNode

    node = harness.add(SlamNode(context=harness.context,
                                parameter_overrides=_overrides(diagnostics_period_s=0.0)))
    harness.collect("/depth", Image)
    harness.collect("/slam/pose", PoseStamped)
    harness.collect("/slam/points", PointCloud2)
    topics = ["/cam0/image_raw", "/cam1/image_raw", "/cam0/camera_info", "/cam1/camera_info"]
    _replay(topics)
    harness.wait_for(lambda: harness.count("/depth") >= 1, 30, "a keyframe depth")
    harness.wait_for(lambda: harness.count("/slam/points") == harness.count("/depth"), 10,
                     "points for every depth")
    depth_msg = harness.received["/depth"][0]
    assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == "cam0"
    depth = cv.image_to_depth_m(depth_msg)
    assert depth.shape == (240, 376)
    valid = np.isfinite(depth)
    assert valid.mean() > 0.3 and np.all(depth[valid] > 0)
    points = cv.point_cloud_xyz_to_array(harness.received["/slam/points"][0])
    assert points.shape[0] > 0 and np.all(np.isfinite(points))
    assert node.health.counters["pairs_processed"] >= harness.count("/depth")
    # No /odom in this replay: a stereo pair says nothing of the motion, so no pose (the
    # pose with odometry: test_slam_node_prior.py).
    assert harness.count("/slam/pose") == 0
    assert node.health.counters["pairs_without_prior"] == node.health.counters[
        "pairs_processed"]
    # each keyframe timed in wall and in CPU time (the process's: here the test's own
    # threads count too, so CPU time is not bounded by the wall time as in a node process)
    latency = node.summary()["latency_ms"]
    kf, cpu = latency["keyframe"], latency["keyframe_cpu"]
    assert kf["count"] == cpu["count"] == node.health.counters["keyframes_published"] >= 1
    assert cpu["p50"] > 0.0 and kf["p50"] > 0.0


@pytest.mark.parametrize(
    ("module", "cls", "param_name"),
    [
        ("vio_node", "VioNode", "weights_path"),
        ("slam_node", "SlamNode", "depth_weights"),
        ("controller_node", "ControllerNode", "network_path"),
        ("safety_monitor_node", "SafetyMonitorNode", "network_path"),
    ],
)
def test_missing_weights_stop_the_node_naming_the_file(
    harness: Harness, tmp_path: Path, module: str, cls: str, param_name: str
) -> None:
    import importlib

    node_cls = getattr(importlib.import_module(f"meetup_ros.nodes.{module}"), cls)
    missing = tmp_path / "missing_weights.bin"
    with pytest.raises(Exception, match=r"missing_weights\.bin"):
        node_cls(context=harness.context,
                 parameter_overrides=_overrides(**{param_name: str(missing)}))


def test_unknown_parameter_is_rejected(harness: Harness) -> None:
    from meetup_ros.nodes.controller_node import ControllerNode
    from meetup_ros.ros import RosInputError

    with pytest.raises(RosInputError, match=r"unknown parameter\(s\) \['network'\]"):
        ControllerNode(context=harness.context, parameter_overrides=_overrides(network="x"))


def test_monitor_region_grows_with_the_odometry_covariance(
    harness: Harness, tmp_path: Path
) -> None:
    """Speed 0.3 m/s misses the property's domain (>= 0.5 m/s) by itself, but not with the
    odometry's forward-speed sigma of 0.2 m/s at k_sigma 3 (same stamp as the state)."""
    onnx_path = always_continue_onnx(tmp_path / "g.onnx")
    node = _monitor(harness, onnx_path, use_odometry_covariance=True, k_sigma=3.0,
                    radii=[0.05, 0.05, 0.05, 0.05, 0.1])
    cov = np.eye(6) * 1e-8
    cov[2, 2] = 0.04  # forward = body +z
    harness.publish("/odom", cv.odometry_msg(STAMP0_NS, np.eye(4), [0, 0, 0.3], [0, 0, 0],
                                             np.eye(6) * 1e-4, cov))
    harness.wait_for(lambda: len(node.pairing.odometry) == 1, 5, "the odometry covariance")
    _propose(harness, STAMP0_NS, [0.3, 0.0, 0.0, 0.0, 0.6], 1.0)
    harness.wait_for(lambda: harness.count("/cmd") == 1, 10, "/cmd")
    assert harness.received["/safety/status"][-1].data == "violated"
    upper = {kv.key: kv.value for kv in _last_certificate(harness).values}["upper"]
    assert float(upper.strip("[]").split(",")[0]) == pytest.approx(0.3 + 3 * 0.2 + 0.05)


def test_slam_node_lowers_only_its_own_priority(harness: Harness, tmp_path: Path) -> None:
    """A negative nice_increment is refused naming it; a positive one renices the process
    (checked in a child process, so that the test run keeps its priority)."""
    import subprocess
    import sys

    from meetup_ros.nodes.slam_node import SlamNode
    from meetup_ros.ros import RosInputError

    with pytest.raises(RosInputError, match=r"nice_increment -1 < 0"):
        SlamNode(context=harness.context, parameter_overrides=_overrides(nice_increment=-1))
    code = (
        "import os, rclpy\n"
        "from rclpy.node import Node\n"
        "from meetup_ros.ros.node_tools import lower_cpu_priority\n"
        "rclpy.init(); n = Node('nice_probe'); before = os.nice(0)\n"
        "lower_cpu_priority(n, 3); print(os.nice(0) - before)\n"
        "n.destroy_node(); rclpy.shutdown()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "3"


REALTIME_PROBE = """
import os, sys, threading, time
import rclpy
from rclpy.node import Node
from meetup_ros.ros.node_tools import raise_to_realtime
if len(sys.argv) > 2:  # an unprivileged user: no root, no CAP_SYS_NICE
    os.setgid(int(sys.argv[2])); os.setuid(int(sys.argv[2]))
# no log files: the unprivileged user cannot write the test run's ~/.ros/log
rclpy.init(args=['--ros-args', '--disable-external-lib-logs'])
n = Node('rt_probe')  # rclpy's and DDS's threads exist by now
raise_to_realtime(n.get_logger(), int(sys.argv[1]))
later = threading.Thread(target=time.sleep, args=(0.5,)); later.start()
tids = os.listdir('/proc/self/task')
print(sorted({os.sched_getscheduler(int(t)) for t in tids}), len(tids))
later.join(); n.destroy_node(); rclpy.shutdown()
"""


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="needs SCHED_FIFO (Linux)")
def test_realtime_priority_puts_every_thread_under_sched_fifo_or_warns() -> None:
    """vio_node's and the monitor's realtime_priority: every thread of the process (rclpy's
    and DDS's, and the ones started after) under SCHED_FIFO; without the privilege a warning
    naming what is missing, and normal priority. In child processes: the test run's own
    scheduling stays as it is."""

    def probe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", REALTIME_PROBE, *args],
                              capture_output=True, text=True, timeout=60, check=True)

    normal = probe("0")
    assert normal.stdout.split("]")[0] == f"[{os.SCHED_OTHER}"
    if os.geteuid() == 0:
        fifo = probe("20")
        assert fifo.stdout.split("]")[0] == f"[{os.SCHED_FIFO}", fifo.stdout
        assert int(fifo.stdout.split()[-1]) > 2  # rclpy's, DDS's and the later one included
        assert "SCHED_FIFO 20" in fifo.stderr
        unprivileged = probe("20", "65534")  # nobody
    else:
        unprivileged = probe("20")
    if unprivileged.stdout.split("]")[0] == f"[{os.SCHED_FIFO}":
        pytest.skip("this user may use SCHED_FIFO (an rtprio limit): no refusal to check")
    assert unprivileged.stdout.split("]")[0] == f"[{os.SCHED_OTHER}"
    assert "not permitted to use SCHED_FIFO" in unprivileged.stderr, unprivileged.stderr


def _section_reports(harness: Harness, status_name: str) -> list[dict[str, str]]:
    """Every /diagnostics status named ``status_name`` from now on, as key -> value."""
    reports: list[dict[str, str]] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == status_name:
                reports.append({kv.key: kv.value for kv in status.values})

    harness.driver.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    return reports


def test_node_health_reports_matched_subscriptions_before_any_clock(harness: Harness) -> None:
    """With use_sim_time and no /clock, a node still reports on /diagnostics, every 0.25 s on
    the steady clock, how many subscriptions DDS has matched per topic it publishes: what the
    demo waits on before its replay (cli/run.py::_wait_matched)."""
    from meetup_ros.ros.node_tools import MATCHED_SECTION, NodeHealth

    node = Node("matched_probe", context=harness.context,
                parameter_overrides=_overrides(use_sim_time=True))
    node.create_publisher(String, "/matched_probe/out", reliable_qos(10))
    NodeHealth(node, [])
    harness.add(node)
    reports = _section_reports(harness, f"matched_probe: {MATCHED_SECTION}")
    harness.wait_for(lambda: bool(reports), 5.0, "a matched-subscriptions report")
    assert "/diagnostics" not in reports[-1] and "/rosout" not in reports[-1]
    assert reports[-1].get("/matched_probe/out") == "0"  # nobody subscribes yet
    harness.collect("/matched_probe/out", String)
    harness.wait_for(lambda: reports[-1].get("/matched_probe/out") == "1", 5.0,
                     "the new subscription reported as matched")


def test_node_health_reports_its_subscriptions_matched_publishers(harness: Harness) -> None:
    """The other side of the match: a subscription is matched to a publisher some time after
    the publisher counts it, and the demo's replay waits for both (a starved slam_node lost
    the replay's second image of each camera in two full test runs)."""
    from meetup_ros.ros.node_tools import MATCHED_PUBLISHERS_SECTION, NodeHealth

    node = Node("input_probe", context=harness.context)
    node.create_subscription(String, "/input_probe/in", lambda msg: None, reliable_qos(10))
    NodeHealth(node, [])
    harness.add(node)
    reports = _section_reports(harness, f"input_probe: {MATCHED_PUBLISHERS_SECTION}")
    harness.wait_for(lambda: bool(reports), 5.0, "a matched-publishers report")
    assert "/parameter_events" not in reports[-1]
    assert reports[-1].get("/input_probe/in") == "0"  # nobody publishes yet
    harness.driver.create_publisher(String, "/input_probe/in", reliable_qos(10))
    harness.wait_for(lambda: reports[-1].get("/input_probe/in") == "1", 5.0,
                     "the new publisher reported as matched")


def test_node_health_warning_clears_after_the_problem_stops(harness: Harness) -> None:
    from meetup_ros.ros.node_tools import LEVELS, NodeHealth

    node = harness.add(Node("health_probe", context=harness.context))
    health = NodeHealth(node, [], period_s=0.0)
    assert health.status().level == LEVELS["OK"]
    health.problem("bad_imu", "/imu0: dropped")
    status = health.status()
    assert status.level == LEVELS["WARN"] and status.message == "/imu0: dropped"
    health._last_problem_at -= NodeHealth.WARN_HOLD_S + 1.0  # as if it happened 11 s ago
    status = health.status()
    assert status.level == LEVELS["OK"]
    assert "last problem 11 s ago: /imu0: dropped" in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values["bad_imu"] == "1"  # the count stays
    health.ongoing("/imu0: still silent")  # a condition that lasts keeps the status at WARN
    assert health.status().level == LEVELS["WARN"]
    assert health.counters["bad_imu"] == 1  # not counted again


THREADS_PROBE = """
import cv2, numpy, torch, json, sys
from threadpoolctl import threadpool_info
from meetup_ros.ros.node_tools import limit_cpu_threads
before = {i['filepath']: i['num_threads'] for i in threadpool_info()}
limit_cpu_threads(int(sys.argv[1]))
after = [(i['user_api'], i['filepath'], i['num_threads']) for i in threadpool_info()]
print(json.dumps({'before': before, 'after': after, 'torch': torch.get_num_threads()}))
"""


def test_torch_threads_caps_blas_and_openmp_too() -> None:
    """The nodes' torch_threads is every numeric thread pool's size: numpy's OpenBLAS kept 2
    threads whose idle worker spun around slam_node's first keyframe (~50 ms of CPU on a
    2-core machine). In a child process, with every pool at 2 threads first."""
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", THREADS_PROBE, "1"], capture_output=True,
                         text=True, timeout=120, check=True, env=env)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    apis = {api for api, _, _ in report["after"]}
    assert {"blas", "openmp"} <= apis, report  # numpy's OpenBLAS and torch's OpenMP found
    assert max(report["before"].values()) == 2, report
    assert all(n == 1 for _, _, n in report["after"]), report
    assert report["torch"] == 1


LATE_BLAS_PROBE = """
import json, sys
from meetup_ros.ros.node_tools import limit_cpu_threads
limit_cpu_threads(int(sys.argv[1]))
import cv2  # its own OpenBLAS, loaded only now
from threadpoolctl import threadpool_info
print(json.dumps([(i['user_api'], i['filepath'], i['num_threads']) for i in threadpool_info()]))
"""


def test_torch_threads_caps_a_blas_loaded_later() -> None:
    """A BLAS library loaded after the cap (the monitor imports no OpenCV at start-up; a
    verifier path may load one later) started with its own default of 2 threads (a tester's
    cv2 after the call): the cap is also left in the environment those libraries read."""
    import json

    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", LATE_BLAS_PROBE, "1"], capture_output=True,
                         text=True, timeout=120, check=True, env=env)
    pools = json.loads(out.stdout.strip().splitlines()[-1])
    assert any("openblas" in path.lower() for _, path, _ in pools), pools  # cv2's is there
    assert all(n == 1 for _, _, n in pools), pools
