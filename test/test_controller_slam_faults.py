"""controller_node and slam_node against faulty inputs: future-stamped depth, a network of the
wrong shape, duplicated and slightly reordered image stamps. Real nodes over DDS (loopback
only), with the harness of test_nodes.py."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from governors import always_continue_onnx
from sensor_msgs.msg import CameraInfo, JointState
from test_nodes import (
    BAG,
    REPO_ROOT,
    STAMP0_NS,
    Harness,
    _depth,
    _odom,
    _overrides,
)

from meetup_ros.control import ControlError
from meetup_ros.control.network import GovernorRuntime
from meetup_ros.control.state import ADVISORIES, STATE_NAMES
from meetup_ros.ros import convert as cv

pytestmark = pytest.mark.dds

ACASXU_ONNX = REPO_ROOT / "models" / "ACASXU_run2a_1_1_batch_2000.onnx"
S_NS = 1_000_000_000


# ---- controller_node: depth stamped in the future -----------------------------------------

def _controller(harness: Harness, tmp_path: Path, **params: Any) -> Any:
    from meetup_ros.nodes.controller_node import ControllerNode

    onnx_path = always_continue_onnx(tmp_path / "g.onnx")
    node = harness.add(ControllerNode(
        context=harness.context,
        parameter_overrides=_overrides(network_path=str(onnx_path), diagnostics_period_s=0.0,
                                       **params),
    ))
    harness.collect("/controller/state", JointState)
    return node


def test_controller_rejects_depth_stamped_in_the_future(
    harness: Harness, tmp_path: Path
) -> None:
    """Depth 1 h ahead of the odometry never ages: it must be refused (counted, warned with
    the topic and the offset), not used for every state; a little ahead is still used."""
    node = _controller(harness, tmp_path)
    harness.publish("/depth", _depth(STAMP0_NS + 3600 * S_NS, 50.0))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 1, 5, "depth")
    for i in range(3):
        harness.publish("/odom", _odom(STAMP0_NS + i * 50_000_000, 0.8))
    harness.wait_for(lambda: harness.count("/controller/state") == 3, 5, "three states")
    used = [msg.position[4] for msg in harness.received["/controller/state"]]
    assert used == pytest.approx([0.1] * 3)  # depth_unknown_m, not the 50 m from the future
    assert node.health.counters["future_depth"] == 3
    assert node.health.counters.get("stale_depth", 0) == 0
    assert "/depth" in node.health.last_problem
    assert "stamped 3599.90 s after the odometry" in node.health.last_problem  # the 3rd
    assert "depth_max_ahead_s=0.5" in node.health.last_problem

    # Within depth_max_ahead_s (a keyframe a little ahead of a lagging odometry): used.
    harness.publish("/depth", _depth(STAMP0_NS + 300_000_000, 2.5))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 2, 5, "depth")
    harness.publish("/odom", _odom(STAMP0_NS + 150_000_000, 0.8))
    harness.wait_for(lambda: harness.count("/controller/state") == 4, 5, "a fourth state")
    assert harness.received["/controller/state"][-1].position[4] == pytest.approx(2.5)
    assert node.health.counters["future_depth"] == 3


def test_controller_future_depth_tolerance_is_a_parameter(
    harness: Harness, tmp_path: Path
) -> None:
    node = _controller(harness, tmp_path, depth_max_ahead_s=0.0)
    harness.publish("/depth", _depth(STAMP0_NS + 100_000_000, 2.5))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 1, 5, "depth")
    harness.publish("/odom", _odom(STAMP0_NS, 0.8))
    harness.wait_for(lambda: harness.count("/controller/state") == 1, 5, "a state")
    assert harness.received["/controller/state"][0].position[4] == pytest.approx(0.1)
    assert node.health.counters["future_depth"] == 1


def test_controller_takes_the_distance_travelled_off_held_depth(
    harness: Harness, tmp_path: Path
) -> None:
    """One depth of 2.2 m, then 1.9 s at 1.2 m/s along the camera's axis: the state's depth
    shrinks with the distance the odometry travelled since the depth's stamp (a tester had
    every state certified on the 2.2 m); with no odometry before the depth, speed times age
    bounds it; never below depth_unknown_m."""
    node = _controller(harness, tmp_path)
    harness.publish("/depth", _depth(STAMP0_NS, 2.2))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 1, 5, "depth")

    def moving(i: int) -> Any:  # forward = body +z on EuRoC axes; 20 Hz, 1.2 m/s
        T = np.eye(4)
        T[2, 3] = 0.06 * i
        return cv.odometry_msg(STAMP0_NS + i * 50_000_000, T, [0.0, 0.0, 1.2], [0.0] * 3,
                               np.eye(6) * 1e-4, np.eye(6) * 1e-4)

    for i in (0, 10, 20, 30, 38):  # the first at the depth's stamp: distances from there
        harness.publish("/odom", moving(i))
    harness.wait_for(lambda: harness.count("/controller/state") == 5, 5, "five states")
    used = [msg.position[4] for msg in harness.received["/controller/state"]]
    assert used == pytest.approx([2.2, 1.6, 1.0, 0.4, 0.1])  # 2.2 - 0.06 i, floor 0.1
    assert node.health.counters["depth_shortened_by_motion"] == 4

    # A new depth with no odometry position near its stamp (the last is 8.1 s older):
    # the current speed times the depth's age, 0.8 m/s x 0.5 s.
    harness.publish("/depth", _depth(STAMP0_NS + 10 * S_NS, 3.0))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 2, 5, "depth")
    harness.publish("/odom", _odom(STAMP0_NS + 10 * S_NS + 500_000_000, 0.8))
    harness.wait_for(lambda: harness.count("/controller/state") == 6, 5, "a sixth state")
    assert harness.received["/controller/state"][-1].position[4] == pytest.approx(2.6)


def test_controller_forgets_held_depth_after_a_turn(harness: Harness, tmp_path: Path) -> None:
    """One depth of 3 m, then a turn in place at 1.2 rad/s: once the camera turned more than
    depth_max_rotation_rad (0.15 rad) the held depth says nothing about what is ahead now (a
    tester's 90 deg turn towards a wall 0.4 m away was certified on the 3 m)."""
    from scipy.spatial.transform import Rotation

    node = _controller(harness, tmp_path)
    harness.publish("/depth", _depth(STAMP0_NS, 3.0))
    harness.wait_for(lambda: node.health.counters["depth_received"] == 1, 5, "depth")
    for i in range(4):  # 20 Hz: 0, 0.06, 0.12, 0.18 rad about body +x (up on EuRoC)
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("x", 0.06 * i).as_matrix()
        harness.publish("/odom", cv.odometry_msg(STAMP0_NS + i * 50_000_000, T, [0.0] * 3,
                                                 [1.2, 0.0, 0.0], np.eye(6) * 1e-4,
                                                 np.eye(6) * 1e-4))
    harness.wait_for(lambda: harness.count("/controller/state") == 4, 5, "four states")
    used = [msg.position[4] for msg in harness.received["/controller/state"]]
    assert used == pytest.approx([3.0, 3.0, 3.0, 0.1])
    assert node.health.counters["depth_turned_away"] == 1


# ---- controller_node: a network of the wrong shape ----------------------------------------

def test_runtime_reads_input_and_output_sizes() -> None:
    governor = GovernorRuntime(REPO_ROOT / "models" / "governor.onnx")  # (batch, 5) -> 3
    assert (governor.input_size, governor.output_size) == (5, 3)
    governor.require_sizes(STATE_NAMES, ADVISORIES)
    acasxu = GovernorRuntime(ACASXU_ONNX)  # (1, 1, 1, 5) -> (1, 5)
    assert (acasxu.input_size, acasxu.output_size) == (5, 5)
    with pytest.raises(ControlError, match=r"gives 5 scores; expected 5 inputs .* and 3 scores"):
        acasxu.require_sizes(STATE_NAMES, ADVISORIES)


def test_controller_refuses_a_network_of_the_wrong_output_size(harness: Harness) -> None:
    """ACAS Xu (5 -> 5) used to load, then crash the node on the first state whose top score
    was index 3 or 4; it must stop the node at start-up naming the file and the sizes."""
    from meetup_ros.nodes.controller_node import ControllerNode

    with pytest.raises(ControlError) as info:
        ControllerNode(context=harness.context,
                       parameter_overrides=_overrides(network_path=str(ACASXU_ONNX)))
    text = str(info.value)
    assert "ACASXU_run2a_1_1_batch_2000.onnx" in text
    assert "takes 5 inputs and gives 5 scores" in text
    assert f"3 scores {list(ADVISORIES)!r}" in text


# ---- controller_node: parameters refused at start-up, naming the parameter ----------------

@pytest.mark.parametrize(("params", "message"), [
    ({"depth_percentile": 150.0}, r"depth_percentile 150\.0: expected a percentile in \[0, 100\]"),
    ({"depth_percentile": -1.0}, r"depth_percentile -1\.0: expected a percentile"),
    ({"depth_percentile": float("nan")}, r"depth_percentile nan: expected a percentile"),
    ({"depth_window_fraction": 0.0},
     r"depth_window_fraction 0\.0: expected a fraction of the image in \(0, 1\]"),
    ({"depth_window_fraction": 1.5}, r"depth_window_fraction 1\.5: expected a fraction"),
    ({"depth_max_age_s": float("inf")}, r"depth_max_age_s inf: expected a finite value >= 0"),
    ({"depth_unknown_m": float("nan")}, r"depth_unknown_m nan: expected a depth in \[0, 0.5\] m"),
    ({"advisory_speeds_mps": [1.0, float("nan"), 0.0]},
     r"advisory_speeds_mps \(1\.0, nan, 0\.0\): expected finite speeds"),
    ({"forward_axis_base": [0.0, 0.0, 0.0]},
     r"forward_axis_base \(0\.0, 0\.0, 0\.0\), up_axis_base .*: forward axis .* is not a "
     r"direction"),
])
def test_controller_refuses_bad_parameters_naming_them(harness: Harness, tmp_path: Path,
                                                       params: dict, message: str) -> None:
    """A depth_percentile of 150 or a depth_window_fraction of 0 was taken at start-up, and
    failed on the first depth image; a zero forward axis gave a RuntimeWarning and NaN
    states; an infinite depth_max_age_s failed sizing the odometry history."""
    from meetup_ros.ros import RosInputError

    with pytest.raises(RosInputError, match=message):
        _controller(harness, tmp_path, **params)
    node = _controller(harness, tmp_path, depth_percentile=100.0, depth_window_fraction=1.0)
    assert (node.params.depth_percentile, node.params.depth_window_fraction) == (100.0, 1.0)


# ---- slam_node: duplicated and slightly reordered stamps ----------------------------------

def _camera_info_msg(info: Any) -> CameraInfo:
    msg = CameraInfo()
    msg.header.frame_id = info.frame_id
    msg.width, msg.height = int(info.width), int(info.height)
    msg.distortion_model = info.distortion_model
    msg.k = [float(x) for x in np.asarray(info.K).reshape(-1)]
    msg.d = [float(x) for x in info.dist]
    return msg


def _slam_node_with_calibration(harness: Harness) -> tuple[Any, Any]:
    """The bag's sequence, and a slam_node (no odometry) with the bag's camera_info."""
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.nodes.slam_node import SlamNode

    seq = read_sequence(BAG)
    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="")))
    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
    harness.publish("/cam1/camera_info", _camera_info_msg(seq.cam1.info))
    harness.wait_for(lambda: node.frontend is not None, 60, "the frontend")
    return seq, node


