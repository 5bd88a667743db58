"""Importer round trip on the shared EuRoC micro folder: rosbag2 (MCAP, sqlite3) -> numpy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from meetup_ros.bags import BagError, topics
from meetup_ros.bags.checksums import verify_checksums
from meetup_ros.bags.euroc import load_euroc, load_image
from meetup_ros.bags.importer import TYPESTORE, import_euroc, scaled_calibration
from meetup_ros.bags.reader import bag_info, iter_raw_messages, read_sequence


@pytest.fixture(scope="module")
def source(euroc_dir: Path):
    return load_euroc(euroc_dir)


@pytest.fixture(scope="module")
def mcap_bag(euroc_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "full_mcap"
    summary = import_euroc(euroc_dir, out, downscale=2, imu_margin_s=1.0)
    assert summary.counts[topics.CAM0_IMAGE] == 95
    return out


def test_mcap_round_trip(mcap_bag: Path, source) -> None:
    # the importer writes the data files' checksums; read_sequence verifies them
    assert verify_checksums(mcap_bag)
    seq = read_sequence(mcap_bag)
    info = bag_info(mcap_bag)
    assert info["storage"] == "mcap"
    first_ns, last_ns = int(source.cam0.stamps_ns[0]), int(source.cam0.stamps_ns[-1])

    # cameras: every frame, stamps as in data.csv, pixels = area-downscaled PNG
    for name, cam in (("cam0", seq.cam0), ("cam1", seq.cam1)):
        stream = getattr(source, name)
        np.testing.assert_array_equal(cam.stamps_ns, stream.stamps_ns)
        assert len(cam.images) == 95 and cam.images[0].shape == (240, 376)
        for i in (0, 47, 94):
            full = load_image(stream.paths[i])
            expected = cv2.resize(full, (376, 240), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(cam.images[i], expected)
        calib = scaled_calibration(stream.calib, 2)
        np.testing.assert_allclose(cam.K, calib.K, atol=0)
        np.testing.assert_allclose(cam.dist, stream.calib.dist, atol=0)
        assert (cam.width, cam.height) == (376, 240)
        np.testing.assert_allclose(cam.T_body_cam, stream.calib.T_body_cam, atol=1e-9)
    # principal point of the half-size image: (c + 0.5) / 2 - 0.5
    assert seq.cam0.K[0, 2] == pytest.approx((367.215 + 0.5) / 2 - 0.5)
    assert seq.cam0.K[1, 1] == pytest.approx(457.296 / 2)
    baseline = seq.T_cam0_cam1[:3, 3]
    assert np.linalg.norm(baseline) == pytest.approx(0.110, abs=0.002)  # VI-Sensor stereo

    # IMU: window + 1 s margin (none before: the IMU log starts at the first frame)
    imu = source.imu
    keep = (imu.stamps_ns >= first_ns - 1_000_000_000) & (imu.stamps_ns <= last_ns + 1_000_000_000)
    np.testing.assert_array_equal(seq.imu.stamps_ns, imu.stamps_ns[keep])
    np.testing.assert_array_equal(seq.imu.gyro_radps, imu.gyro_radps[keep])
    np.testing.assert_array_equal(seq.imu.accel_mps2, imu.accel_mps2[keep])
    assert seq.imu.stamps_ns.size == 941 + 200
    np.testing.assert_allclose(np.diag(seq.imu.gyro_cov), [1.6968e-04**2 * 200] * 3)
    np.testing.assert_allclose(np.diag(seq.imu.accel_cov), [2.0e-3**2 * 200] * 3)

    # ground truth: poses, world velocity (stored in body frame) and biases come back
    gt = source.groundtruth
    keep = (gt.stamps_ns >= first_ns - 1_000_000_000) & (gt.stamps_ns <= last_ns + 1_000_000_000)
    got = seq.groundtruth
    np.testing.assert_array_equal(got.stamps_ns, gt.stamps_ns[keep])
    np.testing.assert_allclose(got.p_world_body, gt.p_world_body[keep], atol=1e-12)
    np.testing.assert_allclose(got.q_world_body_xyzw, gt.q_world_body_xyzw[keep], atol=1e-12)
    np.testing.assert_allclose(got.v_world_mps, gt.v_world_mps[keep], atol=1e-12)
    np.testing.assert_allclose(got.bias_gyro, gt.bias_gyro_radps[keep], atol=0)
    np.testing.assert_allclose(got.bias_accel, gt.bias_accel_mps2[keep], atol=0)


def test_frame_ids_types_and_order(mcap_bag: Path) -> None:
    frames: dict[str, set[str]] = {}
    last_ns = 0
    first_topic = None
    for msg in iter_raw_messages(mcap_bag):
        assert msg.stamp_ns >= last_ns, "bag messages not in time order"
        last_ns = msg.stamp_ns
        assert msg.msgtype == topics.MSGTYPES[msg.topic]
        first_topic = first_topic or msg.topic
        decoded = TYPESTORE.deserialize_cdr(msg.rawdata, msg.msgtype)
        if msg.topic == topics.TF_STATIC:
            children = {t.child_frame_id: t for t in decoded.transforms}
            assert set(children) == {"cam0", "cam1", "imu0"}
            assert {t.header.frame_id for t in decoded.transforms} == {"body"}
            continue
        stamp_ns = decoded.header.stamp.sec * 1_000_000_000 + decoded.header.stamp.nanosec
        assert stamp_ns == msg.stamp_ns, f"{msg.topic}: header stamp != bag stamp"
        frames.setdefault(msg.topic, set()).add(decoded.header.frame_id)
        if msg.topic == topics.CAM0_IMAGE:
            assert decoded.encoding == "mono8" and decoded.step == decoded.width
        if msg.topic == topics.CAM0_INFO:
            assert decoded.distortion_model == "plumb_bob" and len(decoded.d) == 5
            np.testing.assert_array_equal(np.asarray(decoded.r).reshape(3, 3), np.eye(3))
        if msg.topic == topics.IMU:
            assert decoded.orientation_covariance[0] == -1.0
        if msg.topic == topics.GROUNDTRUTH_ODOMETRY:
            assert decoded.child_frame_id == "body"
    assert first_topic == topics.TF_STATIC
    assert frames == {
        topics.CAM0_IMAGE: {"cam0"}, topics.CAM0_INFO: {"cam0"},
        topics.CAM1_IMAGE: {"cam1"}, topics.CAM1_INFO: {"cam1"},
        topics.IMU: {"imu0"}, topics.GROUNDTRUTH_IMU_BIAS: {"imu0"},
        topics.GROUNDTRUTH_ODOMETRY: {"world"},
    }


def test_sqlite3_window_full_resolution(euroc_dir: Path, source, tmp_path: Path) -> None:
    stamps = source.cam0.stamps_ns
    out = tmp_path / "window_sqlite"
    summary = import_euroc(
        euroc_dir, out, start_ns=int(stamps[10]), end_ns=int(stamps[14]), imu_margin_s=0.1,
        storage="sqlite3",
    )
    assert bag_info(out)["storage"] == "sqlite3"
    assert summary.counts[topics.CAM1_IMAGE] == 5
    seq = read_sequence(out)
    np.testing.assert_array_equal(seq.cam1.stamps_ns, stamps[10:15])
    np.testing.assert_array_equal(seq.cam0.images[0], load_image(source.cam0.paths[10]))
    np.testing.assert_allclose(seq.cam0.K, source.cam0.calib.K, atol=0)
    assert seq.imu.stamps_ns[0] >= stamps[10] - 100_000_000
    assert seq.imu.stamps_ns[-1] <= stamps[14] + 100_000_000
    assert seq.imu.stamps_ns.size == 4 * 10 + 1 + 2 * 20  # 0.2 s of frames + 2 x 0.1 s, 200 Hz
    # two bags read as one sequence, merged in time order
    both = read_sequence([out, out])
    assert both.cam0.stamps_ns.size == 10
    assert np.all(np.diff(both.imu.stamps_ns) >= 0)


def test_velocity_is_stored_in_body_frame(mcap_bag: Path, source) -> None:
    msg = next(m for m in iter_raw_messages(mcap_bag, [topics.GROUNDTRUTH_ODOMETRY]))
    odom = TYPESTORE.deserialize_cdr(msg.rawdata, msg.msgtype)
    gt = source.groundtruth
    i = int(np.searchsorted(gt.stamps_ns, msg.stamp_ns))
    v_body = Rotation.from_quat(gt.q_world_body_xyzw[i]).inv().apply(gt.v_world_mps[i])
    lin = odom.twist.twist.linear
    np.testing.assert_allclose([lin.x, lin.y, lin.z], v_body, atol=1e-12)


def test_refuses_to_overwrite(mcap_bag: Path, euroc_dir: Path) -> None:
    with pytest.raises(BagError, match="exists already"):
        import_euroc(euroc_dir, mcap_bag)


def test_types_match_the_installed_ros_interfaces(mcap_bag: Path) -> None:
    """The bag's type hashes equal those of the message packages installed, as ros2 bag checks."""
    import json
    import sys

    share = Path(sys.prefix) / "share"
    checked = 0
    for topic, msgtype in topics.MSGTYPES.items():
        description = share / msgtype.split("/")[0] / "msg" / f"{msgtype.split('/')[2]}.json"
        if not description.is_file():
            continue  # e.g. tf2_msgs, not in the pinned wheels
        hashes = {h["type_name"]: h["hash_string"]
                  for h in json.loads(description.read_text())["type_hashes"]}
        assert TYPESTORE.hash_rihs01(msgtype) == hashes[msgtype], topic
        checked += 1
    if checked == 0:
        pytest.skip(f"no ROS interface descriptions under {share}")
    metadata = (mcap_bag / "metadata.yaml").read_text()
    assert "durability: transient_local" in metadata  # /tf_static latched for ros2 bag play


