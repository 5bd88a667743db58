"""Message <-> numpy conversions without cv_bridge or sensor_msgs_py.

Stamps are integer nanoseconds (``stamp_ns``) everywhere outside the message objects.
Every converter checks what it reads and raises :class:`~meetup_ros.ros.RosInputError`
naming the field, the bad value and what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Image, Imu, JointState, PointCloud2, PointField
from std_msgs.msg import Header

from meetup_ros import images
from meetup_ros.odometry.windowing import IMU_ACCEL_LIMIT_MPS2, IMU_GYRO_LIMIT_RADPS
from meetup_ros.ros import RosInputError

NS_PER_S = 1_000_000_000


# ---- stamps ---------------------------------------------------------------------------------


def stamp_to_ns(stamp: Time, topic: str = "header") -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds.

    Raises:
        RosInputError: a negative ``sec`` or a ``nanosec`` of a second or more. The message
            types allow both (int32, uint32), but neither is a time: a nanosec of 3e9 read
            as 3 s ahead made vio_node publish a 10 cm jump at rest, and a negative second
            reset its estimator twice, back to the origin.
    """
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if sec < 0 or not 0 <= nanosec < NS_PER_S:
        raise RosInputError(f"{topic}: header.stamp (sec {sec}, nanosec {nanosec}) is not a "
                            f"time: expected sec >= 0 and nanosec in [0, {NS_PER_S})")
    return sec * NS_PER_S + nanosec


def ns_to_stamp(stamp_ns: int) -> Time:
    """Integer nanoseconds (>= 0) -> ``builtin_interfaces/Time``."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise RosInputError(f"stamp_ns {stamp_ns!r} is negative; ROS time starts at 0")
    return Time(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


# ---- images ---------------------------------------------------------------------------------

def image_to_array(
    msg: Image,
    *,
    topic: str = "image",
    encodings: Sequence[str] = tuple(images.ENCODINGS),
    expected_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """View an Image's data as ``(H, W)`` or ``(H, W, 3)`` in its own dtype (a copy).

    Args:
        msg: the message.
        topic: names the input in errors.
        encodings: the encodings accepted here.
        expected_hw: ``(height, width)`` the caller needs, or None for any size.

    Raises:
        RosInputError: unknown or unaccepted encoding, size mismatch, wrong step or data length,
            big-endian float data.
    """
    try:
        return images.image_array(msg, topic=topic, encodings=encodings,
                                  expected_hw=expected_hw)
    except images.ImageError as exc:
        raise RosInputError(str(exc)) from None


def image_to_mono8(
    msg: Image, *, topic: str = "image", expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """An 8-bit image message (mono8, rgb8 or bgr8) as a ``(H, W)`` uint8 grey image.

    The conversion lives in :mod:`meetup_ros.images`, shared with the offline bag reader.
    """
    try:
        return images.image_mono8(msg, topic=topic, expected_hw=expected_hw)
    except images.ImageError as exc:
        raise RosInputError(str(exc)) from None


def image_to_depth_m(
    msg: Image, *, topic: str = "depth", expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """A 32FC1 depth image in metres as ``(H, W)`` float32 (NaN where invalid)."""
    return image_to_array(msg, topic=topic, encodings=("32FC1",), expected_hw=expected_hw)


def array_to_image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """A ``(H, W)`` uint8 (mono8) or float32 (32FC1) array, or ``(H, W, 3)`` uint8, as Image."""
    if encoding not in images.ENCODINGS:
        raise RosInputError(f"encoding {encoding!r} is not one of {sorted(images.ENCODINGS)}")
    channels, dtype = images.ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise RosInputError(
            f"array of shape {array.shape!r} does not fit encoding {encoding!r} "
            f"({channels} channel(s))"
        )
    if array.dtype != dtype:
        raise RosInputError(
            f"array dtype {array.dtype!s} does not fit encoding {encoding!r} "
            f"(expected {np.dtype(dtype)!s})"
        )
    height, width = array.shape[:2]
    msg = Image()
    msg.header = make_header(stamp_ns, frame_id)
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(width * channels * np.dtype(dtype).itemsize)
    msg.data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    return msg


# ---- IMU ------------------------------------------------------------------------------------

def imu_to_arrays(msg: Imu, *, topic: str = "imu") -> tuple[int, np.ndarray, np.ndarray]:
    """``(stamp_ns, gyro_radps (3,), accel_mps2 (3,))`` from an Imu message.

    Raises:
        RosInputError: a NaN or infinite angular velocity or linear acceleration, a reading
            beyond any IMU's range, an accelerometer reading of exactly zero, a zero stamp or
            one that is not a time (``stamp_to_ns``).
    """
    gyro_radps = np.array(
        [msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z], np.float64
    )
    accel_mps2 = np.array(
        [msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z],
        np.float64,
    )
    for name, value, limit, unit in (
        ("angular_velocity", gyro_radps, IMU_GYRO_LIMIT_RADPS, "rad/s"),
        ("linear_acceleration", accel_mps2, IMU_ACCEL_LIMIT_MPS2, "m/s^2"),
    ):
        if not np.all(np.isfinite(value)):
            raise RosInputError(
                f"{topic}: {name} {value.tolist()!r} is not finite, expected 3 finite values"
            )
        if np.any(np.abs(value) > limit):
            raise RosInputError(
                f"{topic}: {name} {value.tolist()!r} exceeds +-{limit:g} {unit}, the range "
                "of an IMU: not a measurement"
            )
    if not np.any(accel_mps2):
        # A real accelerometer is never exactly 0 on all axes (noise, gravity); a driver
        # that lost the sensor often sends zeros, which would integrate as free fall.
        raise RosInputError(
            f"{topic}: linear_acceleration is exactly [0, 0, 0] (a driver fault?), "
            "expected a measurement"
        )
    stamp_ns = stamp_to_ns(msg.header.stamp, topic)
    if stamp_ns == 0:
        raise RosInputError(f"{topic}: header.stamp is 0 (unset by the driver)")
    return stamp_ns, gyro_radps, accel_mps2


def arrays_to_imu(
    stamp_ns: int, gyro_radps: np.ndarray, accel_mps2: np.ndarray, frame_id: str = "imu0"
) -> Imu:
    msg = Imu()
    msg.header = make_header(stamp_ns, frame_id)
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = (
        float(v) for v in gyro_radps
    )
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = (
        float(v) for v in accel_mps2
    )
    msg.orientation_covariance[0] = -1.0  # orientation not provided (REP 145)
    return msg


# ---- poses ----------------------------------------------------------------------------------

def rotation_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """A 3x3 rotation matrix -> unit quaternion ``(x, y, z, w)`` with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    # Shepperd's method: branch on the largest diagonal term for numerical stability.
    if trace > 0.0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, s / 4]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [s / 4, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, s / 4, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, s / 4, (R[1, 0] - R[0, 1]) / s]
    quat = np.array(q, dtype=np.float64)
    quat /= np.linalg.norm(quat)
    return -quat if quat[3] < 0 else quat


