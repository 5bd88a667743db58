"""Copies of the bundled bag with altered header stamps, for tests of what the commands say
about them (a recording whose stamps were never set has them all 0)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from meetup_ros.bags.importer import TYPESTORE

REPO = Path(__file__).resolve().parent.parent
SAMPLE_BAG = REPO / "data" / "euroc_v1_01_easy_sample"


def altered_bag(dst: Path, alter: Callable[[str, int, object], None],
                src: Path = SAMPLE_BAG) -> Path:
    """Write ``src`` to ``dst`` (no SHA256SUMS, like a ros2 recording) with each message
    passed to ``alter(topic, index on its topic, message)`` to change in place first; the
    bag's receive times are kept."""
    counts: dict[str, int] = {}
    with Reader(src) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as out:
        conns = {c.id: out.add_connection(c.topic, c.msgtype, typestore=TYPESTORE)
                 for c in reader.connections}
        for conn, t_ns, raw in reader.messages():
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            index = counts.get(conn.topic, 0)
            counts[conn.topic] = index + 1
            alter(conn.topic, index, msg)
            out.write(conns[conn.id], t_ns, TYPESTORE.serialize_cdr(msg, conn.msgtype))
    return dst


def restamped_bag(dst: Path, stamp: Callable[[str, int], int], src: Path = SAMPLE_BAG) -> Path:
    """``src`` with each header stamp replaced by ``stamp(topic, stamp_ns)``."""
    def restamp(topic: str, _index: int, msg: object) -> None:
        header = getattr(msg, "header", None)
        if header is not None:
            old = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            header.stamp.sec, header.stamp.nanosec = divmod(stamp(topic, old), 1_000_000_000)

    return altered_bag(dst, restamp, src)


def zero_stamp_bag(dst: Path) -> Path:
    """The bundled bag with every header stamp 0 (never set by the recording node)."""
    return restamped_bag(dst, lambda topic, stamp_ns: 0)


def filtered_bag(dst: Path, keep: Callable[[str, int], bool], src: Path = SAMPLE_BAG) -> Path:
    """Write ``src`` to ``dst`` with only the messages for which ``keep(topic, stamp_ns)`` (the
    header stamp) holds; a topic left with no message keeps no connection."""
    with Reader(src) as reader:
        kept = [(conn, t_ns, raw) for conn, t_ns, raw in reader.messages()
                if keep(conn.topic, _header_stamp_ns(conn.msgtype, raw, t_ns))]
    with Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as out:
        conns: dict[int, object] = {}
        for conn, t_ns, raw in kept:
            if conn.id not in conns:
                conns[conn.id] = out.add_connection(conn.topic, conn.msgtype,
                                                    typestore=TYPESTORE)
            out.write(conns[conn.id], t_ns, raw)  # type: ignore[arg-type]
    return dst


def _header_stamp_ns(msgtype: str, raw: bytes, t_ns: int) -> int:
    msg = TYPESTORE.deserialize_cdr(raw, msgtype)
    if not hasattr(msg, "header"):
        return t_ns
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def garbled_imu_bag(dst: Path, bad_index: int, src: Path = SAMPLE_BAG) -> tuple[Path, int]:
    """``src``'s /imu0 alone, with message ``bad_index`` replaced by bytes that are no Imu
    CDR; returns the bag and that message's bag time."""
    from meetup_ros.bags import topics

    bad_ns = -1
    with Reader(src) as reader, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as out:
        conn = out.add_connection(topics.IMU, "sensor_msgs/msg/Imu", typestore=TYPESTORE)
        imu = [c for c in reader.connections if c.topic == topics.IMU]
        for i, (_, t_ns, raw) in enumerate(reader.messages(connections=imu)):
            if i == bad_index:
                raw, bad_ns = b"\x00\x01\x00\x00garbage", t_ns
            out.write(conn, t_ns, raw)
    return dst, bad_ns
