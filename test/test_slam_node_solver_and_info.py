"""slam_node's start-up line and its frames-dropped message (a tester's findings, t16b): with
``solver: gauss_newton`` it loaded and listed the learned step it never uses, without naming
the solver; and after refusing camera_infos it said "frames before camera_info", as if none
had come. Real nodes over DDS (loopback only), with the harness of test_nodes.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from test_nodes import BAG, STAMP0_NS, Harness, _overrides
from test_slam_node_inputs import _camera_info_msg

from meetup_ros.ros import convert as cv
from meetup_ros.slam.frontend import FrontendConfig

pytestmark = pytest.mark.dds

MODELS = Path(__file__).resolve().parent.parent / "models"
ITERATIONS = FrontendConfig().iterations  # slam_node's default


def test_a_classical_solver_loads_and_lists_only_the_depth_weights(
    harness: Harness, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from meetup_ros.nodes.slam_node import SlamNode

    missing = tmp_path / "no_step.pt"  # never read: the node starts without it
    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, solver="gauss_newton", optimizer_weights=str(missing))))
    assert node.step is None
    assert node.weights == [MODELS / "depth_code.pt"]
    err = capfd.readouterr().err
    assert (f"solver gauss_newton (at most {ITERATIONS} iterations, tolerance 0.001); weights "
            f"{MODELS / 'depth_code.pt'}\n") in err
    assert "no_step.pt" not in err and "slam_optimizer.pt" not in err


def test_the_learned_solver_is_named_with_both_weights(
    harness: Harness, capfd: pytest.CaptureFixture[str]
) -> None:
    from meetup_ros.nodes.slam_node import SlamNode

    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0)))
    assert node.step is not None
    assert node.weights == [MODELS / "depth_code.pt", MODELS / "slam_optimizer.pt"]
    assert (f"solver learned (at most {ITERATIONS} iterations, tolerance 0.001); weights "
            f"{MODELS / 'depth_code.pt'}, {MODELS / 'slam_optimizer.pt'}\n"
            ) in capfd.readouterr().err


def test_frames_after_a_refused_camera_info_say_it_was_refused(harness: Harness) -> None:
    from meetup_ros.bags.reader import read_sequence
    from meetup_ros.nodes.slam_node import SlamNode

    seq = read_sequence(BAG)
    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, odom_topic="")))
    counters = node.health.counters
    h, w = int(seq.cam0.info.height), int(seq.cam0.info.width)

    def pair(k: int, cam1_scale: int = 1) -> None:
        stamp_ns = STAMP0_NS + k * 50_000_000
        image0 = np.zeros((h, w), np.uint8)
        image1 = np.zeros((h * cam1_scale, w * cam1_scale), np.uint8)
        harness.publish("/cam0/image_raw", cv.array_to_image(image0, "mono8", stamp_ns, "cam0"))
        harness.publish("/cam1/image_raw", cv.array_to_image(image1, "mono8", stamp_ns, "cam1"))
        harness.wait_for(lambda: counters["waiting_for_camera_info"] == k + 1, 10, "a drop")

    pair(0)  # none came yet
    assert node.health.last_problem == ("frames before camera_info on /cam0/camera_info, "
                                        "/cam1/camera_info: dropped")

    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info, k0=math.nan))
    harness.wait_for(lambda: counters["bad_camera_info"] == 1, 10, "the refusal")
    pair(1)
    assert node.health.last_problem == (
        "frames before a usable camera_info on /cam0/camera_info, /cam1/camera_info: dropped; "
        "refused /cam0/camera_info: K[0] (fx) nan: expected finite values")

    # cam0 and cam1 of different sizes: the frontend cannot be built, both are refused
    larger = _camera_info_msg(seq.cam1.info)
    larger.width, larger.height = 2 * w, 2 * h
    harness.publish("/cam1/camera_info", larger)
    harness.wait_for(lambda: "cam1" in node._info, 10, "cam1's camera_info")
    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
    harness.wait_for(lambda: counters["bad_camera_info"] == 2, 10, "the size refusal")
    pair(2, cam1_scale=2)
    problem = node.health.last_problem
    assert problem.startswith("frames before a usable camera_info on /cam0/camera_info, "
                              "/cam1/camera_info: dropped; refused /cam0/camera_info: cannot "
                              "build the frontend: "), problem
    assert "; /cam1/camera_info: cannot build the frontend: " in problem, problem
