"""slam_node's pose comes from the odometry of each frame's stamp, which arrives after the
frame. Real nodes over DDS (loopback), the bundled bag's stereo pairs and camera_info.

A tester found every /slam/pose of `make demo` to be the identity: the prior was looked up
when the pair arrived, when the nearest odometry was still the previous frame's (50 ms off,
beyond prior_tolerance_s), and a stereo keyframe without a prior published the last pose
known under a fresh stamp.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image
from test_nodes import BAG, Harness, _overrides
from test_slam_node_inputs import _camera_info_msg

from meetup_ros.ros import convert as cv

pytestmark = pytest.mark.dds

N_PAIRS = 12


def _odom_pose(k: int) -> np.ndarray:
    """A pose that moves 2 cm and turns 0.01 rad a frame."""
    a = 0.01 * k
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = [0.02 * k, 0.5, 1.0]
    return T


def _pose_matrix(msg: PoseStamped) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    o, p = msg.pose.orientation, msg.pose.position
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([o.x, o.y, o.z, o.w]).as_matrix()
    T[:3, 3] = [p.x, p.y, p.z]
    return T


@pytest.fixture(scope="module")
def seq():
    from meetup_ros.bags.reader import read_sequence

    return read_sequence(BAG)


def _start(harness: Harness, seq, **params: object):
    from meetup_ros.nodes.slam_node import SlamNode

    node = harness.add(SlamNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, keyframe_every_n=3, **params)))
    harness.collect("/depth", Image)
    harness.collect("/slam/pose", PoseStamped)
    harness.publish("/cam0/camera_info", _camera_info_msg(seq.cam0.info))
    harness.publish("/cam1/camera_info", _camera_info_msg(seq.cam1.info))
    harness.wait_for(lambda: node.frontend is not None, 20, "the frontend")
    return node


def _pair(harness: Harness, seq, k: int) -> int:
    stamp_ns = int(seq.cam0.stamps_ns[k])
    harness.publish("/cam0/image_raw",
                    cv.array_to_image(seq.cam0.images[k], "mono8", stamp_ns, "cam0"))
    harness.publish("/cam1/image_raw",
                    cv.array_to_image(seq.cam1.images[k], "mono8", stamp_ns, "cam1"))
    return stamp_ns


def test_the_pose_is_the_odometry_of_the_frame_that_comes_after_it(harness: Harness,
                                                                   seq) -> None:
    """Odometry published 10-30 ms after its frame, as vio_node's is: each keyframe's pose
    is that odometry composed with T_base_cam0; motion keyframes fire on it."""
    node = _start(harness, seq, keyframe_translation_m=0.05)
    T_base_cam0 = np.asarray(node.params.T_base_cam0).reshape(4, 4)
    sent = {}
    for k in range(N_PAIRS):
        stamp_ns = _pair(harness, seq, k)
        time.sleep(0.01 + 0.02 * (k % 2))
        harness.publish("/odom", cv.odometry_msg(stamp_ns, _odom_pose(k), [0.4, 0, 0],
                                                 [0, 0, 0.2], np.eye(6) * 1e-4,
                                                 np.eye(6) * 1e-4))
        sent[stamp_ns] = _odom_pose(k) @ T_base_cam0
        time.sleep(0.02)
    harness.wait_for(lambda: node.health.counters["pairs_processed"] == N_PAIRS, 30,
                     "every pair processed")
    harness.wait_for(lambda: harness.count("/slam/pose") == harness.count("/depth"), 10,
                     "a pose for every depth")
    poses = list(harness.received["/slam/pose"])
    # 2 cm a frame: a keyframe every 3 frames by motion (0.05 m), not every 3rd pair alone
    assert len(poses) >= N_PAIRS // 3
    for msg in poses:
        assert msg.header.frame_id == "odom"  # the odometry's frame, not world_frame
        expected = sent[cv.stamp_to_ns(msg.header.stamp)]
        np.testing.assert_allclose(_pose_matrix(msg), expected, atol=1e-6)
    assert node.health.counters.get("pairs_without_prior", 0) == 0
    assert node.health.counters["poses_published"] == len(poses)


def test_without_odometry_a_stereo_keyframe_has_no_pose(harness: Harness, seq) -> None:
    """Odometry that never comes: after prior_wait_s the pair is processed, its depth and
    points published, no pose (not the last one under a fresh stamp), and the lack is said."""
    node = _start(harness, seq, prior_wait_s=0.2)
    for k in range(4):
        _pair(harness, seq, k)
    harness.wait_for(lambda: node.health.counters["pairs_processed"] == 4, 20,
                     "the pairs after the wait")
    harness.wait_for(lambda: harness.count("/depth") >= 1, 10, "a depth")
    assert harness.count("/slam/pose") == 0
    assert node.health.counters["pairs_without_prior"] == 4
    assert "no /odom within prior_tolerance_s" in node.health.last_problem
    assert "no /slam/pose for it" in node.health.last_problem