def test_slam_node_drops_duplicate_stamps_and_resets_only_on_a_real_jump(
    harness: Harness,
) -> None:
    seq, node = _slam_node_with_calibration(harness)
    counters = node.health.counters

    def pair(i: int, stamp_ns: int) -> None:
        harness.publish("/cam0/image_raw",
                        cv.array_to_image(seq.cam0.images[i], "mono8", stamp_ns, "cam0"))
        harness.publish("/cam1/image_raw",
                        cv.array_to_image(seq.cam1.images[i], "mono8", stamp_ns, "cam1"))

    def handled() -> int:
        return int(counters["pairs_processed"] + counters["not_after_previous_dropped"])

    stamps = [int(s) for s in seq.cam0.stamps_ns]
    pair(10, stamps[10])
    harness.wait_for(lambda: counters["pairs_processed"] == 1, 30, "the first pair")
    pair(10, stamps[10])  # the same frame again (a duplicated message): dropped on arrival
    harness.wait_for(lambda: counters["duplicate_frames"] == 2, 30,
                     f"the duplicate ({node.summary()})")
    assert counters["resets"] == 0 and counters["pairs_processed"] == 1
    assert f"the same image again for stamp {stamps[10]} ns" in node.health.last_problem
    pair(11, stamps[10] - 10_000_000)  # 10 ms before the previous: reordered, dropped
    harness.wait_for(lambda: handled() == 2, 30, f"the reordered pair ({node.summary()})")
    assert counters["resets"] == 0 and counters["not_after_previous_dropped"] == 1
    assert f"is 0.010 s before or at the previous {stamps[10]} ns" in node.health.last_problem
    pair(11, stamps[11])  # time goes on: processed, no reset
    harness.wait_for(lambda: counters["pairs_processed"] == 2, 30, "the next pair")
    assert counters["resets"] == 0
    # A real jump back (a loop, 5 s > reset_backwards_s 1.0): reset and processed.
    pair(12, stamps[11] - 5 * S_NS)
    harness.wait_for(lambda: counters["pairs_processed"] == 3, 30, "the pair after the jump")
    assert counters["resets"] == 1 and counters["not_after_previous_dropped"] == 1
    assert "resetting" in node.health.last_problem


