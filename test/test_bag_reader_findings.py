"""A tester's findings on the offline bag reader and the bag commands' options (no DDS): a bag
named by its data file, bags merged under one calibration, colour images, decode errors that
named no bag, an empty topic list, overlapping bags, ignored replay options, the recorder's
outcome and evaluate-vio's weights messages."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bag_variants import filtered_bag, garbled_imu_bag
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from meetup_ros.bags import BagError, topics
from meetup_ros.bags.checksums import SUMS_NAME, write_checksums
from meetup_ros.bags.importer import TYPESTORE, image_msg, imu_msg
from meetup_ros.bags.reader import (
    bag_info,
    bags_overlap_error,
    iter_raw_messages,
    read_sequence,
)
from meetup_ros.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE_BAG = REPO / "data" / "euroc_v1_01_easy_sample"
MCAP_NAME = "euroc_v1_01_easy_sample.mcap"
# After the sample bag's last stamp (1403715278.96 s): a later stretch of the flight.
LATER_NS = 1_403_715_290_000_000_000


def write_bag(path: Path, messages: list[tuple[str, str, int, Any]]) -> Path:
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns: dict[str, Any] = {}
        for topic, msgtype, stamp_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(conns[topic], stamp_ns, TYPESTORE.serialize_cdr(msg, msgtype))
    return path


def sample_camera_info(stamp_ns: int) -> Any:
    """The sample bag's /cam0/camera_info (376x240), restamped."""
    with Reader(SAMPLE_BAG) as reader:
        conn = next(c for c in reader.connections if c.topic == topics.CAM0_INFO)
        _, _, raw = next(reader.messages(connections=[conn]))
    msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def camera_bag(dst: Path, *, change_info: Callable[[Any], None] = lambda m: None,
               image_hw: tuple[int, int] = (240, 376), stamp_ns: int = LATER_NS) -> Path:
    """One cam0 frame (with its camera_info, altered by ``change_info``) and one IMU sample,
    at ``stamp_ns``."""
    info = sample_camera_info(stamp_ns)
    change_info(info)
    image = image_msg(stamp_ns, "cam0", np.zeros(image_hw, np.uint8))
    imu = imu_msg(stamp_ns, "imu0", np.zeros(3), np.array([0.0, 0.0, 9.81]), 1e-4, 1e-3)
    return write_bag(dst, [
        (topics.CAM0_INFO, "sensor_msgs/msg/CameraInfo", stamp_ns, info),
        (topics.CAM0_IMAGE, "sensor_msgs/msg/Image", stamp_ns, image),
        (topics.IMU, "sensor_msgs/msg/Imu", stamp_ns, imu),
    ])


def read_cam0(bags: list[Path]) -> Any:
    return read_sequence(bags, cameras=("cam0",), required=())


# ---- Finding 1: a bag named by its data file skipped its SHA256SUMS ---------------------------

def flipped_copy(tmp_path: Path) -> Path:
    """The sample bag with 200 bytes flipped inside a chunk (rosbags reads it without an
    error, as garbage images), its SHA256SUMS as written."""
    bag = tmp_path / "flip_sums"
    shutil.copytree(SAMPLE_BAG, bag)
    mcap = bag / MCAP_NAME
    data = bytearray(mcap.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 200] = bytes(b ^ 0xFF for b in data[middle: middle + 200])
    mcap.write_bytes(bytes(data))
    return bag


def test_a_bag_named_by_its_data_file_is_checked_against_its_folders_sums(
        tmp_path: Path) -> None:
    mcap = flipped_copy(tmp_path) / MCAP_NAME
    pattern = (rf"bag '.*/flip_sums/{MCAP_NAME}' does not match its entry in "
               rf"'.*/flip_sums/{SUMS_NAME}': the file is corrupt")
    with pytest.raises(BagError, match=pattern):
        read_sequence(mcap)
    with pytest.raises(BagError, match=pattern):
        list(iter_raw_messages(mcap))
    with pytest.raises(BagError, match=pattern):
        bag_info(mcap)