def test_cli_import_and_bag_info(
    euroc_dir: Path, source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meetup_ros.cli import main

    out = tmp_path / "cli_bag"
    stamps = source.cam0.stamps_ns
    rc = main(["import-euroc", str(euroc_dir), str(out), "--end-ns", str(stamps[3]),
               "--downscale", "4", "--imu-margin-s", "0.05", "--storage", "sqlite3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "images 188x120" in printed and "/cam1/image_raw: 4" in printed
    assert main(["bag-info", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "storage:  sqlite3" in printed
    assert "/imu0" in printed and "sensor_msgs/msg/Imu" in printed
    # a user error is one line on stderr and exit status 2, no traceback
    assert main(["import-euroc", str(tmp_path / "nowhere"), str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err
    assert "meetup-ros import-euroc: error: EuRoC folder" in err and "does not exist" in err
    assert main(["bag-info", str(tmp_path / "nowhere")]) == 2


def test_bundled_sample_is_what_the_documented_command_makes(mcap_bag: Path) -> None:
    """data/README.md's command (downscale 2, 1 s margin) rebuilds the shipped bag's messages."""
    shipped = Path(__file__).resolve().parent.parent / "data" / "euroc_v1_01_easy_sample"
    rebuilt = iter_raw_messages(mcap_bag)
    count = 0
    for old, new in zip(iter_raw_messages(shipped), rebuilt, strict=True):
        assert (old.topic, old.msgtype, old.stamp_ns) == (new.topic, new.msgtype, new.stamp_ns)
        assert bytes(old.rawdata) == bytes(new.rawdata), f"{old.topic} at {old.stamp_ns}"
        count += 1
    assert count == 1752
    assert bag_info(shipped)["size_bytes"] < 15_000_000
