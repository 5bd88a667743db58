"""Offline reading of bags whose stamps or IMU values are bad: ground truth that repeats or
goes back (one bag, or two bags of the same stretch), IMU samples with NaN, IMU samples with
stamp 0. Each bag is the bundled one rewritten with rosbags, as a tester made them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from meetup_ros.bags import topics
from meetup_ros.bags.importer import TYPESTORE
from meetup_ros.bags.reader import read_sequence
from meetup_ros.odometry.windowing import OdometryError

REPO = Path(__file__).resolve().parent.parent
SAMPLE_BAG = REPO / "data" / "euroc_v1_01_easy_sample"
NS = 1_000_000_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def rewritten_bag(dst: Path, change: Callable[[str, int, Any], None] | None = None,
                  storage: StoragePlugin = StoragePlugin.MCAP) -> Path:
    """The bundled bag written to ``dst`` (no SHA256SUMS, like a ros2 recording), each message
    passed to ``change(topic, index on its topic, msg)`` first; receive times kept."""
    seen: dict[str, int] = {}
    with Reader(SAMPLE_BAG) as reader, Writer(dst, version=9, storage_plugin=storage) as out:
        conns = {c.id: out.add_connection(c.topic, c.msgtype, typestore=TYPESTORE)
                 for c in reader.connections}
        for conn, t_ns, raw in reader.messages():
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            index = seen.get(conn.topic, 0)
            seen[conn.topic] = index + 1
            if change is not None:
                change(conn.topic, index, msg)
            out.write(conns[conn.id], t_ns, TYPESTORE.serialize_cdr(msg, conn.msgtype))
    return dst


def stamp_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


def set_stamp(msg: Any, stamp_ns: int) -> None:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, NS)


def time_back_bag(dst: Path) -> Path:
    """Every header stamp more than 3 s after the first goes back 2 s (a clock step)."""
    first: list[int] = []

    def change(topic: str, index: int, msg: Any) -> None:
        if not hasattr(msg, "header"):
            return
        stamp = stamp_of(msg)
        if not first:
            first.append(stamp)
        if stamp > first[0] + 3 * NS:
            set_stamp(msg, stamp - 2 * NS)

    return rewritten_bag(dst, change)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from meetup_ros.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


# ---- ground truth whose stamps repeat or go back -------------------------------------------

def test_evaluate_vio_names_two_bags_of_the_same_stretch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same recording as MCAP and sqlite3, given together, ended in scipy's "Times must
    be in strictly increasing order" traceback naming neither bag nor topic."""
    mcap = rewritten_bag(tmp_path / "copy_mcap")
    sqlite = rewritten_bag(tmp_path / "copy_sqlite", storage=StoragePlugin.SQLITE3)
    code, err = run_cli(["evaluate-vio", "--bag", str(mcap), str(sqlite),
                         "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert err.startswith(
        f"meetup-ros evaluate-vio: error: bags {str(mcap)!r} and {str(sqlite)!r} overlap in "
        "time: their ground truth '/groundtruth/odometry' spans ")
    assert "(the same recording twice?)" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_vio_and_train_name_ground_truth_that_goes_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clock step back: evaluate-vio ended in scipy's traceback, train vio in its bare
    message; both now name the bag, the topic and the stamp."""
    bag = time_back_bag(tmp_path / "time_back")
    gt = [stamp_of(TYPESTORE.deserialize_cdr(raw, c.msgtype))
          for c, _, raw in Reader(bag).__enter__().messages()
          if c.topic == topics.GROUNDTRUTH_ODOMETRY]
    k = next(i for i in range(1, len(gt)) if gt[i] <= gt[i - 1])
    expected = (f"bag {str(bag)!r}: ground truth '/groundtruth/odometry' message {k + 1} of "
                f"{len(gt)} goes back in time: stamp {gt[k]} ns is "
                f"{(gt[k - 1] - gt[k]) / 1e9:.3f} s before the previous {gt[k - 1]} ns")
    code, err = run_cli(["evaluate-vio", "--bag", str(bag), "--out", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and err.startswith(f"meetup-ros evaluate-vio: error: {expected}")
    assert "Traceback" not in err
    code, err = run_cli(["train", "vio", "--bag", str(bag), "--epochs", "1",
                         "--out", str(tmp_path / "train")], capsys)
    assert code == 2 and f"meetup-ros train: error: train vio: {expected}" in err


def test_repeated_ground_truth_stamp_within_one_bag_is_named(tmp_path: Path) -> None:
    previous: list[int] = []

    def change(topic: str, index: int, msg: Any) -> None:
        if topic == topics.GROUNDTRUTH_ODOMETRY:
            if index == 10:
                set_stamp(msg, previous[-1])  # the previous pose's stamp
            previous.append(stamp_of(msg))

    bag = rewritten_bag(tmp_path / "repeat", change)
    seq = read_sequence(bag)  # still readable: only interpolating it is refused
    assert seq.groundtruth_stamp_error is not None
    assert seq.groundtruth_stamp_error.startswith(
        f"bag {str(bag)!r}: ground truth '/groundtruth/odometry' message 11 of ")
    assert "repeats the stamp" in seq.groundtruth_stamp_error
    from meetup_ros.odometry.dataset import build_intervals, frame_stamps, interpolate_groundtruth

    stamps, has_image = frame_stamps(seq)
    with pytest.raises(OdometryError, match=r"message 11 of .* repeats the stamp"):
        build_intervals(seq, stamps, has_image, (40, 64))
    with pytest.raises(OdometryError, match=r"ground-truth stamps do not strictly increase"):
        interpolate_groundtruth(seq.groundtruth, stamps[:2])


def test_bags_of_distinct_stretches_have_no_stamp_error(tmp_path: Path) -> None:
    """Only what goes back or overlaps is named: one bag, or two whose ground truth covers
    distinct stretches, read without a stamp error."""
    assert read_sequence(SAMPLE_BAG).groundtruth_stamp_error is None

    def later(topic: str, index: int, msg: Any) -> None:
        if topic == topics.GROUNDTRUTH_ODOMETRY:
            set_stamp(msg, stamp_of(msg) + 60 * NS)

    assert read_sequence([SAMPLE_BAG, rewritten_bag(tmp_path / "later", later)]
                         ).groundtruth_stamp_error is None


# ---- NaN IMU samples: dead reckoning skips what the estimator drops -------------------------

def nan_imu_bag(dst: Path) -> Path:
    def change(topic: str, index: int, msg: Any) -> None:
        if topic == topics.IMU and 300 <= index < 310:
            msg.linear_acceleration.x = float("nan")
        if topic == topics.IMU and index == 400:
            msg.angular_velocity.z = float("inf")

    return rewritten_bag(dst, change)


def test_dead_reckoning_skips_the_samples_the_estimator_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """evaluate-vio failed "trajectory 'dead reckoning' has NaN or infinite poses": the
    estimator dropped the 11 bad samples, dead reckoning integrated them."""
    from meetup_ros.odometry.deadreckoning import dead_reckoning

    bag = nan_imu_bag(tmp_path / "imu_nan")
    seq = read_sequence(bag)
    start, end = int(seq.cam0.stamps_ns[0]), int(seq.cam0.stamps_ns[-1])
    with caplog.at_level(logging.WARNING):
        dr = dead_reckoning(seq, start, end)
    assert np.isfinite(dr.p_xyz).all() and np.isfinite(dr.q_xyzw).all()
    bad = seq.imu.stamps_ns[~np.isfinite(np.hstack([seq.imu.gyro_radps,
                                                    seq.imu.accel_mps2])).all(axis=1)]
    assert bad.size == 11 and not np.isin(bad, dr.stamps_ns).any()
    assert (f"dead reckoning skips 11 IMU sample(s) on /imu0 of bag {str(bag)!r} with NaN or "
            f"inf (stamps {bad[0]}, {bad[1]}, {bad[2]}, ... ns)") in caplog.text


def test_evaluate_vio_scores_a_bag_with_nan_imu_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    bag = nan_imu_bag(tmp_path / "imu_nan")
    code, err = run_cli(["evaluate-vio", "--bag", str(bag), "--out", str(tmp_path / "o")],
                        capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "vio_report.json").read_text())
    # dropped on reading, by the nodes' rule, so that their hole counts as a gap; the
    # estimator sees none of them
    assert report["imu_samples_not_measurements"] == 11
    assert report["imu_samples_dropped"] == 0
    assert np.isfinite(report["ate_rmse_m_dead_reckoning"])


# ---- IMU samples stamped 0 -----------------------------------------------------------------

def zero_imu_stamp_bag(dst: Path) -> Path:
    def change(topic: str, index: int, msg: Any) -> None:
        if topic == topics.IMU and 200 <= index < 205:
            set_stamp(msg, 0)

    return rewritten_bag(dst, change)


def test_evaluate_vio_drops_and_counts_imu_samples_stamped_0(
    repo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Five IMU samples stamped 0 were logged as duplicate_stamp; the first one was queued,
    then taken for a 1.4e9 s gap that reset the windower (and the run claimed 2e9x real time)."""
    from meetup_ros.odometry.evaluation import evaluate_vio

    bag = zero_imu_stamp_bag(tmp_path / "imu_zero_stamp")
    with caplog.at_level(logging.WARNING):
        report = evaluate_vio([bag], repo_root / "models" / "vio.pt", None)
    assert report["imu_samples_invalid_stamp"] == 5
    assert report["imu_samples_dropped"] == 0
    assert report["imu_samples_received"] == 1141 - 5 - 200  # from the first frame's window
    assert report["speedup_vs_real_time"] < 1e4
    assert "duplicate_stamp" not in caplog.text and "windower reset" not in caplog.text
    assert (f"bag {str(bag)!r}: 5 IMU sample(s) on /imu0 have an invalid stamp ([0] ns: 0 or "
            "negative, never set); dropped") in caplog.text


def test_training_intervals_ignore_imu_samples_stamped_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from meetup_ros.odometry.dataset import build_intervals, frame_stamps

    clean = read_sequence(SAMPLE_BAG)
    seq = read_sequence(zero_imu_stamp_bag(tmp_path / "imu_zero_stamp"))
    with caplog.at_level(logging.WARNING):
        stamps, has_image = frame_stamps(seq)
        iv = build_intervals(seq, stamps, has_image, (40, 64))
    assert "5 IMU sample(s) on /imu0 have an invalid stamp" in caplog.text
    ref_stamps, ref_has_image = frame_stamps(clean)
    np.testing.assert_array_equal(stamps, ref_stamps)
    ref = build_intervals(clean, ref_stamps, ref_has_image, (40, 64))
    # the five samples are missing from their intervals, and nothing else changed
    assert int(ref.imu_count.sum() - iv.imu_count.sum()) == 5
    theirs = np.unique(np.searchsorted(stamps, clean.imu.stamps_ns[200:205]) - 1)
    np.testing.assert_array_equal(np.flatnonzero(ref.imu_count != iv.imu_count), theirs)