def test_a_data_file_its_folders_sums_leave_out_is_refused(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(SAMPLE_BAG, bag)
    (bag / SUMS_NAME).write_text(f"{'0' * 64}  other.mcap\n")
    with pytest.raises(BagError, match=rf"bag '.*/{MCAP_NAME}': not listed in "
                                       rf"'.*/bag/{SUMS_NAME}'"):
        read_sequence(bag / MCAP_NAME)
    write_checksums(bag)  # listed again: the file reads
    assert read_sequence(bag / MCAP_NAME).imu is not None


def test_a_bag_without_sums_is_said_to_be_unchecked_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bag from `ros2 bag record` has no SHA256SUMS: a damaged one read without a word (a
    tester's 200 flipped bytes). The reader says once per bag that it is not checked; a bag
    with the file says nothing."""
    bag = tmp_path / "recorded"
    shutil.copytree(SAMPLE_BAG, bag)
    (bag / SUMS_NAME).unlink()
    with caplog.at_level(logging.INFO, logger="meetup_ros.bags.reader"):
        read_sequence(bag)
        bag_info(bag)
        read_sequence(SAMPLE_BAG)
    said = [r.getMessage() for r in caplog.records if "is checked only by" in r.getMessage()]
    assert len(said) == 1 and str(bag) in said[0] and SUMS_NAME in said[0], said


def test_cli_refuses_a_damaged_data_file_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mcap = flipped_copy(tmp_path) / MCAP_NAME
    assert main(["bag-info", str(mcap)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("meetup-ros bag-info: error: bag ") and "\n" not in err
    assert "does not match its entry in" in err


# ---- Finding 3: bags merged under the first bag's calibration --------------------------------

def quarter_size(info: Any) -> None:
    """What import-euroc --downscale 4 writes where the sample has --downscale 2."""
    info.width, info.height = 188, 120
    info.k = np.array([info.k[0] / 2, 0.0, (info.k[2] + 0.5) / 2 - 0.5,
                       0.0, info.k[4] / 2, (info.k[5] + 0.5) / 2 - 0.5, 0.0, 0.0, 1.0])


def test_a_camera_info_that_differs_between_bags_is_refused_naming_both(
        tmp_path: Path) -> None:
    other = camera_bag(tmp_path / "quarter", change_info=quarter_size, image_hw=(120, 188))
    with pytest.raises(BagError, match=r"'/cam0/camera_info': bags '.*euroc_v1_01_easy_sample' "
                                       r"and '.*/quarter' differ \(size 376x240 vs 188x120\)"):
        read_cam0([SAMPLE_BAG, other])


def test_intrinsics_or_distortion_that_differ_between_bags_are_refused(tmp_path: Path) -> None:
    def other_fx(info: Any) -> None:
        info.k = info.k + np.eye(3).reshape(-1)

    def other_k1(info: Any) -> None:
        info.d = info.d + np.array([0.01, 0.0, 0.0, 0.0, 0.0])

    for name, change, what in [("fx", other_fx, r"K \["), ("k1", other_k1, r"D \[")]:
        other = camera_bag(tmp_path / name, change_info=change)
        with pytest.raises(BagError, match=rf"bags '.*' and '.*/{name}' differ \({what}"):
            read_cam0([SAMPLE_BAG, other])


def test_a_camera_info_that_changes_within_a_bag_is_refused(tmp_path: Path) -> None:
    later = sample_camera_info(LATER_NS + 50_000_000)
    quarter_size(later)
    bag = write_bag(tmp_path / "bag", [
        (topics.CAM0_INFO, "sensor_msgs/msg/CameraInfo", LATER_NS, sample_camera_info(LATER_NS)),
        (topics.CAM0_INFO, "sensor_msgs/msg/CameraInfo", LATER_NS + 50_000_000, later),
    ])
    with pytest.raises(BagError, match=rf"bag '.*/bag': it changes at stamp "
                                       rf"{LATER_NS + 50_000_000} ns \(size 376x240 vs 188x120"):
        read_cam0([bag])


def test_an_image_of_another_size_than_its_camera_info_is_refused(tmp_path: Path) -> None:
    other = camera_bag(tmp_path / "small", image_hw=(120, 188))  # its camera_info says 376x240
    with pytest.raises(BagError, match=rf"bag '.*/small': image on '/cam0/image_raw' stamped "
                                       rf"{LATER_NS} ns is 188x120, but '/cam0/camera_info' "
                                       r"\(of bag '.*euroc_v1_01_easy_sample'\) says 376x240"):
        read_cam0([SAMPLE_BAG, other])
    with pytest.raises(BagError, match=r"stamped .* is 188x120, but '/cam0/camera_info' says "
                                       r"376x240"):
        read_cam0([other])


def test_bags_with_one_calibration_read_and_the_log_says_where_they_meet(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = camera_bag(tmp_path / "later")
    with caplog.at_level(logging.INFO, logger="meetup_ros.bags.reader"):
        seq = read_cam0([SAMPLE_BAG, other])
    assert seq.cam0 is not None and len(seq.cam0.images) == 96
    last_imu = int(read_sequence(SAMPLE_BAG).imu.stamps_ns[-1])
    assert (f"bags {str(SAMPLE_BAG)!r} and {str(other)!r} meet: /imu0 ends at {last_imu} ns "
            f"in the first and resumes at {LATER_NS} ns in the second, "
            f"{(LATER_NS - last_imu) / 1e9:.3f} s later") in caplog.text


# ---- Finding 7: colour cameras, run by the nodes, refused offline ----------------------------

def colour_bag(dst: Path, encoding: str, rgb: np.ndarray) -> Path:
    image = image_msg(LATER_NS, "cam0", np.zeros(rgb.shape[:2], np.uint8))
    channels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    image.encoding, image.step = encoding, 3 * rgb.shape[1]
    image.data = np.ascontiguousarray(channels).reshape(-1)
    info = sample_camera_info(LATER_NS)
    info.height, info.width = rgb.shape[:2]
    return write_bag(dst, [(topics.CAM0_INFO, "sensor_msgs/msg/CameraInfo", LATER_NS, info),
                           (topics.CAM0_IMAGE, "sensor_msgs/msg/Image", LATER_NS, image)])


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_colour_images_read_as_the_nodes_read_them(tmp_path: Path, encoding: str) -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 10
    seq = read_cam0([colour_bag(tmp_path / encoding, encoding, rgb)])
    assert seq.cam0 is not None
    # BT.601 luma, as ros/convert.image_to_mono8 (test_ros_conversions)
    expected = round(0.299 * 200 + 0.587 * 100 + 0.114 * 10)
    np.testing.assert_array_equal(seq.cam0.images[0], np.full((4, 6), expected, np.uint8))


def test_an_image_encoding_no_node_reads_names_the_bag_and_stamp(tmp_path: Path) -> None:
    msg = image_msg(LATER_NS, "cam0", np.zeros((4, 6), np.uint8))
    msg.encoding = "16UC1"
    bag = write_bag(tmp_path / "bag", [(topics.CAM0_IMAGE, "sensor_msgs/msg/Image", LATER_NS,
                                        msg)])
    with pytest.raises(BagError, match=rf"bag '.*/bag': image on '/cam0/image_raw' stamped "
                                       rf"{LATER_NS} ns: encoding '16UC1' is not supported here"):
        read_cam0([bag])


# ---- Finding 16: decode errors named neither bag nor stamp -----------------------------------

def test_a_message_that_does_not_decode_names_its_bag_and_bag_time(tmp_path: Path) -> None:
    bag, bad_ns = garbled_imu_bag(tmp_path / "imu_badcdr", 50)
    with pytest.raises(BagError, match=rf"bag '.*/imu_badcdr': message on '/imu0' "
                                       rf"\(sensor_msgs/msg/Imu\) at bag time {bad_ns} ns cannot "
                                       r"be decoded"):
        read_sequence([SAMPLE_BAG, bag], required=())


def test_evaluate_vio_names_a_bad_weights_file_not_the_bag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_text("not weights\n")
    assert main(["evaluate-vio", "--weights", str(junk), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"meetup-ros evaluate-vio: error: weights file {str(junk)!r} is not "
                          "a readable"), err
    assert "bag" not in err and "\n" not in err
    assert main(["evaluate-vio", "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"meetup-ros evaluate-vio: error: --weights {str(tmp_path)!r}: {str(tmp_path)!r} is a "
        "folder; expected a weights file (e.g. models/vio.pt)")


# ---- Finding 4: an empty topic list read every topic -----------------------------------------

def test_an_empty_topic_list_reads_no_topic() -> None:
    assert list(iter_raw_messages(SAMPLE_BAG, [])) == []
    assert len(list(iter_raw_messages(SAMPLE_BAG, [topics.TF_STATIC]))) == 1


# ---- Finding 11: overlapping bags were replayed twice ----------------------------------------

def test_bags_that_overlap_on_a_topic_are_named(tmp_path: Path) -> None:
    info = bag_info([SAMPLE_BAG, SAMPLE_BAG], count_messages=False)
    error = bags_overlap_error(info, [topics.IMU])
    assert error is not None
    assert error.startswith(f"bags {str(SAMPLE_BAG)!r} and {str(SAMPLE_BAG)!r} overlap in time "
                            "on '/imu0': their bag times ")
    assert "(the same recording twice?)" in error


def test_bags_split_by_topic_or_of_distinct_stretches_do_not_overlap(tmp_path: Path) -> None:
    imu = filtered_bag(tmp_path / "imu", lambda topic, _: topic == topics.IMU)
    cams = filtered_bag(tmp_path / "cams", lambda topic, _: topic.startswith("/cam0"))
    info = bag_info([imu, cams], count_messages=False)
    assert bags_overlap_error(info, [topics.IMU, topics.CAM0_IMAGE, topics.CAM0_INFO]) is None
    later = camera_bag(tmp_path / "later")  # its bag time is after the sample's
    info = bag_info([SAMPLE_BAG, later], count_messages=False)
    assert bags_overlap_error(info, [topics.IMU, topics.CAM0_IMAGE]) is None


# ---- Finding 12: replay's wait options without a wait ----------------------------------------

@pytest.mark.parametrize(("options", "named"), [
    (["--wait-fail"], "--wait-fail"),
    (["--wait-timeout", "1"], "--wait-timeout"),
    (["--wait-timeout", "1", "--wait-fail", "--wait-for-subscribers", "0"],
     "--wait-timeout and --wait-fail"),
])
def test_replay_refuses_wait_options_without_a_wait(
        capsys: pytest.CaptureFixture[str], options: list[str], named: str) -> None:
    pytest.importorskip("rclpy")
    assert main(["replay", str(SAMPLE_BAG), *options]) == 2
    assert capsys.readouterr().err.strip() == (
        f"meetup-ros replay: error: {named}: only with --wait-for-subscribers N > 0 (without it "
        "the replay does not wait); add it or drop them")


# ---- Finding 13: a recording where nothing arrived -------------------------------------------

def test_record_outcome_fails_when_nothing_arrived_and_warns_of_silent_topics(
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from meetup_ros.cli.bags import _record_outcome

    assert _record_outcome("rec", {"/odmo": 0}) == 1
    assert capsys.readouterr().err.strip() == (
        "meetup-ros record: error: no message arrived on ['/odmo']: the bag 'rec' holds none "
        "(a misspelt topic, or no publisher?)")
    with caplog.at_level(logging.WARNING):
        assert _record_outcome("rec", {"/imu0": 3, "/odmo": 0}) == 0
    assert "no message arrived on ['/odmo']; the bag holds none of them" in caplog.text
    assert _record_outcome("rec", {"/imu0": 3}) == 0
