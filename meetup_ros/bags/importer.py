"""Write an EuRoC ASL folder as a rosbag2 (MCAP or sqlite3) through ``rosbags``.

Topics, types and frames are those of :mod:`meetup_ros.bags.topics`. Every message's bag
timestamp is its header stamp (the dataset's nanoseconds), and messages are written in time
order. ``/tf_static`` is written once, first, at the earliest stamp.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from meetup_ros.bags import topics
from meetup_ros.bags.checksums import write_checksums
from meetup_ros.bags.coverage import MAX_GAP_PERIODS, covered_window
from meetup_ros.bags.errors import BagError, EurocError
from meetup_ros.bags.euroc import (
    CameraCalibration,
    CameraStream,
    EurocSequence,
    load_euroc,
    load_image,
)

logger = logging.getLogger(__name__)

# The message definitions of the ROS 2 release whose wheels this project pins (kilted).
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_NOT_PROVIDED = -1.0  # covariance[0] = -1 marks "not provided" (sensor_msgs/Imu convention)

ProgressCallback = Callable[[int, int], None]
QOS_DEPTH = 200  # /imu0 at 200 Hz needs >= 200 (CONTRACTS.md)
# The smallest image written: the VIO network's input (odometry.model.VioNetConfig's
# image_width x image_height); below it the network would upscale what is left.
MIN_IMAGE_WIDTH, MIN_IMAGE_HEIGHT = 64, 40


def offered_qos(topic: str) -> Qos:
    """The QoS recorded for a topic (``ros2 bag play`` offers it): reliable keep-last 200,
    and /tf_static transient local (latched) with depth 1, as tf listeners expect."""
    latched = topic == topics.TF_STATIC
    default = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else QOS_DEPTH,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=default,
        lifespan=default,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=default,
        avoid_ros_namespace_conventions=False,
    )


@dataclass(frozen=True)
class ImportSummary:
    out_bag: Path
    storage: str
    start_ns: int
    end_ns: int
    counts: dict[str, int]
    width: int
    height: int
    size_bytes: int


def scaled_calibration(calib: CameraCalibration, downscale: int) -> CameraCalibration:
    """The calibration of the image resized by 1/downscale (INTER_AREA, pixel centres kept).

    A pixel centre x maps to (x + 0.5) * s - 0.5, so cx' = (cx + 0.5) * s - 0.5 and fx' = fx * s;
    radtan coefficients act on normalised coordinates and stay as they are.
    """
    if downscale == 1:
        return calib
    width, height = calib.width // downscale, calib.height // downscale
    sx, sy = width / calib.width, height / calib.height
    K = calib.K.copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return CameraCalibration(
        calib.name, K, calib.dist.copy(), width, height, calib.T_body_cam, calib.rate_hz
    )


def _stamp(stamp_ns: int) -> Any:
    return TYPESTORE.types["builtin_interfaces/msg/Time"](
        sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)
    )


def _header(stamp_ns: int, frame_id: str) -> Any:
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp(stamp_ns), frame_id=frame_id)


def _vector3(v: np.ndarray) -> Any:
    vector3 = TYPESTORE.types["geometry_msgs/msg/Vector3"]
    return vector3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _quaternion(q_xyzw: np.ndarray) -> Any:
    return TYPESTORE.types["geometry_msgs/msg/Quaternion"](
        x=float(q_xyzw[0]), y=float(q_xyzw[1]), z=float(q_xyzw[2]), w=float(q_xyzw[3])
    )


def image_msg(stamp_ns: int, frame_id: str, image: np.ndarray) -> Any:
    """A mono8 ``sensor_msgs/Image`` from uint8 (H, W)."""
    height, width = image.shape
    return TYPESTORE.types["sensor_msgs/msg/Image"](
        header=_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding="mono8",
        is_bigendian=0,
        step=width,
        data=np.ascontiguousarray(image).reshape(-1),
    )


def camera_info_msg(stamp_ns: int, calib: CameraCalibration) -> Any:
    """``sensor_msgs/CameraInfo``: plumb_bob D = (k1, k2, p1, p2, 0), R = I, P = [K | 0]."""
    types = TYPESTORE.types
    P = np.zeros((3, 4))
    P[:, :3] = calib.K
    return types["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp_ns, calib.name),
        height=calib.height,
        width=calib.width,
        distortion_model="plumb_bob",
        d=np.concatenate([calib.dist, [0.0]]),
        k=calib.K.reshape(-1).astype(np.float64),
        r=np.eye(3).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def imu_msg(
    stamp_ns: int,
    frame_id: str,
    gyro_radps: np.ndarray,
    accel_mps2: np.ndarray,
    gyro_var: float,
    accel_var: float,
) -> Any:
    """``sensor_msgs/Imu`` without orientation (orientation_covariance[0] = -1)."""
    orientation_cov = np.zeros(9)
    orientation_cov[0] = _NOT_PROVIDED
    return TYPESTORE.types["sensor_msgs/msg/Imu"](
        header=_header(stamp_ns, frame_id),
        orientation=_quaternion(np.array([0.0, 0.0, 0.0, 1.0])),
        orientation_covariance=orientation_cov,
        angular_velocity=_vector3(gyro_radps),
        angular_velocity_covariance=(np.eye(3) * gyro_var).reshape(-1),
        linear_acceleration=_vector3(accel_mps2),
        linear_acceleration_covariance=(np.eye(3) * accel_var).reshape(-1),
    )


def odometry_msg(
    stamp_ns: int, p_world_body: np.ndarray, q_world_body_xyzw: np.ndarray,
    v_world_mps: np.ndarray | None,
) -> Any:
    """Ground truth as ``nav_msgs/Odometry`` (world -> body).

    The twist is in the child (body) frame, as Odometry defines it; ground truth has no angular
    velocity, so the angular block's first covariance entry is -1 (not provided), and so is
    the linear block's when there is no velocity.
    """
    types = TYPESTORE.types
    twist_cov = np.zeros(36)
    twist_cov[21] = _NOT_PROVIDED
    if v_world_mps is None:
        v_body = np.zeros(3)
        twist_cov[0] = _NOT_PROVIDED
    else:
        v_body = Rotation.from_quat(q_world_body_xyzw).inv().apply(v_world_mps)
    return types["nav_msgs/msg/Odometry"](
        header=_header(stamp_ns, topics.FRAME_WORLD),
        child_frame_id=topics.FRAME_BODY,
        pose=types["geometry_msgs/msg/PoseWithCovariance"](
            pose=types["geometry_msgs/msg/Pose"](
                position=types["geometry_msgs/msg/Point"](
                    x=float(p_world_body[0]), y=float(p_world_body[1]), z=float(p_world_body[2])
                ),
                orientation=_quaternion(q_world_body_xyzw),
            ),
            covariance=np.zeros(36),
        ),
        twist=types["geometry_msgs/msg/TwistWithCovariance"](
            twist=types["geometry_msgs/msg/Twist"](
                linear=_vector3(v_body), angular=_vector3(np.zeros(3))
            ),
            covariance=twist_cov,
        ),
    )


def tf_static_msg(stamp_ns: int, transforms: dict[str, np.ndarray]) -> Any:
    """``tf2_msgs/TFMessage`` with body -> child for each (child frame, T_body_child 4x4)."""
    types = TYPESTORE.types
    stamped = []
    for child, T in transforms.items():
        stamped.append(
            types["geometry_msgs/msg/TransformStamped"](
                header=_header(stamp_ns, topics.FRAME_BODY),
                child_frame_id=child,
                transform=types["geometry_msgs/msg/Transform"](
                    translation=_vector3(T[:3, 3]),
                    rotation=_quaternion(Rotation.from_matrix(T[:3, :3]).as_quat()),
                ),
            )
        )
    return types["tf2_msgs/msg/TFMessage"](transforms=stamped)


# A pending message: (stamp_ns, tie-break order, topic, builder of the message).
_Pending = tuple[int, int, str, Callable[[], Any]]


def _camera_messages(
    stream: CameraStream, calib: CameraCalibration, start_ns: int, end_ns: int, order: int
) -> Iterator[_Pending]:
    name = stream.calib.name
    for stamp_ns, path in zip(stream.stamps_ns.tolist(), stream.paths, strict=True):
        if not start_ns <= stamp_ns <= end_ns:
            continue

        def build(path: Path = path, stamp_ns: int = stamp_ns) -> Any:
            image = load_image(path, stream.calib)
            if (calib.width, calib.height) != (stream.calib.width, stream.calib.height):
                size = (calib.width, calib.height)
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            return image_msg(stamp_ns, name, image)

        yield stamp_ns, order, topics.INFO_TOPICS[name], partial(camera_info_msg, stamp_ns, calib)
        yield stamp_ns, order + 1, topics.IMAGE_TOPICS[name], build


def _pending_messages(
    seq: EurocSequence, cams: list[tuple[CameraStream, CameraCalibration]],
    start_ns: int, end_ns: int, margin_ns: int,
) -> list[_Pending]:
    # Tie-break at equal stamps: IMU (1), ground truth (2, 3), then per camera its info before
    # its image, so a node has the IMU up to a frame's stamp when that frame arrives.
    pending: list[_Pending] = []
    for k, (stream, calib) in enumerate(cams):
        pending.extend(_camera_messages(stream, calib, start_ns, end_ns, 10 + 2 * k))
    imu = seq.imu
    gyro_var, accel_var = seq.imu_calib.gyro_var_radps2, seq.imu_calib.accel_var_mps2_2
    keep = np.flatnonzero(
        (imu.stamps_ns >= start_ns - margin_ns) & (imu.stamps_ns <= end_ns + margin_ns)
    )
    for i in keep.tolist():
        stamp_ns = int(imu.stamps_ns[i])
        pending.append(
            (stamp_ns, 1, topics.IMU, partial(
                imu_msg, stamp_ns, topics.FRAME_IMU, imu.gyro_radps[i], imu.accel_mps2[i],
                gyro_var, accel_var,
            ))
        )
    gt = seq.groundtruth
    if gt is not None:
        keep = np.flatnonzero(
            (gt.stamps_ns >= start_ns - margin_ns) & (gt.stamps_ns <= end_ns + margin_ns)
        )
        for i in keep.tolist():
            stamp_ns = int(gt.stamps_ns[i])
            v = None if gt.v_world_mps is None else gt.v_world_mps[i]
            pending.append(
                (stamp_ns, 2, topics.GROUNDTRUTH_ODOMETRY, partial(
                    odometry_msg, stamp_ns, gt.p_world_body[i], gt.q_world_body_xyzw[i], v
                ))
            )
            if gt.bias_gyro_radps is not None and gt.bias_accel_mps2 is not None:
                bg, ba = gt.bias_gyro_radps[i], gt.bias_accel_mps2[i]
                pending.append(
                    (stamp_ns, 3, topics.GROUNDTRUTH_IMU_BIAS,
                     partial(imu_msg, stamp_ns, topics.FRAME_IMU, bg, ba, 0.0, 0.0))
                )
    pending.sort(key=lambda item: (item[0], item[1]))
    # /tf_static goes first, stamped with the earliest message so replay does not idle before it.
    tf_stamp_ns = pending[0][0]
    extrinsics = {c.calib.name: c.calib.T_body_cam for c, _ in cams}
    extrinsics[topics.FRAME_IMU] = seq.imu_calib.T_body_imu
    pending.insert(
        0, (tf_stamp_ns, 0, topics.TF_STATIC, partial(tf_static_msg, tf_stamp_ns, extrinsics))
    )
    return pending


def import_euroc(
    asl_dir: str | Path,
    out_bag: str | Path,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    imu_margin_s: float = 1.0,
    downscale: int = 1,
    storage: str = "mcap",
    compress: bool = True,
    progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Import an EuRoC ASL folder into a new rosbag2 folder ``out_bag``.

    Args:
        asl_dir: folder holding ``mav0/``.
        out_bag: rosbag2 folder to create; must not exist.
        start_ns, end_ns: image window (EuRoC ns, inclusive); default: all frames of cam0.
        imu_margin_s: IMU and ground truth extend this far (s) either side of the window.
        downscale: integer image reduction (INTER_AREA); camera_info is scaled to match.
        storage: "mcap" (zstd-compressed chunks when ``compress``) or "sqlite3".
        progress: called with (messages written, total) after each message.

    Raises:
        EurocError: the folder is missing or malformed (see ``load_euroc``).
        BagError: bad arguments, or the output cannot be written.
    """
    if storage not in STORAGES:
        raise BagError(f"storage = {storage!r}, expected one of {sorted(STORAGES)!r}")
    if not isinstance(downscale, int) or downscale < 1:
        raise BagError(f"downscale = {downscale!r}, expected an integer >= 1")
    if not np.isfinite(imu_margin_s) or imu_margin_s < 0:
        raise BagError(f"imu_margin_s = {imu_margin_s!r}, expected a finite value >= 0")
    out_bag = Path(out_bag)
    if out_bag.exists():
        raise BagError(f"output bag {str(out_bag)!r} exists already; not overwriting")
    seq = load_euroc(asl_dir)
    cam_stamps = seq.cam0.stamps_ns
    given = [name for name, value in (("start_ns", start_ns), ("end_ns", end_ns))
             if value is not None]
    start_ns = int(cam_stamps[0]) if start_ns is None else int(start_ns)
    end_ns = int(cam_stamps[-1]) if end_ns is None else int(end_ns)
    if end_ns < start_ns:
        # A bound not given is cam0's first or last frame: say so (a tester's --start-ns
        # after the last frame was told of an --end-ns never given).
        said = {name: ("" if name in given else f" (cam0's {which} frame, not given)")
                for name, which in (("start_ns", "first"), ("end_ns", "last"))}
        raise BagError(f"end_ns = {end_ns!r}{said['end_ns']} is before start_ns = "
                       f"{start_ns!r}{said['start_ns']}")
    n_frames = int(np.count_nonzero((cam_stamps >= start_ns) & (cam_stamps <= end_ns)))
    if n_frames == 0:
        raise EurocError(
            f"no cam0 frame of {str(asl_dir)!r} lies in [{start_ns}, {end_ns}] ns; its frames "
            f"span [{int(cam_stamps[0])}, {int(cam_stamps[-1])}]"
        )
    for name, stamps in (("mav0/imu0", seq.imu.stamps_ns), ("the ground truth",
                         None if seq.groundtruth is None else seq.groundtruth.stamps_ns)):
        if stamps is not None:
            _warn_uncovered(asl_dir, name, np.asarray(stamps, dtype=np.int64), start_ns, end_ns)
    streams = [seq.cam0] if seq.cam1 is None else [seq.cam0, seq.cam1]
    for stream in streams:
        _check_downscaled_size(stream.calib, downscale)
    cams = [(stream, scaled_calibration(stream.calib, downscale)) for stream in streams]
    margin_ns = round(imu_margin_s * 1e9)
    pending = _pending_messages(seq, cams, start_ns, end_ns, margin_ns)

    # Written in a hidden folder beside OUT_BAG and renamed at the end: a failure part-way (a
    # corrupt PNG, Ctrl-C, a full disk) left a folder holding a partial .mcap without
    # metadata.yaml, which the next run refused to overwrite.
    created = _make_parents(out_bag)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_bag.name}.", suffix=".partial",
                                        dir=out_bag.parent))
    except OSError as exc:
        _remove_created(created)
        raise BagError(f"cannot write bag {str(out_bag)!r}: {exc}") from None
    counts: dict[str, int] = {}
    done = False
    try:
        _write_bag(staging / out_bag.name, storage, compress, pending, counts, progress)
        write_checksums(staging / out_bag.name)
        if out_bag.exists():  # made by someone else while this import ran
            raise BagError(f"output bag {str(out_bag)!r} exists already; not overwriting")
        (staging / out_bag.name).rename(out_bag)
        done = True
    except (WriterError, OSError) as exc:
        raise BagError(f"cannot write bag {str(out_bag)!r}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_created(created)
    size = sum(f.stat().st_size for f in out_bag.iterdir() if f.is_file())
    width, height = cams[0][1].width, cams[0][1].height
    logger.info(
        "wrote %s (%s, %.1f MB): %s", out_bag, storage, size / 1e6,
        ", ".join(f"{t} {c}" for t, c in counts.items()),
    )
    return ImportSummary(out_bag, storage, start_ns, end_ns, counts, width, height, size)


def _warn_uncovered(asl_dir: str | Path, name: str, stamps_ns: np.ndarray, start_ns: int,
                    end_ns: int) -> None:
    """Say when a series does not cover the image window: it imports as it is, but a tester's
    IMU ending 2 s into 4.7 s of images (or ground truth with no row in the window) was found
    only when the VIO was scored over part of the window."""
    window = covered_window(stamps_ns, start_ns, end_ns, name, MAX_GAP_PERIODS)
    problem = "no sample in it" if window is None else window[2]
    if problem:
        logger.warning("%s: %s does not cover the image window [%d, %d] ns: %s",
                       asl_dir, name, start_ns, end_ns, problem)


def _check_downscaled_size(calib: CameraCalibration, downscale: int) -> None:
    """Refuse a ``downscale`` that leaves images smaller than the VIO network reads: 1000 ended
    in a cv2 traceback (0x0), and 400 wrote 1x1 images without a word."""
    width, height = calib.width // downscale, calib.height // downscale
    if width < MIN_IMAGE_WIDTH or height < MIN_IMAGE_HEIGHT:
        largest = max(1, min(calib.width // MIN_IMAGE_WIDTH, calib.height // MIN_IMAGE_HEIGHT))
        raise BagError(
            f"downscale = {downscale!r} leaves {calib.name} images of {calib.width}x"
            f"{calib.height} at {width}x{height} pixels, below the {MIN_IMAGE_WIDTH}x"
            f"{MIN_IMAGE_HEIGHT} minimum (the VIO network's input); expected a downscale "
            f"<= {largest}"
        )


def _make_parents(out_bag: Path) -> Path | None:
    """Create the missing folders above ``out_bag``; the topmost one created, or None."""
    missing = [p for p in out_bag.parents if not p.exists()]
    if not missing:
        return None
    try:
        out_bag.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BagError(f"cannot write bag {str(out_bag)!r}: {exc}") from None
    return missing[-1]


def _remove_created(top: Path | None) -> None:
    """Remove the folders :func:`_make_parents` created (nothing else is in them)."""
    if top is not None:
        shutil.rmtree(top, ignore_errors=True)


def _write_bag(
    path: Path, storage: str, compress: bool, pending: list[_Pending], counts: dict[str, int],
    progress: ProgressCallback | None,
) -> None:
    """Write ``pending`` (built message by message) to a new bag at ``path``; counts per topic."""
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    if storage == "mcap" and compress:
        # STORAGE mode on MCAP = zstd chunk compression, which ros2 bag play reads natively.
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        connections = {}
        for topic in dict.fromkeys(p[2] for p in pending):
            connections[topic] = writer.add_connection(
                topic, topics.MSGTYPES[topic], typestore=TYPESTORE,
                offered_qos_profiles=[offered_qos(topic)],
            )
        for n, (stamp_ns, _, topic, build) in enumerate(pending, start=1):
            msg = build()
            raw = TYPESTORE.serialize_cdr(msg, topics.MSGTYPES[topic])
            writer.write(connections[topic], stamp_ns, raw)
            counts[topic] = counts.get(topic, 0) + 1
            if progress is not None:
                progress(n, len(pending))
