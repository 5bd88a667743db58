"""A table of bad inputs to the EuRoC reader, the importer and the bag reader, and their errors."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from meetup_ros.bags import BagError, EurocError, topics
from meetup_ros.bags.checksums import SUMS_NAME, write_checksums
from meetup_ros.bags.euroc import load_euroc
from meetup_ros.bags.importer import TYPESTORE, image_msg, import_euroc
from meetup_ros.bags.reader import iter_raw_messages, read_sequence

REPO = Path(__file__).resolve().parent.parent
SAMPLE_BAG = REPO / "data" / "euroc_v1_01_easy_sample"


def make_asl(euroc_dir: Path, root: Path) -> Path:
    """A writable copy of the micro folder: small files copied, PNGs and big csv linked."""
    mav0 = root / "mav0"
    for cam in ("cam0", "cam1"):
        (mav0 / cam / "data").mkdir(parents=True)
        src = euroc_dir / "mav0" / cam
        shutil.copy(src / "data.csv", mav0 / cam / "data.csv")
        shutil.copy(src / "sensor.yaml", mav0 / cam / "sensor.yaml")
        for png in sorted((src / "data").iterdir()):
            (mav0 / cam / "data" / png.name).symlink_to(png)
    (mav0 / "imu0").mkdir()
    shutil.copy(mav(euroc_dir, "imu0", "sensor.yaml"), mav0 / "imu0" / "sensor.yaml")
    shutil.copy(mav(euroc_dir, "imu0", "data.csv"), mav0 / "imu0" / "data.csv")
    shutil.copytree(euroc_dir / "groundtruth", root / "groundtruth")
    return root


def mav(root: Path, *parts: str) -> Path:
    return root.joinpath("mav0", *parts)


def replace_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def first_png(root: Path) -> Path:
    return sorted((root / "mav0" / "cam0" / "data").iterdir())[0]


def truncate_png(root: Path) -> None:
    png = first_png(root)
    raw = png.read_bytes()
    png.unlink()
    png.write_bytes(raw[: len(raw) // 2])


def wrong_size_png(root: Path) -> None:
    import cv2

    png = first_png(root)
    png.unlink()
    cv2.imwrite(str(png), np.zeros((240, 376), np.uint8))


def color_png(root: Path) -> None:
    import cv2

    png = first_png(root)
    png.unlink()
    cv2.imwrite(str(png), np.zeros((480, 752, 3), np.uint8))


# (id, change to the copied folder, expected error type, regex the message must match)
EUROC_CASES: list[tuple[str, Callable[[Path], None], type[Exception], str]] = [
    ("no mav0", lambda r: shutil.rmtree(r / "mav0"), EurocError, r"has no 'mav0/'"),
    ("no imu0", lambda r: shutil.rmtree(r / "mav0" / "imu0"), EurocError,
     r"missing IMU folder .*imu0"),
    ("no cam0 csv", lambda r: (mav(r, "cam0", "data.csv")).unlink(), EurocError,
     r"missing camera csv file .*cam0/data.csv"),
    ("imu row non-numeric",
     lambda r: replace_line(mav(r, "imu0", "data.csv"), 3, "1403715273267142912,a,b,c,d,e,f"),
     EurocError, r"imu0/data.csv:3: .* non-numeric"),
    ("imu row short",
     lambda r: replace_line(mav(r, "imu0", "data.csv"), 5, "1403715273277142912,0.1,0.2"),
     EurocError, r"imu0/data.csv:5: .* has 3 fields, expected 7"),
    ("imu NaN",
     lambda r: replace_line(mav(r, "imu0", "data.csv"), 4,
                            "1403715273272142976,nan,0,0,9.8,0,0"),
     EurocError, r"imu0/data.csv:4: .*NaN"),
    ("imu stamp goes back",
     lambda r: replace_line(mav(r, "imu0", "data.csv"), 4, "1,0,0,0,9.8,0,0"),
     EurocError, r"imu0/data.csv:4: timestamp 1 is not after"),
    ("cam stamp not an integer",
     lambda r: replace_line(mav(r, "cam0", "data.csv"), 2, "1.5e18,x.png"),
     EurocError, r"cam0/data.csv:2: timestamp '1.5e18' is not an integer"),
    ("broken yaml",
     lambda r: (mav(r, "cam0", "sensor.yaml")).write_text("%YAML:1.0\nT_BS: [1, 2\n"),
     EurocError, r"malformed YAML in .*cam0/sensor.yaml"),
    ("yaml without intrinsics",
     lambda r: replace_line(mav(r, "cam0", "sensor.yaml"), 19, "# removed"),
     EurocError, r"cam0/sensor.yaml' has no key 'intrinsics'"),
    ("yaml wrong distortion model",
     lambda r: replace_line(mav(r, "cam1", "sensor.yaml"), 20, "distortion_model: equidistant"),
     EurocError, r"distortion_model = 'equidistant', expected 'radial-tangential'"),
    ("T_BS not rigid",
     lambda r: replace_line(mav(r, "imu0", "sensor.yaml"), 10, "  data: [2.0, 0.0, 0.0, 0.0,"),
     EurocError, r"imu0/sensor.yaml'?: T_BS is not a rigid transform"),
    ("gt quaternion not unit",
     lambda r: replace_line(r / "groundtruth" / "V1_01_easy.csv", 2,
                            "1403715273262142976,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0"),
     EurocError, r"V1_01_easy.csv: row 1 quaternion .* norm 2.0000, expected 1"),
]


@pytest.mark.parametrize(
    ("change", "error", "pattern"), [c[1:] for c in EUROC_CASES], ids=[c[0] for c in EUROC_CASES]
)
def test_bad_euroc_folder(
    euroc_dir: Path, tmp_path: Path, change: Callable[[Path], None], error: type, pattern: str
) -> None:
    root = make_asl(euroc_dir, tmp_path / "asl")
    change(root)
    with pytest.raises(error, match=pattern):
        load_euroc(root)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(EurocError, match=r"EuRoC folder '.*nowhere' does not exist"):
        load_euroc(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (truncate_png, r"image '.*1403715273262142976.png' is truncated: no IEND"),
        (wrong_size_png, r"is 376x240, expected 752x480 from cam0/sensor.yaml"),
        (color_png, r"expected 8-bit grayscale \(mono8\)"),
    ],
    ids=["truncated png", "wrong size png", "colour png"],
)
def test_bad_png_stops_import(
    euroc_dir: Path, tmp_path: Path, change: Callable[[Path], None], pattern: str
) -> None:
    root = make_asl(euroc_dir, tmp_path / "asl")
    change(root)
    stamps = load_euroc(root).cam0.stamps_ns
    with pytest.raises(EurocError, match=pattern):
        import_euroc(root, tmp_path / "bag", end_ns=int(stamps[1]))


def test_missing_png_strict_and_lenient(euroc_dir: Path, tmp_path: Path) -> None:
    root = make_asl(euroc_dir, tmp_path / "asl")
    first_png(root).unlink()
    assert load_euroc(root).skipped["cam0"] == 1
    with pytest.raises(EurocError, match=r"cam0/data.csv:2: image .* does not exist"):
        load_euroc(root, strict=True)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"downscale": 0}, r"downscale = 0, expected an integer >= 1"),
        ({"storage": "rosbag1"}, r"storage = 'rosbag1', expected one of"),
        ({"imu_margin_s": -1.0}, r"imu_margin_s = -1.0"),
        ({"start_ns": 10, "end_ns": 5}, r"end_ns = 5 is before start_ns = 10$"),
        # a start after the last frame, no end given: the end is cam0's last frame, said so
        ({"start_ns": 2 * 10**18}, r"end_ns = \d+ \(cam0's last frame, not given\) is before "
                                   r"start_ns = 2000000000000000000$"),
        ({"start_ns": 0, "end_ns": 5}, r"no cam0 frame .* lies in \[0, 5\] ns"),
    ],
)
def test_bad_import_arguments(euroc_dir: Path, tmp_path: Path, kwargs: dict, pattern: str) -> None:
    with pytest.raises(BagError, match=pattern):
        import_euroc(euroc_dir, tmp_path / "bag", **kwargs)


def damaged_bag(tmp_path: Path, how: str, keep_sums: bool = False) -> Path:
    """A copy of the bundled bag, damaged; without its SHA256SUMS unless ``keep_sums`` (a
    bag recorded by ros2 has none: the damage must then be caught by reading it)."""
    bag = tmp_path / "bag"
    shutil.copytree(SAMPLE_BAG, bag)
    if not keep_sums:
        (bag / SUMS_NAME).unlink()
    mcap = next(bag.glob("*.mcap"))
    if how == "truncated":
        with mcap.open("r+b") as f:
            f.truncate(mcap.stat().st_size // 2)
    elif how == "garbage":
        mcap.write_bytes(np.random.default_rng(0).bytes(4096))
    elif how == "corrupt chunk":
        with mcap.open("r+b") as f:
            f.seek(mcap.stat().st_size // 2)
            f.write(b"\0" * 64)
    elif how == "flipped in a chunk":  # decompresses without error, to garbage images
        data = bytearray(mcap.read_bytes())
        middle = len(data) // 2
        data[middle: middle + 200] = bytes(b ^ 0xFF for b in data[middle: middle + 200])
        mcap.write_bytes(bytes(data))
    elif how == "no metadata":
        (bag / "metadata.yaml").unlink()
    return bag


@pytest.mark.parametrize(
    ("how", "pattern"),
    [
        ("truncated", r"cannot open bag .*corrupt, truncated.*end magic"),
        ("garbage", r"cannot open bag .*magic is invalid"),
        ("corrupt chunk", r"is corrupt or truncated: ZstdError"),
        ("no metadata", r"has no metadata.yaml; expected a rosbag2 folder"),
    ],
)
def test_damaged_bag(tmp_path: Path, how: str, pattern: str) -> None:
    bag = damaged_bag(tmp_path, how)
    with pytest.raises(BagError, match=pattern):
        read_sequence(bag)
    with pytest.raises(BagError, match=pattern):
        list(iter_raw_messages(bag))


@pytest.mark.parametrize("how", ["truncated", "garbage", "corrupt chunk",
                                 "flipped in a chunk"])
def test_damaged_bag_with_checksums(tmp_path: Path, how: str) -> None:
    """This package's bags carry SHA256SUMS: any damage is named before anything is read,
    including bytes flipped inside a zstd chunk, which rosbags decodes without an error."""
    bag = damaged_bag(tmp_path, how, keep_sums=True)
    pattern = r"bag '.*/bag': 'euroc_v1_01_easy_sample.mcap' does not match its SHA256SUMS"
    with pytest.raises(BagError, match=pattern):
        read_sequence(bag)
    with pytest.raises(BagError, match=pattern):
        list(iter_raw_messages(bag))


def test_checksum_file_itself_checked(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(SAMPLE_BAG, bag)
    (bag / SUMS_NAME).write_text("not a checksum line\n")
    with pytest.raises(BagError, match=r"SHA256SUMS line 1 'not a checksum line' is not"):
        read_sequence(bag)
    (bag / SUMS_NAME).write_text(f"{'0' * 64}  gone.mcap\n")
    with pytest.raises(BagError, match=r"'gone.mcap' listed in SHA256SUMS is missing"):
        read_sequence(bag)
    (bag / SUMS_NAME).write_text("")  # emptied: every data file must be listed
    with pytest.raises(BagError, match=r"\['euroc_v1_01_easy_sample.mcap'\] not listed in its "
                                       r"SHA256SUMS"):
        read_sequence(bag)
    write_checksums(bag)  # what the importer and recorder write: the bag reads again
    assert read_sequence(bag).imu is not None


def test_the_damaged_bag_among_several_is_named(tmp_path: Path) -> None:
    bad = damaged_bag(tmp_path, "corrupt chunk")
    pattern = (r"bag \['.*/bag'\] \(of \['.*euroc_v1_01_easy_sample', '.*/bag'\]\) is corrupt "
               r"or truncated: ZstdError")
    with pytest.raises(BagError, match=pattern):
        list(iter_raw_messages([SAMPLE_BAG, bad]))


def test_missing_bag(tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"bag '.*absent' does not exist"):
        read_sequence(tmp_path / "absent")


def test_plain_file_that_is_no_bag(tmp_path: Path) -> None:
    junk = tmp_path / "junkbag"
    junk.write_text("junk\n")
    with pytest.raises(BagError, match=r"cannot open bag \['.*junkbag'\] \(corrupt, truncated "
                                       r"or not a rosbag2\)"):
        read_sequence(junk)


def test_missing_topics() -> None:
    with pytest.raises(BagError, match=r"topic\(s\) \['/lidar'\] not in bag .* it has \["):
        next(iter_raw_messages(SAMPLE_BAG, ["/imu0", "/lidar"]))
    with pytest.raises(BagError, match=r"required topic\(s\) \['/odom'\] not in bag"):
        read_sequence(SAMPLE_BAG, required=["/odom"])


def write_bag(path: Path, messages: list[tuple[str, str, int, object]]) -> None:
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for topic, msgtype, stamp_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            writer.write(conns[topic], stamp_ns, TYPESTORE.serialize_cdr(msg, msgtype))


def test_image_with_unexpected_encoding(tmp_path: Path) -> None:
    # rgb8 and bgr8 are read as the nodes read them (test_bag_reader_findings)
    msg = image_msg(1_000, "cam0", np.zeros((4, 6), np.uint8))
    msg.encoding = "16UC1"
    write_bag(tmp_path / "bag", [(topics.CAM0_IMAGE, "sensor_msgs/msg/Image", 1_000, msg)])
    with pytest.raises(BagError, match=r"'/cam0/image_raw' stamped 1000 ns: encoding '16UC1' is "
                                       r"not supported here; expected one of \['8UC1', 'bgr8', "
                                       r"'mono8', 'rgb8'\]"):
        read_sequence(tmp_path / "bag", required=())


def test_a_known_topic_with_another_type_is_named(tmp_path: Path) -> None:
    """A std_msgs/String on /imu0 read as 'corrupt or truncated: AttributeError ...
    header' (a tester): the bag is not damaged, the topic has the wrong type."""
    text = TYPESTORE.types["std_msgs/msg/String"](data="hi")
    write_bag(tmp_path / "bag", [(topics.IMU, "std_msgs/msg/String", 1_000, text)])
    with pytest.raises(BagError, match=r"topic '/imu0' has type 'std_msgs/msg/String', "
                                       r"expected 'sensor_msgs/msg/Imu'"):
        read_sequence(tmp_path / "bag", required=())