def quaternion_xyzw_to_rotation(q_xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = (float(v) for v in np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw))
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _check_transform(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise RosInputError(f"{name} must be a finite 4x4 transform, got shape {T.shape!r}")
    return T


def _check_cov(cov: np.ndarray | None, name: str) -> list[float]:
    if cov is None:
        return [0.0] * 36
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (6, 6):
        raise RosInputError(f"{name} must be 6x6 (x y z rx ry rz), got shape {cov.shape!r}")
    return [float(v) for v in cov.reshape(-1)]


def odometry_msg(
    stamp_ns: int,
    T_odom_base: np.ndarray,
    v_base_mps: np.ndarray,
    omega_base_radps: np.ndarray,
    pose_covariance: np.ndarray | None,
    twist_covariance: np.ndarray | None,
    frame_id: str = "odom",
    child_frame_id: str = "base_link",
) -> Odometry:
    """An Odometry message; twist in the child frame, covariances 6x6 in ROS order."""
    T = _check_transform(T_odom_base, "T_odom_base")
    msg = Odometry()
    msg.header = make_header(stamp_ns, frame_id)
    msg.child_frame_id = child_frame_id
    p = msg.pose.pose.position
    p.x, p.y, p.z = (float(v) for v in T[:3, 3])
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in rotation_to_quaternion_xyzw(T[:3, :3]))
    msg.pose.covariance = _check_cov(pose_covariance, "pose_covariance")
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    lin.x, lin.y, lin.z = (float(v) for v in np.asarray(v_base_mps).reshape(3))
    ang.x, ang.y, ang.z = (float(v) for v in np.asarray(omega_base_radps).reshape(3))
    msg.twist.covariance = _check_cov(twist_covariance, "twist_covariance")
    return msg


@dataclass(frozen=True)
class OdometryArrays:
    """An Odometry message as arrays: pose of the child in the parent frame, twist in child."""

    stamp_ns: int
    T_odom_base: np.ndarray  # (4, 4)
    v_base_mps: np.ndarray  # (3,)
    omega_base_radps: np.ndarray  # (3,)
    pose_covariance: np.ndarray  # (6, 6) x y z rx ry rz
    twist_covariance: np.ndarray  # (6, 6)


