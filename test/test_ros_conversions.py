"""Message <-> numpy round trips, the bad-input table, typed parameters and params files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image, Imu

from meetup_ros.ros import RosInputError
from meetup_ros.ros import convert as cv
from meetup_ros.ros.latency import LatencyTracker
from meetup_ros.ros.params import build_params, load_params_file, node_params_from_file, param


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_stamp_round_trip() -> None:
    for stamp_ns in (0, 1, 999_999_999, 1_000_000_000, 1403715273262142976):
        assert cv.stamp_to_ns(cv.ns_to_stamp(stamp_ns)) == stamp_ns
    with pytest.raises(RosInputError, match="negative"):
        cv.ns_to_stamp(-1)


@pytest.mark.parametrize(("sec", "nanosec"), [(-5, 0), (0, 3_000_000_000), (7, 1_000_000_000)])
def test_stamps_that_are_not_a_time_are_refused(sec: int, nanosec: int) -> None:
    """The message types allow both (int32 sec, uint32 nanosec); a tester's nanosec of 3e9
    was read as 3 s ahead and vio_node published a 10 cm jump at rest, and sec = -5 reset
    its estimator twice."""
    from builtin_interfaces.msg import Time

    with pytest.raises(RosInputError, match=rf"/cam0/image_raw: header.stamp \(sec {sec}, "
                                            rf"nanosec {nanosec}\) is not a time"):
        cv.stamp_to_ns(Time(sec=sec, nanosec=nanosec), "/cam0/image_raw")
    imu = cv.arrays_to_imu(5, np.array([0.1, 0.0, 0.0]), np.array([0.0, 0.0, 9.8]))
    imu.header.stamp = Time(sec=sec, nanosec=nanosec)
    with pytest.raises(RosInputError, match=r"/imu0: header.stamp .* is not a time"):
        cv.imu_to_arrays(imu, topic="/imu0")
    odom = cv.odometry_msg(5, np.eye(4), np.zeros(3), np.zeros(3), np.eye(6), np.eye(6),
                           frame_id="odom", child_frame_id="base_link")
    odom.header.stamp = Time(sec=sec, nanosec=nanosec)
    with pytest.raises(RosInputError, match=r"/odom: header.stamp .* is not a time"):
        cv.odometry_to_arrays(odom, topic="/odom")


def test_mono8_and_depth_round_trip() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(7, 5), dtype=np.uint8)
    msg = cv.array_to_image(grey, "mono8", 42, "cam0")
    assert (msg.height, msg.width, msg.step, msg.header.frame_id) == (7, 5, 5, "cam0")
    np.testing.assert_array_equal(cv.image_to_mono8(msg, expected_hw=(7, 5)), grey)
    depth = rng.uniform(0.5, 5.0, size=(4, 6)).astype(np.float32)
    depth[1, 2] = np.nan
    back = cv.image_to_depth_m(cv.array_to_image(depth, "32FC1", 7, "cam0"))
    np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
    np.testing.assert_array_equal(back[~np.isnan(back)], depth[~np.isnan(depth)])


def test_padded_rows_and_colour_to_mono() -> None:
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red
    msg = Image(height=2, width=3, encoding="rgb8", step=12)  # 3 bytes of row padding
    msg.data = np.concatenate([np.pad(rgb.reshape(2, 9), ((0, 0), (0, 3)))]).tobytes()
    grey = cv.image_to_mono8(msg)
    assert grey.shape == (2, 3) and np.all(grey == round(0.299 * 200))
    bgr = cv.array_to_image(rgb[..., ::-1].copy(), "bgr8", 0, "cam0")
    np.testing.assert_array_equal(cv.image_to_mono8(bgr), grey)


def _image(**overrides: object) -> Image:
    msg = cv.array_to_image(np.zeros((4, 4), np.uint8), "mono8", 0, "cam0")
    for key, value in overrides.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize(
    ("msg", "kwargs", "match"),
    [
        (_image(encoding="16UC1"), {}, "encoding '16UC1' is not supported"),
        (_image(), {"expected_hw": (8, 4)}, r"size \(height, width\) \(4, 4\), expected \(8, 4\)"),
        (_image(step=3), {}, "step 3 < width"),
        (_image(data=b"\x00" * 5), {}, "data holds 5 bytes, expected step\\*height = 16"),
        (_image(height=0), {}, "is empty"),
    ],
)
def test_bad_images(msg: Image, kwargs: dict, match: str) -> None:
    with pytest.raises(RosInputError, match=match):
        cv.image_to_mono8(msg, topic="/cam0/image_raw", **kwargs)


def test_depth_rejects_mono8() -> None:
    with pytest.raises(RosInputError, match=r"/depth: encoding 'mono8'.*\['32FC1'\]"):
        cv.image_to_depth_m(_image(), topic="/depth")


def test_imu_round_trip_and_nan() -> None:
    msg = cv.arrays_to_imu(5, np.array([0.1, 0.2, 0.3]), np.array([9.8, 0.0, -0.1]))
    stamp_ns, gyro, accel = cv.imu_to_arrays(msg)
    assert stamp_ns == 5
    np.testing.assert_allclose(gyro, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(accel, [9.8, 0.0, -0.1])
    bad = Imu()
    bad.angular_velocity.y = float("nan")
    with pytest.raises(RosInputError, match=r"/imu0: angular_velocity \[0.0, nan, 0.0\]"):
        cv.imu_to_arrays(bad, topic="/imu0")


@pytest.mark.parametrize(
    ("gyro", "accel", "stamp_ns", "match"),
    [
        ([0.0, 0.0, 0.0], [1e6, 0.0, 9.8], 5, r"/imu0: linear_acceleration \[1000000.0.*exceeds"),
        ([0.0, 90.0, 0.0], [0.0, 0.0, 9.8], 5, r"/imu0: angular_velocity \[0.0, 90.0.*exceeds"),
        ([0.1, 0.0, 0.0], [0.0, 0.0, 0.0], 5,
         r"/imu0: linear_acceleration is exactly \[0, 0, 0\]"),
        ([0.1, 0.0, 0.0], [0.0, 0.0, 9.8], 0, r"/imu0: header.stamp is 0"),
    ],
)
def test_imu_values_no_sensor_gives_are_rejected(
        gyro: list[float], accel: list[float], stamp_ns: int, match: str) -> None:
    msg = cv.arrays_to_imu(stamp_ns, np.array(gyro), np.array(accel))
    with pytest.raises(RosInputError, match=match):
        cv.imu_to_arrays(msg, topic="/imu0")


def test_odometry_round_trip_with_covariance() -> None:
    rng = np.random.default_rng(1)
    T = np.eye(4)
    T[:3, :3] = _rotation(rng)
    T[:3, 3] = [1.0, -2.0, 0.5]
    pose_cov = np.diag(np.arange(1.0, 7.0)) * 1e-3
    twist_cov = np.diag(np.arange(1.0, 7.0)) * 1e-2
    msg = cv.odometry_msg(123, T, [0.1, 0.2, 0.3], [0.0, 0.0, 0.5], pose_cov, twist_cov)
    assert (msg.header.frame_id, msg.child_frame_id) == ("odom", "base_link")
    back = cv.odometry_to_arrays(msg)
    assert back.stamp_ns == 123
    np.testing.assert_allclose(back.T_odom_base, T, atol=1e-12)
    np.testing.assert_allclose(back.pose_covariance, pose_cov)
    np.testing.assert_allclose(back.twist_covariance, twist_cov)
    np.testing.assert_allclose(back.omega_base_radps, [0.0, 0.0, 0.5])
    with pytest.raises(RosInputError, match="must be 6x6"):
        cv.odometry_msg(0, T, [0, 0, 0], [0, 0, 0], np.eye(3), None)


def test_quaternion_round_trip() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        R = _rotation(rng)
        q = cv.rotation_to_quaternion_xyzw(R)
        assert q[3] >= 0 and abs(np.linalg.norm(q) - 1) < 1e-12
        np.testing.assert_allclose(cv.quaternion_xyzw_to_rotation(q), R, atol=1e-12)


def test_point_cloud_and_pose_and_vectors() -> None:
    points = np.random.default_rng(3).normal(size=(10, 3)).astype(np.float32)
    msg = cv.point_cloud_xyz_msg(points, 9, "cam0")
    assert msg.point_step == 12 and msg.width == 10 and [f.name for f in msg.fields] == list("xyz")
    np.testing.assert_array_equal(cv.point_cloud_xyz_to_array(msg), points)
    pose = cv.pose_stamped_msg(9, np.eye(4), "world")
    assert pose.pose.orientation.w == 1.0 and pose.header.frame_id == "world"
    state = cv.named_vector_msg(9, ["a", "b"], np.array([1.0, 2.0]))
    np.testing.assert_array_equal(cv.named_vector_to_array(state, ["b", "a"]), [2.0, 1.0])
    with pytest.raises(RosInputError, match=r"expected values for \['c'\]"):
        cv.named_vector_to_array(state, ["c"])
    twist = cv.twist_stamped_msg(9, (1.0, 0.0, 0.0), (0.0, 0.0, 0.1), "base_link")
    assert cv.stamp_to_ns(twist.header.stamp) == 9 and twist.twist.angular.z == 0.1


@dataclass(frozen=True)
class _Params:
    rate_hz: float = param(20.0, "a rate")
    name: str = param("x", "a name")
    axis: tuple[float, ...] = param((0.0, 0.0, 1.0), "an axis")
    count: int = param(3, "a count")


def test_build_params_types_and_unknown_keys() -> None:
    params = build_params(_Params, {"rate_hz": 10, "axis": [1, 0, 0]}, "node 'n'")
    assert params.rate_hz == 10.0 and params.axis == (1.0, 0.0, 0.0) and params.count == 3
    with pytest.raises(RosInputError, match=r"node 'n': unknown parameter\(s\) \['rate'\]"):
        build_params(_Params, {"rate": 10}, "node 'n'")
    with pytest.raises(RosInputError, match=r"parameter .count.: value 2\.5 is not of type int"):
        build_params(_Params, {"count": 2.5}, "node 'n'")


def test_params_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "my_node:\n  ros__parameters:\n    rate_hz: 5.0\n    nested:\n      key: 1\n"
    )
    sections = load_params_file(path)
    assert sections["my_node"] == {"rate_hz": 5.0, "nested.key": 1}
    assert node_params_from_file(path, "my_node")["use_sim_time"] is True
    path.write_text("my_node:\n  rate_hz: 5.0\n")
    with pytest.raises(RosInputError, match="expected exactly one key 'ros__parameters'"):
        load_params_file(path)
    with pytest.raises(RosInputError, match="does not exist"):
        load_params_file(tmp_path / "missing.yaml")
    with pytest.raises(RosInputError, match="is a folder; expected a YAML file"):
        load_params_file(tmp_path)  # was "does not exist" (a tester's)
    path.write_bytes(b"my_node:\xff\xfe\n")
    with pytest.raises(RosInputError, match=r"p\.yaml' is not UTF-8 text"):
        load_params_file(path)


def test_latency_tracker() -> None:
    tracker = LatencyTracker()
    assert np.isnan(tracker.summary_ms()["p50"])
    for value_ms in range(1, 101):
        tracker.add(value_ms / 1e3)
    summary = tracker.summary_ms()
    assert summary["count"] == 100
    assert summary["p50"] == pytest.approx(50.5) and summary["p99"] == pytest.approx(99.01)


def test_core_logging_reaches_the_node_logger_with_level_and_names(
        capfd: pytest.CaptureFixture[str]) -> None:
    """The windower's and estimator's warnings printed bare on stderr in a node process (a
    tester: no level, no node name); spin_node routes them through the node's rclpy logger."""
    import logging

    import rclpy.logging

    from meetup_ros.odometry.windowing import ImuWindower
    from meetup_ros.ros.node_tools import RosLogHandler

    cores = logging.getLogger("meetup_ros")
    handler = RosLogHandler(rclpy.logging.get_logger("bridge_test_node"))
    saved = (cores.level, cores.propagate)
    cores.addHandler(handler)
    cores.setLevel(logging.INFO)
    cores.propagate = False
    try:
        w = ImuWindower()
        w.add(1_000_000_000, np.zeros(3), np.array([0.0, 0.0, 9.8]))
        w.add(200_000_000_000, np.zeros(3), np.array([0.0, 0.0, 9.8]))  # a clock step: reset
    finally:
        cores.removeHandler(handler)
        cores.setLevel(saved[0])
        cores.propagate = saved[1]
    err = capfd.readouterr().err
    assert "[WARN]" in err and "[bridge_test_node]" in err, err
    assert "[meetup_ros.odometry.windowing] IMU windower reset" in err, err