def test_image_without_camera_info(tmp_path: Path) -> None:
    msg = image_msg(1_000, "cam0", np.zeros((4, 6), np.uint8))
    write_bag(tmp_path / "bag", [(topics.CAM0_IMAGE, "sensor_msgs/msg/Image", 1_000, msg)])
    with pytest.raises(BagError, match=r"has '/cam0/image_raw' but no '/cam0/camera_info'"):
        read_sequence(tmp_path / "bag", required=())


def test_camera_info_with_a_k3_is_refused_not_truncated(euroc_dir: Path, tmp_path: Path) -> None:
    """The reader keeps k1 k2 p1 p2; a non-zero k3 was dropped without a word."""
    from meetup_ros.bags.importer import camera_info_msg

    calib = load_euroc(euroc_dir).cam0.calib
    info = camera_info_msg(1_000, calib)
    info.d[4] = 0.05
    image = image_msg(1_000, "cam0", np.zeros((calib.height, calib.width), np.uint8))
    write_bag(tmp_path / "bag", [(topics.CAM0_INFO, "sensor_msgs/msg/CameraInfo", 1_000, info),
                                 (topics.CAM0_IMAGE, "sensor_msgs/msg/Image", 1_000, image)])
    with pytest.raises(BagError, match=r"has D = \[.*0\.05\], expected >= 4 plumb_bob "
                                       r"coefficients, any after p2 zero"):
        read_sequence(tmp_path / "bag", required=())