def odometry_to_arrays(msg: Odometry, *, topic: str = "odom") -> OdometryArrays:
    """Arrays from an Odometry message.

    Raises:
        RosInputError: a non-finite pose or twist value, a zero quaternion, or a stamp that
            is not a time (``stamp_to_ns``).
    """
    stamp_ns = stamp_to_ns(msg.header.stamp, topic)
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    q_xyzw = np.array([o.x, o.y, o.z, o.w], dtype=np.float64)
    lin, ang = msg.twist.twist.linear, msg.twist.twist.angular
    values = np.array([p.x, p.y, p.z, *q_xyzw, lin.x, lin.y, lin.z, ang.x, ang.y, ang.z])
    if not np.all(np.isfinite(values)) or np.linalg.norm(q_xyzw) < 1e-9:
        raise RosInputError(
            f"{topic}: pose/twist {values.tolist()!r} is not finite or has a zero quaternion"
        )
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_rotation(q_xyzw)
    T[:3, 3] = [p.x, p.y, p.z]
    return OdometryArrays(
        stamp_ns=stamp_ns,
        T_odom_base=T,
        v_base_mps=np.array([lin.x, lin.y, lin.z]),
        omega_base_radps=np.array([ang.x, ang.y, ang.z]),
        pose_covariance=np.array(msg.pose.covariance, dtype=np.float64).reshape(6, 6),
        twist_covariance=np.array(msg.twist.covariance, dtype=np.float64).reshape(6, 6),
    )


def pose_stamped_msg(stamp_ns: int, T_frame_child: np.ndarray, frame_id: str) -> PoseStamped:
    T = _check_transform(T_frame_child, "pose")
    msg = PoseStamped()
    msg.header = make_header(stamp_ns, frame_id)
    p, o = msg.pose.position, msg.pose.orientation
    p.x, p.y, p.z = (float(v) for v in T[:3, 3])
    o.x, o.y, o.z, o.w = (float(v) for v in rotation_to_quaternion_xyzw(T[:3, :3]))
    return msg


def point_cloud_xyz_msg(points: np.ndarray, stamp_ns: int, frame_id: str) -> PointCloud2:
    """``(N, 3)`` points as an unorganised PointCloud2 with float32 x, y, z (12-byte points)."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise RosInputError(f"points must be (N, 3), got shape {points.shape!r}")
    msg = PointCloud2()
    msg.header = make_header(stamp_ns, frame_id)
    msg.height, msg.width = 1, int(points.shape[0])
    msg.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
        for i, name in enumerate("xyz")
    ]
    msg.is_bigendian = False
    msg.point_step = 12
    msg.row_step = 12 * msg.width
    msg.is_dense = bool(np.all(np.isfinite(points)))
    msg.data = np.ascontiguousarray(points.astype("<f4")).tobytes()
    return msg


def point_cloud_xyz_to_array(msg: PointCloud2, *, topic: str = "points") -> np.ndarray:
    """``(N, 3)`` float32 from a PointCloud2 with float32 x, y, z fields."""
    offsets = {f.name: (f.offset, f.datatype) for f in msg.fields}
    for name in "xyz":
        if name not in offsets or offsets[name][1] != PointField.FLOAT32:
            raise RosInputError(f"{topic}: field {name!r} missing or not FLOAT32: {offsets!r}")
    count = int(msg.width) * int(msg.height)
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if raw.size != count * int(msg.point_step):
        raise RosInputError(
            f"{topic}: data holds {raw.size!r} bytes, expected {count * int(msg.point_step)!r}"
        )
    rows = raw.reshape(count, int(msg.point_step))
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    cols = [rows[:, offsets[n][0]: offsets[n][0] + 4].copy().view(dtype)[:, 0] for n in "xyz"]
    return np.stack(cols, axis=1).astype(np.float32)


# ---- commands and named vectors -------------------------------------------------------------

def twist_stamped_msg(
    stamp_ns: int, linear_mps: Sequence[float], angular_radps: Sequence[float], frame_id: str
) -> TwistStamped:
    msg = TwistStamped()
    msg.header = make_header(stamp_ns, frame_id)
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear_mps)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (
        float(v) for v in angular_radps
    )
    return msg


def named_vector_msg(
    stamp_ns: int, names: Sequence[str], values: np.ndarray, frame_id: str = ""
) -> JointState:
    """A JointState used as a stamped named vector: ``name`` = names, ``position`` = values."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != len(names):
        raise RosInputError(f"{values.size!r} values for {len(names)!r} names {list(names)!r}")
    msg = JointState()
    msg.header = make_header(stamp_ns, frame_id)
    msg.name = list(names)
    msg.position = [float(v) for v in values]
    return msg


def named_vector_to_array(
    msg: JointState, names: Sequence[str], *, topic: str = "state"
) -> np.ndarray:
    """The values of a named vector in the order of ``names`` (all must be present)."""
    index = {name: i for i, name in enumerate(msg.name)}
    if len(index) != len(msg.name):
        # Which of two values is meant cannot be told (a tester's nearest_depth_m of 0.1 and
        # 5.0 took the last, 5.0, and was certified far from the obstacle).
        repeated = sorted({n for n in msg.name if list(msg.name).count(n) > 1})
        raise RosInputError(f"{topic}: names {repeated!r} appear more than once in "
                            f"{list(msg.name)!r}")
    missing = [n for n in names if n not in index]
    if missing or len(msg.position) != len(msg.name):
        raise RosInputError(
            f"{topic}: names {list(msg.name)!r} with {len(msg.position)!r} values; "
            f"expected values for {list(names)!r}"
        )
    return np.array([msg.position[index[n]] for n in names], dtype=np.float64)
