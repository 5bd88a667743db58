"""Read rosbag2 folders (MCAP or sqlite3, through ``rosbags``) back into numpy, or as raw CDR.

``read_sequence`` decodes the topics of :mod:`meetup_ros.bags.topics` into a ``Sequence``;
``iter_raw_messages`` yields ``(topic, msgtype, stamp_ns, rawdata)`` in bag time order for replay
without decoding anything.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from collections.abc import Sequence as SequenceABC
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2.errors import ReaderError as Rosbag2ReaderError
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from meetup_ros import images
from meetup_ros.bags import topics
from meetup_ros.bags.checksums import SUMS_NAME, verify_checksums, verify_data_file
from meetup_ros.bags.errors import BagError

logger = logging.getLogger(__name__)
_UNCHECKED_SAID: set[str] = set()  # bags said to have no SHA256SUMS, once each

_DEFAULT_TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BagPaths = str | Path | SequenceABC[str | Path]


@dataclass(frozen=True)
class CameraInfo:
    """Intrinsics of one camera as recorded; T_body_cam from /tf_static (identity if absent)."""

    frame_id: str
    K: np.ndarray  # (3, 3)
    dist: np.ndarray  # (4,) radtan k1 k2 p1 p2
    width: int
    height: int
    T_body_cam: np.ndarray  # (4, 4)
    distortion_model: str = "plumb_bob"


@dataclass(frozen=True)
class CameraData:
    stamps_ns: np.ndarray  # (N,) int64
    images: list[np.ndarray]  # uint8 (H, W)
    info: CameraInfo

    # Flat accessors the contract names (cam.K, cam.width, ...).
    @property
    def K(self) -> np.ndarray:  # noqa: N802 - K is the camera matrix's standard name
        return self.info.K

    @property
    def dist(self) -> np.ndarray:
        return self.info.dist

    @property
    def width(self) -> int:
        return self.info.width

    @property
    def height(self) -> int:
        return self.info.height

    @property
    def T_body_cam(self) -> np.ndarray:  # noqa: N802 - frame notation T_<to>_<from>
        return self.info.T_body_cam


@dataclass(frozen=True)
class ImuSeries:
    stamps_ns: np.ndarray  # (M,) int64
    gyro_radps: np.ndarray  # (M, 3)
    accel_mps2: np.ndarray  # (M, 3)
    gyro_cov: np.ndarray  # (3, 3) rad^2/s^2, from the first message
    accel_cov: np.ndarray  # (3, 3) m^2/s^4
    frame_id: str = topics.FRAME_IMU


@dataclass(frozen=True)
class GroundTruthSeries:
    """World -> body poses; v_world_mps and biases are None where the bag lacks them."""

    stamps_ns: np.ndarray  # (G,) int64
    p_world_body: np.ndarray  # (G, 3)
    q_world_body_xyzw: np.ndarray  # (G, 4)
    v_world_mps: np.ndarray | None  # (G, 3)
    bias_gyro: np.ndarray | None  # (G, 3) rad/s, at the same stamps
    bias_accel: np.ndarray | None  # (G, 3) m/s^2


@dataclass(frozen=True)
class Sequence:
    cam0: CameraData | None
    cam1: CameraData | None
    imu: ImuSeries | None
    groundtruth: GroundTruthSeries | None
    transforms: dict[str, np.ndarray] = field(default_factory=dict)  # child -> T_body_child
    paths: tuple[Path, ...] = ()
    # Why the ground truth cannot be interpolated (a stamp repeats or goes back within a bag,
    # or several bags overlap in time), naming the bag, topic and stamp; None when its stamps
    # strictly increase. Kept rather than raised: readers that only look poses up by stamp
    # still work, and those that interpolate refuse with it (odometry.dataset).
    groundtruth_stamp_error: str | None = None

    @property
    def T_cam0_cam1(self) -> np.ndarray | None:  # noqa: N802 - frame notation T_<to>_<from>
        """Pose of cam1 in cam0 (4, 4), from the two body extrinsics."""
        if self.cam0 is None or self.cam1 is None:
            return None
        return np.linalg.inv(self.cam0.T_body_cam) @ self.cam1.T_body_cam


class RawMessage(NamedTuple):
    topic: str
    msgtype: str
    stamp_ns: int
    rawdata: bytes



@contextmanager
def _corrupt_is_bag_error(paths: SequenceABC[Path]) -> Iterator[None]:
    """Turn what rosbags raises on a damaged file into a BagError naming the bag."""
    try:
        yield
    except BagError:
        raise
    except Exception as exc:  # rosbags surfaces zstd, sqlite, struct and CDR errors as is
        names = [str(p) for p in paths]
        damaged = _damaged(paths) if len(paths) > 1 else []
        which = (f"bag {[str(p) for p in damaged]!r} (of {names!r})" if damaged
                 else f"bag {names!r}")
        raise BagError(f"{which} is corrupt or truncated: {type(exc).__name__}: {exc}"
                       ) from None


def _damaged(paths: SequenceABC[Path]) -> list[Path]:
    """The bags among several whose messages cannot all be read on their own (error path
    only: each is read through once more)."""
    out = []
    for path in paths:
        try:
            reader = AnyReader([path], default_typestore=_DEFAULT_TYPESTORE)
            reader.open()
            try:
                for _ in reader.messages():
                    pass
            finally:
                reader.close()
        except Exception:  # the same damage the combined read ran into
            out.append(path)
    return out


def _paths(bag_paths: BagPaths) -> list[Path]:
    if isinstance(bag_paths, str | Path):
        return _paths([bag_paths])
    paths = [Path(p) for p in bag_paths]
    if not paths:
        raise BagError("no bag path given; expected at least one rosbag2 folder or file")
    for path in paths:
        if not path.exists():
            raise BagError(f"bag {str(path)!r} does not exist")
        if path.is_dir() and not (path / "metadata.yaml").is_file():
            raise BagError(
                f"bag {str(path)!r} has no metadata.yaml; expected a rosbag2 folder"
            )
        # this package's own bags (see bags.checksums), as a folder or named by its data file
        checked = verify_checksums(path) if path.is_dir() else verify_data_file(path)
        if not checked and str(path) not in _UNCHECKED_SAID:
            # said once per bag: a damaged bag from `ros2 bag record` read silently (a tester's)
            _UNCHECKED_SAID.add(str(path))
            logger.info("bag %r has no %s: its data is checked only by the chunk CRCs its "
                        "writer filled in, if any (`sha256sum *.mcap *.db3 > %s` in its "
                        "folder makes every read check it)", str(path), SUMS_NAME, SUMS_NAME)
    return paths


def _open(paths: list[Path]) -> AnyReader:
    try:
        # The constructor already reads the files (e.g. a plain file that is no bag fails here).
        reader = AnyReader(paths, default_typestore=_DEFAULT_TYPESTORE)
        reader.open()
    except (AnyReaderError, Rosbag2ReaderError, OSError, ValueError, KeyError) as exc:
        names = [str(p) for p in paths]
        raise BagError(
            f"cannot open bag {names!r} (corrupt, truncated or not a rosbag2): {exc}"
        ) from None
    return reader


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _xyz(v: Any) -> list[float]:
    return [v.x, v.y, v.z]


def _xyzw(q: Any) -> list[float]:
    return [q.x, q.y, q.z, q.w]


def bag_info(bag_paths: BagPaths, *, count_messages: bool = True) -> dict[str, Any]:
    """Topics {topic: (msgtype, count)}, span (ns), message count, storage and size of the bag(s).

    ``count_messages``: counts and span read from the data (every record); False takes them
    from metadata.yaml, for callers that need only the topics and their types. ``bags``: per
    bag, ``(path, start_ns, end_ns, topics)`` as its metadata.yaml gives them.

    Raises:
        BagError: a bag is missing or cannot be opened (or, counting, read).
    """
    paths = _paths(bag_paths)
    reader = _open(paths)
    try:
        # per connection, not reader.topics: that sums metadata.yaml's counts, and one that is
        # not a number (a tester's edited file) was a TypeError traceback
        listed: dict[str, object] = {}
        msgtypes: dict[str, str] = {}
        for connection in reader.connections:  # a topic has one connection per bag
            before, count = listed.get(connection.topic, 0), connection.msgcount
            listed[connection.topic] = (before + count if isinstance(before, int)
                                        and isinstance(count, int) else count)
            msgtypes[connection.topic] = connection.msgtype or ""
        if count_messages:
            # Counted in the data: metadata.yaml's counts are not checked by anything (a
            # tester's edited file made this print 9999 IMU messages for a bag holding 1141),
            # and the checksums cover the data files only. Reading every record costs about a
            # second per 100 MB here; the span is the data's too.
            counts: dict[str, int] = dict.fromkeys(listed, 0)
            start_ns = end_ns = None
            with _corrupt_is_bag_error(paths):
                for connection, stamp_ns, _ in reader.messages():
                    counts[connection.topic] = counts.get(connection.topic, 0) + 1
                    start_ns = stamp_ns if start_ns is None else min(start_ns, stamp_ns)
                    end_ns = stamp_ns if end_ns is None else max(end_ns, stamp_ns)
        else:
            counts = {t: n if isinstance(n, int) else 0 for t, n in listed.items()}
            # rosbags reports end_time one past the last stamp
            start_ns, end_ns = ((reader.start_time, reader.end_time - 1)
                                if any(counts.values()) else (None, None))
        topic_info = {name: (msgtypes[name], counts[name]) for name in sorted(listed)}
        bags = _bag_spans(reader, paths)
    finally:
        reader.close()
    count = sum(counts.values())
    mismatched = {t: (listed[t], counts[t]) for t in listed
                  if count_messages and listed[t] != counts[t]}
    if mismatched:
        logger.warning("bag %s: metadata.yaml's message counts disagree with the data: %s",
                       ", ".join(map(str, paths)), ", ".join(
                           f"{t} lists {a}, holds {b}" for t, (a, b) in mismatched.items()))
    files = [f for p in paths for f in ([p] if p.is_file() else p.iterdir()) if f.is_file()]
    suffixes = {f.suffix for f in files} & {".mcap", ".db3"}
    return {
        "topics": topic_info,
        "message_count": count,
        "start_ns": start_ns or 0,
        "end_ns": end_ns or 0,
        "duration_s": ((end_ns or 0) - (start_ns or 0)) / 1e9,
        "storage": ",".join(sorted("mcap" if s == ".mcap" else "sqlite3" for s in suffixes)),
        "size_bytes": sum(f.stat().st_size for f in files),
        "bags": bags,
    }


def _bag_spans(reader: AnyReader, paths: SequenceABC[Path]
               ) -> list[tuple[Path, int, int, frozenset[str]]]:
    """``(path, start_ns, end_ns, topics holding messages)`` of each bag, from its metadata."""
    spans = []
    subreaders: list[Any] = list(reader.readers)  # rosbags types them as object
    for path, sub in zip(paths, subreaders, strict=True):
        held = frozenset(c.topic for c in sub.connections if c.msgcount != 0)
        if held:  # rosbags reports end_time one past the last stamp
            spans.append((path, int(sub.start_time), int(sub.end_time) - 1, held))
    return spans


def _first_overlap(spans: list[tuple[int, int, Path]]
                   ) -> tuple[tuple[int, int, Path], tuple[int, int, Path]] | None:
    """The first two of ``(start, end, bag)`` spans, by start, that share an instant."""
    ordered = sorted(spans, key=lambda span: span[0])
    for a, b in itertools.pairwise(ordered):
        if b[0] <= a[1]:
            return a, b
    return None


def bags_overlap_error(info: dict[str, Any], topic_names: Iterable[str]) -> str | None:
    """Why the bags of ``bag_info``'s ``info`` cannot be played as one, or None: two of them
    hold one of ``topic_names`` over bag-time spans that overlap (the same recording twice).

    The offline readers refuse overlapping bags by their ground truth
    (:func:`_groundtruth_stamp_error`); a replay merged them and published every message
    twice, without a word (a tester's finding). Bags of distinct topics (a recording split
    by topic) may overlap. The spans are metadata.yaml's, which is what is at hand before
    playing (the data's own are read while playing).
    """
    for topic in topic_names:
        spans = [(start, end, path) for path, start, end, held in info["bags"] if topic in held]
        pair = _first_overlap(spans)
        if pair is None:
            continue
        (a0, a1, a), (b0, b1, b) = pair
        return (f"bags {str(a)!r} and {str(b)!r} overlap in time on {topic!r}: their bag "
                f"times {a0}..{a1} ns and {b0}..{b1} ns share {b0}..{min(a1, b1)} ns (the same "
                "recording twice?); give bags of distinct stretches, or select other topics")
    return None


def iter_raw_messages(
    bag_paths: BagPaths, topic_names: Iterable[str] | None = None
) -> Iterator[RawMessage]:
    """Yield ``RawMessage(topic, msgtype, stamp_ns, rawdata)`` in bag time order (CDR as stored).

    ``topic_names``: only these topics (an empty list: none); None: every topic.

    Raises:
        BagError: a bag is missing, unreadable, truncated, or a requested topic is not in it.
    """
    paths = _paths(bag_paths)
    reader = _open(paths)
    try:
        wanted = None if topic_names is None else list(topic_names)
        connections = reader.connections
        if wanted is not None:
            present = {c.topic for c in connections}
            missing = [t for t in wanted if t not in present]
            if missing:
                raise BagError(
                    f"topic(s) {missing!r} not in bag {[str(p) for p in paths]!r}; "
                    f"it has {sorted(present)!r}"
                )
            connections = [c for c in connections if c.topic in wanted]
            if not connections:
                # rosbags reads every connection for an empty list: a replay whose topics
                # were all unimportable then tried (and failed) to publish the whole bag
                return
        with _corrupt_is_bag_error(paths):
            for connection, stamp_ns, rawdata in reader.messages(connections=connections):
                yield RawMessage(connection.topic, connection.msgtype, int(stamp_ns), rawdata)
    finally:
        reader.close()


def _decode(reader: AnyReader, rawdata: bytes, msgtype: str, topic: str, path: Path,
            bag_time_ns: int) -> Any:
    try:
        return reader.deserialize(rawdata, msgtype)
    except Exception as exc:  # rosbags raises assorted errors on bad CDR
        # the bag and the bag time (the header is in the bytes that failed): with several
        # --bag the error named neither (a tester's finding)
        raise BagError(f"bag {str(path)!r}: message on {topic!r} ({msgtype}) at bag time "
                       f"{bag_time_ns} ns cannot be decoded: {exc}") from None


def _camera_info(msg: Any, T_body_cam: np.ndarray) -> CameraInfo:
    d = np.asarray(msg.d, dtype=np.float64)
    if d.size < 4 or np.any(d[4:] != 0.0):
        # k1 k2 p1 p2 are kept: a k3 (or more) would be dropped without a word
        raise BagError(
            f"camera_info of {msg.header.frame_id!r} has D = {d.tolist()!r}, "
            "expected >= 4 plumb_bob coefficients, any after p2 zero"
        )
    return CameraInfo(
        frame_id=msg.header.frame_id,
        K=np.asarray(msg.k, dtype=np.float64).reshape(3, 3),
        dist=d[:4].copy(),
        width=int(msg.width),
        height=int(msg.height),
        T_body_cam=T_body_cam,
        distortion_model=msg.distortion_model,
    )


def _image(msg: Any, topic: str, path: Path) -> np.ndarray:
    """A grey image as the nodes read it (mono8, or rgb8/bgr8 converted: meetup_ros.images)."""
    try:
        return images.image_mono8(msg, topic=f"bag {str(path)!r}: image on {topic!r} stamped "
                                             f"{_stamp_ns(msg.header)} ns")
    except images.ImageError as exc:
        raise BagError(str(exc)) from None


@dataclass
class _Camera:
    """One camera's images across the bag(s), in bag order, and the camera_info they need."""

    stamps: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    image_bags: list[int] = field(default_factory=list)  # index into the paths, per image
    info: Any = None  # the first camera_info; every later one must equal it
    info_bag: int = 0


def _info_difference(a: Any, b: Any) -> str | None:
    """What differs between two camera_info messages that the images depend on, or None."""
    if (int(a.width), int(a.height)) != (int(b.width), int(b.height)):
        return f"size {a.width}x{a.height} vs {b.width}x{b.height}"
    if a.distortion_model != b.distortion_model:
        return f"distortion model {a.distortion_model!r} vs {b.distortion_model!r}"
    for name, x, y in (("K", a.k, b.k), ("D", a.d, b.d)):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
            return f"{name} {x.tolist()} vs {y.tolist()}"
    return None


def _keep_camera_info(cam: _Camera, msg: Any, bag: int, topic: str,
                      paths: SequenceABC[Path]) -> None:
    """Keep the first camera_info; refuse a later one that differs.

    Only the first was kept: two imports of one flight at another --downscale were merged
    under the first bag's calibration, and the smaller images came out of rectification 73 %
    black (a tester's finding). One calibration per camera is what the readers return.
    """
    if cam.info is None:
        cam.info, cam.info_bag = msg, bag
        return
    diff = _info_difference(cam.info, msg)
    if diff is None:
        return
    first, this = str(paths[cam.info_bag]), str(paths[bag])
    where = (f"bags {first!r} and {this!r} differ" if bag != cam.info_bag
             else f"bag {this!r}: it changes at stamp {_stamp_ns(msg.header)} ns")
    raise BagError(f"{topic!r}: {where} ({diff}); one calibration per camera is read, so "
                   "give bags recorded with the same camera settings")


def _check_image_sizes(cam: _Camera, image_topic: str, info_topic: str,
                       paths: SequenceABC[Path]) -> None:
    """Refuse an image whose size is not its camera_info's: it would be rectified (and its
    depth computed) with maps for another size."""
    width, height = int(cam.info.width), int(cam.info.height)
    for stamp, image, bag in zip(cam.stamps, cam.images, cam.image_bags, strict=True):
        if image.shape == (height, width):
            continue
        source = "" if bag == cam.info_bag else f" (of bag {str(paths[cam.info_bag])!r})"
        raise BagError(
            f"bag {str(paths[bag])!r}: image on {image_topic!r} stamped {stamp} ns is "
            f"{image.shape[1]}x{image.shape[0]}, but {info_topic!r}{source} says "
            f"{width}x{height}; expected images of their camera_info's size")


def _camera_data(name: str, cam: _Camera, transforms: dict[str, np.ndarray],
                 paths: SequenceABC[Path]) -> CameraData:
    """One camera's images in stamp order, with its calibration and body extrinsics."""
    image_topic, info_topic = topics.IMAGE_TOPICS[name], topics.INFO_TOPICS[name]
    if cam.info is None:
        raise BagError(f"bag has {image_topic!r} but no {info_topic!r}")
    _check_image_sizes(cam, image_topic, info_topic, paths)
    T_body_cam = transforms.get(name)
    if T_body_cam is None:
        logger.warning("no /tf_static body->%s in the bag; using identity", name)
        T_body_cam = np.eye(4)
    order = np.argsort(np.asarray(cam.stamps), kind="stable")
    return CameraData(
        stamps_ns=np.asarray(cam.stamps, dtype=np.int64)[order],
        images=[cam.images[i] for i in order],
        info=_camera_info(cam.info, T_body_cam),
    )


def _log_where_bags_meet(paths: SequenceABC[Path], imu_bags: list[int],
                         imu_stamps: list[int]) -> None:
    """Log each junction of several bags' IMU spans: a trainer's interval across one bridges
    two recordings (train vio said only "interval 44 has 90 IMU samples")."""
    spans: list[tuple[int, int, Path]] = []
    for i, path in enumerate(paths):
        stamps = [s for b, s in zip(imu_bags, imu_stamps, strict=True) if b == i]
        if stamps:
            spans.append((min(stamps), max(stamps), path))
    spans.sort(key=lambda span: span[0])
    for (_, a1, a), (b0, _, b) in itertools.pairwise(spans):
        if b0 > a1:  # overlaps are the ground-truth and stamp checks' to name
            logger.info("bags %r and %r meet: %s ends at %d ns in the first and resumes at "
                        "%d ns in the second, %.3f s later", str(a), str(b), topics.IMU,
                        a1, b0, (b0 - a1) / 1e9)


def read_sequence(
    bag_paths: BagPaths,
    *,
    cameras: tuple[str, ...] = topics.CAMERA_NAMES,
    required: Iterable[str] = (topics.CAM0_IMAGE, topics.IMU),
) -> Sequence:
    """Decode camera, IMU, ground-truth and /tf_static topics of the bag(s) into numpy.

    Args:
        bag_paths: one rosbag2 folder/file or several (merged in time order).
        cameras: camera names to decode (``cam0``, ``cam1``).
        required: topics that must be present.

    Raises:
        BagError: missing/corrupt bag, a required topic absent, or a malformed message.
    """
    paths = _paths(bag_paths)
    reader = _open(paths)
    try:
        present = {c.topic for c in reader.connections}
        missing = [t for t in required if t not in present]
        if missing:
            raise BagError(
                f"required topic(s) {missing!r} not in bag {[str(p) for p in paths]!r}; "
                f"it has {sorted(present)!r}"
            )
        wanted = {topics.IMU, topics.GROUNDTRUTH_ODOMETRY, topics.GROUNDTRUTH_IMU_BIAS,
                  topics.TF_STATIC}
        for name in cameras:
            wanted |= {topics.IMAGE_TOPICS[name], topics.INFO_TOPICS[name]}
        connections = [c for c in reader.connections if c.topic in wanted]
        for c in connections:
            # The right name with another type (a String on /imu0) failed while decoding as
            # "corrupt or truncated: AttributeError ... 'header'": say what it is instead.
            if c.msgtype != topics.MSGTYPES[c.topic]:
                raise BagError(
                    f"bag {[str(p) for p in paths]!r}: topic {c.topic!r} has type "
                    f"{c.msgtype!r}, expected {topics.MSGTYPES[c.topic]!r}"
                )
        cams_seen = {n: _Camera() for n in cameras}
        imu_rows: list[tuple[int, list[float], list[float]]] = []
        imu_bags: list[int] = []  # index into the paths, per IMU row
        imu_cov: tuple[np.ndarray, np.ndarray] | None = None
        gt_rows: list[tuple[int, list[float], list[float], list[float] | None]] = []
        gt_arrival: list[tuple[int, int]] = []  # (bag index, stamp) in each bag's order
        # which bag a message came from: its connection's owner (each bag's own storage reader)
        subreaders: list[Any] = list(reader.readers)  # rosbags types them as object
        bag_index = {id(c.owner): i for i, sub in enumerate(subreaders) for c in sub.connections}
        bias_rows: dict[int, tuple[list[float], list[float]]] = {}
        transforms: dict[str, np.ndarray] = {}
        image_topic_to_cam = {topics.IMAGE_TOPICS[n]: n for n in cameras}
        info_topic_to_cam = {topics.INFO_TOPICS[n]: n for n in cameras}
        with _corrupt_is_bag_error(paths):
            for connection, bag_time_ns, rawdata in reader.messages(connections=connections):
                topic = connection.topic
                bag = bag_index.get(id(connection.owner), 0)
                msg = _decode(reader, rawdata, connection.msgtype, topic, paths[bag],
                              bag_time_ns)
                if topic in image_topic_to_cam:
                    cam = cams_seen[image_topic_to_cam[topic]]
                    cam.stamps.append(_stamp_ns(msg.header))
                    cam.images.append(_image(msg, topic, paths[bag]))
                    cam.image_bags.append(bag)
                elif topic in info_topic_to_cam:
                    _keep_camera_info(cams_seen[info_topic_to_cam[topic]], msg, bag, topic, paths)
                elif topic == topics.IMU:
                    imu_rows.append(
                        (_stamp_ns(msg.header), _xyz(msg.angular_velocity),
                         _xyz(msg.linear_acceleration))
                    )
                    imu_bags.append(bag)
                    if imu_cov is None:
                        imu_cov = (
                            np.asarray(msg.angular_velocity_covariance).reshape(3, 3),
                            np.asarray(msg.linear_acceleration_covariance).reshape(3, 3),
                        )
                elif topic == topics.GROUNDTRUTH_ODOMETRY:
                    pose = msg.pose.pose
                    q = _xyzw(pose.orientation)
                    v_world = None
                    if msg.twist.covariance[0] != -1.0:
                        v_body = _xyz(msg.twist.twist.linear)
                        v_world = Rotation.from_quat(q).apply(v_body).tolist()
                    gt_rows.append((_stamp_ns(msg.header), _xyz(pose.position), q, v_world))
                    gt_arrival.append((bag, gt_rows[-1][0]))
                elif topic == topics.GROUNDTRUTH_IMU_BIAS:
                    bias_rows[_stamp_ns(msg.header)] = (
                        _xyz(msg.angular_velocity), _xyz(msg.linear_acceleration)
                    )
                elif topic == topics.TF_STATIC:
                    for tf in msg.transforms:
                        T = np.eye(4)
                        T[:3, :3] = Rotation.from_quat(_xyzw(tf.transform.rotation)).as_matrix()
                        T[:3, 3] = _xyz(tf.transform.translation)
                        transforms[tf.child_frame_id] = T
    finally:
        reader.close()

    cams: dict[str, CameraData | None] = {
        name: _camera_data(name, cams_seen[name], transforms, paths)
        if name in cams_seen and cams_seen[name].stamps else None
        for name in topics.CAMERA_NAMES
    }
    if len(paths) > 1:
        _log_where_bags_meet(paths, imu_bags, [r[0] for r in imu_rows])

    imu = None
    if imu_rows:
        imu_rows.sort(key=lambda r: r[0])
        assert imu_cov is not None
        imu = ImuSeries(
            stamps_ns=np.array([r[0] for r in imu_rows], dtype=np.int64),
            gyro_radps=np.array([r[1] for r in imu_rows], dtype=np.float64),
            accel_mps2=np.array([r[2] for r in imu_rows], dtype=np.float64),
            gyro_cov=imu_cov[0],
            accel_cov=imu_cov[1],
        )

    groundtruth = None
    if gt_rows:
        gt_rows.sort(key=lambda r: r[0])
        stamps = np.array([r[0] for r in gt_rows], dtype=np.int64)
        has_v = all(r[3] is not None for r in gt_rows)
        has_bias = all(int(s) in bias_rows for s in stamps)
        groundtruth = GroundTruthSeries(
            stamps_ns=stamps,
            p_world_body=np.array([r[1] for r in gt_rows], dtype=np.float64),
            q_world_body_xyzw=np.array([r[2] for r in gt_rows], dtype=np.float64),
            v_world_mps=np.array([r[3] for r in gt_rows], dtype=np.float64) if has_v else None,
            bias_gyro=(
                np.array([bias_rows[int(s)][0] for s in stamps]) if has_bias else None
            ),
            bias_accel=(
                np.array([bias_rows[int(s)][1] for s in stamps]) if has_bias else None
            ),
        )
    return Sequence(cams["cam0"], cams["cam1"], imu, groundtruth, transforms, tuple(paths),
                    _groundtruth_stamp_error(paths, gt_arrival))


def _groundtruth_stamp_error(paths: SequenceABC[Path], arrival: list[tuple[int, int]]
                             ) -> str | None:
    """Where the ground-truth stamps of the bag(s) fail to strictly increase, or None.

    ``arrival``: (bag index, header stamp) of each ground-truth message in bag order. Within a
    bag a pose stamp that repeats or goes back is a clock step or a recording played in a
    loop; across bags, ground truth spans that overlap are the same stretch given twice. Either
    way two poses claim one instant, and interpolating between them is meaningless (scipy's
    Slerp refused with a traceback naming neither bag nor topic).
    """
    topic = topics.GROUNDTRUTH_ODOMETRY
    spans: list[tuple[int, int, Path]] = []
    for i, path in enumerate(paths):
        stamps = [s for b, s in arrival if b == i]
        if not stamps:
            continue
        for k in range(1, len(stamps)):
            if stamps[k] > stamps[k - 1]:
                continue
            where = (f"bag {str(path)!r}: ground truth {topic!r} message {k + 1} of "
                     f"{len(stamps)}")
            if stamps[k] == stamps[k - 1]:
                what = f"repeats the stamp {stamps[k]} ns"
            else:
                what = (f"goes back in time: stamp {stamps[k]} ns is "
                        f"{(stamps[k - 1] - stamps[k]) / 1e9:.3f} s before the previous "
                        f"{stamps[k - 1]} ns")
            return (f"{where} {what}; ground-truth stamps must strictly increase (a clock "
                    "step, or a recording played in a loop?)")
        spans.append((min(stamps), max(stamps), path))
    pair = _first_overlap(spans)
    if pair is not None:
        (a0, a1, a), (b0, b1, b) = pair
        return (f"bags {str(a)!r} and {str(b)!r} overlap in time: their ground truth "
                f"{topic!r} spans {a0}..{a1} ns and {b0}..{b1} ns, both holding "
                f"{b0}..{min(a1, b1)} ns (the same recording twice?); give bags of "
                "distinct stretches")
    return None