@pytest.mark.parametrize("how", ["truncated", "colour"])
def test_failed_import_leaves_nothing_behind(euroc_dir: Path, tmp_path: Path, how: str) -> None:
    """A bad PNG part-way left OUT_BAG holding a partial .mcap without metadata.yaml, and the
    next run, with the PNG fixed, refused it: "exists already; not overwriting"."""
    import cv2

    root = make_asl(euroc_dir, tmp_path / "asl")
    stamps = load_euroc(root).cam0.stamps_ns
    # the third frame: IMU samples and two frames are written before it
    png = sorted((root / "mav0" / "cam0" / "data").iterdir())[2]
    source = png.resolve()
    png.unlink()
    if how == "truncated":
        png.write_bytes(source.read_bytes()[:500])
    else:
        cv2.imwrite(str(png), np.zeros((480, 752, 3), np.uint8))
    out = tmp_path / "new" / "nested" / "bag"  # folders the import creates
    with pytest.raises(EurocError, match=rf"image '.*{png.name}' is "):
        import_euroc(root, out, end_ns=int(stamps[3]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asl"]
    png.unlink()
    png.symlink_to(source)
    summary = import_euroc(root, out, end_ns=int(stamps[3]))
    assert summary.counts[topics.CAM0_IMAGE] == 4
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "bag.mcap", "metadata.yaml"]
    assert read_sequence(out).cam0 is not None  # its checksums and metadata agree
    assert [p.name for p in out.parent.iterdir()] == ["bag"]  # no staging folder left


@pytest.mark.parametrize(("downscale", "size"), [(12, "62x40"), (400, "1x1"), (1000, "0x0")])
def test_downscale_below_the_minimum_image_size_is_refused(
    euroc_dir: Path, tmp_path: Path, downscale: int, size: str
) -> None:
    """--downscale 1000 ended in a cv2 traceback after writing part of the bag; 400 wrote
    1x1 images without a word."""
    with pytest.raises(BagError, match=(
            rf"^downscale = {downscale} leaves cam0 images of 752x480 at {size} pixels, below "
            r"the 64x40 minimum \(the VIO network's input\); expected a downscale <= 11$")):
        import_euroc(euroc_dir, tmp_path / "bag", downscale=downscale)
    assert list(tmp_path.iterdir()) == []


def test_largest_downscale_allowed_still_imports(euroc_dir: Path, tmp_path: Path) -> None:
    stamps = load_euroc(euroc_dir).cam0.stamps_ns
    summary = import_euroc(euroc_dir, tmp_path / "bag", downscale=11, end_ns=int(stamps[1]),
                           imu_margin_s=0.0)
    assert (summary.width, summary.height) == (68, 43)


def test_minimum_image_size_is_the_vio_input() -> None:
    from meetup_ros.bags.importer import MIN_IMAGE_HEIGHT, MIN_IMAGE_WIDTH
    from meetup_ros.odometry.model import VioNetConfig

    config = VioNetConfig()
    assert (config.image_width, config.image_height) == (MIN_IMAGE_WIDTH, MIN_IMAGE_HEIGHT)


def test_cli_refuses_a_downscale_too_large_in_one_line(
    euroc_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meetup_ros.cli import main

    assert main(["import-euroc", str(euroc_dir), str(tmp_path / "bag"),
                 "--downscale", "1000"]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("meetup-ros import-euroc: error: downscale = 1000 leaves cam0 "
                            "images of 752x480 at 0x0 pixels, below the 64x40 minimum (the VIO "
                            "network's input); expected a downscale <= 11\n")
    assert list(tmp_path.iterdir()) == []


def test_bag_info_counts_the_data_not_metadata_yaml(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tester's metadata.yaml listing 9999 /imu0 messages made bag-info print 9999 for a bag
    holding 1141 (nothing checks that file: SHA256SUMS covers the data only)."""
    from meetup_ros.bags.reader import bag_info

    bag = tmp_path / "edited"
    shutil.copytree(SAMPLE_BAG, bag)
    meta = bag / "metadata.yaml"
    text = meta.read_text()
    assert "message_count: 1141" in text
    meta.write_text(text.replace("message_count: 1141", "message_count: 9999"))
    with caplog.at_level(logging.WARNING, logger="meetup_ros.bags.reader"):
        info = bag_info(bag)
    assert info["topics"][topics.IMU][1] == 1141
    assert info["message_count"] == sum(count for _, count in info["topics"].values())
    assert "/imu0 lists 9999, holds 1141" in caplog.text
    meta.write_text(text.replace("message_count: 1141", "message_count: many"))
    info = bag_info(bag)  # was a TypeError traceback (rosbags sums the listed counts)
    assert info["topics"][topics.IMU][1] == 1141
    assert "/imu0 lists many, holds 1141" in caplog.text


def test_import_says_when_the_imu_or_ground_truth_does_not_cover_the_images(
        euroc_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tester's IMU covering 2 s of the 4.7 s of images, and a ground truth with no row among
    them, imported without a word; the VIO was then scored over part of the window."""
    root = make_asl(euroc_dir, tmp_path / "asl")
    imu_csv = mav(root, "imu0", "data.csv")
    lines = imu_csv.read_text().splitlines()
    imu_csv.write_text("\n".join(lines[:401]) + "\n")  # header + 2 s at 200 Hz
    with caplog.at_level(logging.WARNING, logger="meetup_ros.bags.importer"):
        import_euroc(root, tmp_path / "bag", downscale=2)
    assert "mav0/imu0 does not cover the image window" in caplog.text
    assert "ends 2.7" in caplog.text and "state_groundtruth" not in caplog.text