def test_slam_node_drops_a_second_different_image_for_one_stamp(harness: Harness) -> None:
    """A tester's every cam0 frame twice at one stamp, the copy inverted: whichever was held
    last was paired (depth 5.5 m where the scene is 2.2 m, in 3-4 of 10 keyframes)."""
    seq, node = _slam_node_with_calibration(harness)
    counters = node.health.counters
    stamps = [int(s) for s in seq.cam0.stamps_ns]
    cam0 = [cv.array_to_image(seq.cam0.images[i], "mono8", stamps[i], "cam0") for i in (10, 11)]
    inverted = [cv.array_to_image(255 - seq.cam0.images[i], "mono8", stamps[i], "cam0")
                for i in (10, 11)]
    # 10: both copies before cam1 (the held one goes too); 11: the copy after the pair
    harness.publish("/cam0/image_raw", cam0[0])
    harness.publish("/cam0/image_raw", inverted[0])
    harness.wait_for(lambda: counters["conflicting_frames"] == 1, 30, "the first conflict")
    harness.publish("/cam1/image_raw",
                    cv.array_to_image(seq.cam1.images[10], "mono8", stamps[10], "cam1"))
    harness.publish("/cam0/image_raw", cam0[1])
    harness.publish("/cam1/image_raw",
                    cv.array_to_image(seq.cam1.images[11], "mono8", stamps[11], "cam1"))
    harness.wait_for(lambda: counters["pairs_processed"] == 1, 30, "pair 11")
    harness.publish("/cam0/image_raw", inverted[1])
    harness.wait_for(lambda: counters["conflicting_frames"] == 2, 30, "the second conflict")
    assert "the first was paired already" in node.health.last_problem
    time.sleep(0.5)
    assert counters["pairs_processed"] == 1, node.summary()  # frame 10 never was


def test_slam_node_refuses_a_non_positive_reset_backwards(harness: Harness) -> None:
    from meetup_ros.nodes.slam_node import SlamNode
    from meetup_ros.ros import RosInputError

    with pytest.raises(RosInputError, match=r"reset_backwards_s 0\.0: expected a finite"):
        SlamNode(context=harness.context, parameter_overrides=_overrides(reset_backwards_s=0.0))


def test_nodes_take_relative_file_names_from_the_share_not_the_working_directory(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ros2 launch` run from a folder holding another governor.onnx (or property file): the
    launched nodes, which inherit that folder, loaded it and named only 'governor.onnx'. A
    relative name in a parameter is the package's file, and the node says which, absolute."""
    from meetup_ros import paths
    from meetup_ros.nodes.controller_node import ControllerNode
    from meetup_ros.nodes.safety_monitor_node import SafetyMonitorNode

    shutil.copy(ACASXU_ONNX, tmp_path / "governor.onnx")  # a network of another shape
    (tmp_path / "governor_property.yaml").write_text("this: is: not a property\n")
    monkeypatch.chdir(tmp_path)
    controller = harness.add(ControllerNode(
        context=harness.context, parameter_overrides=_overrides(network_path="governor.onnx")))
    assert controller.runtime.path == paths.share_dir() / "models" / "governor.onnx"
    monitor = harness.add(SafetyMonitorNode(
        context=harness.context, parameter_overrides=_overrides(
            network_path="governor.onnx", property_paths=["governor_property.yaml"])))
    assert [name for name, _ in monitor.monitors] == ["governor_property.yaml"]
    assert paths.node_file("governor_property.yaml", "config").is_absolute()
