"""vio_node under sensor faults, over DDS: an IMU gap, duplicated IMU stamps, unset stamps.

The node runs in this process, fed by the test's driver node (see test_nodes.Harness) with
the bundled bag's real IMU samples and frames in stamp order.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy")

from nav_msgs.msg import Odometry
from test_nodes import BAG, Harness, _overrides

from meetup_ros.ros import convert as cv

pytestmark = pytest.mark.dds
NS = 1_000_000_000


def _play(h: Harness, seq, until_s: float, imu_gap_s: tuple[float, float] | None = None,
          ) -> int:
    """Publish IMU and frames up to ``until_s`` after the first frame, in stamp order,
    leaving out the IMU samples inside ``imu_gap_s``; returns the frames published."""
    t0 = int(seq.cam0.stamps_ns[0])
    imu, cam = seq.imu, seq.cam0
    events = [(int(s), 0, i) for i, s in enumerate(imu.stamps_ns)
              if t0 <= s <= t0 + until_s * NS]
    events += [(int(s), 1, j) for j, s in enumerate(cam.stamps_ns) if s <= t0 + until_s * NS]
    frames = 0
    for stamp, kind, i in sorted(events):
        if kind == 0:
            if imu_gap_s and t0 + imu_gap_s[0] * NS < stamp <= t0 + imu_gap_s[1] * NS:
                continue
            h.publish("/imu0", cv.arrays_to_imu(stamp, imu.gyro_radps[i], imu.accel_mps2[i]))
        else:
            h.publish("/cam0/image_raw", cv.array_to_image(cam.images[i], "mono8", stamp, "cam0"))
            frames += 1
            time.sleep(0.01)  # about 5x real time: the node keeps up
    return frames


def _estimated(node: Any, frames: int) -> int:
    """The odometry messages for ``frames`` frames: those before the estimator's gravity
    initialisation had its samples (the first two of the bag) are not estimated."""
    return frames - node.estimator.stats.frames_before_init


def _vio_node_after(h: Harness, seq, until_s: float,
                    imu_gap_s: tuple[float, float] | None = None) -> tuple[Any, int]:
    """A vio_node fed the bag's first ``until_s`` (see ``_play``), once its odometry for
    every frame estimated has come: ``(node, odometry messages)``."""
    from meetup_ros.nodes.vio_node import VioNode

    node = h.add(VioNode(context=h.context,
                         parameter_overrides=_overrides(diagnostics_period_s=0.0)))
    h.collect("/odom", Odometry)
    frames = _play(h, seq, until_s, imu_gap_s=imu_gap_s)
    h.wait_for(lambda: h.count("/odom") >= _estimated(node, frames), 30,
               f"{frames} odometry messages (node: {node.summary()})")
    return node, _estimated(node, frames)


def _publish_imu(h: Harness, seq, after_ns: int, upto_ns: int, offset_ns: int = 0) -> None:
    """The bag's IMU samples stamped in (after_ns, upto_ns], their stamps shifted by offset."""
    imu = seq.imu
    for i in np.flatnonzero((imu.stamps_ns > after_ns) & (imu.stamps_ns <= upto_ns)):
        h.publish("/imu0", cv.arrays_to_imu(int(imu.stamps_ns[i]) + offset_ns,
                                            imu.gyro_radps[i], imu.accel_mps2[i]))


def _play_frames(h: Harness, seq, frames: range, after_ns: int, picture=None,
                 imu_offset_ns: int = 0) -> None:
    """Frames ``frames`` of the bag, each after the IMU samples since the previous one
    (from ``after_ns``); ``picture`` maps each image (e.g. a resize)."""
    cam = seq.cam0
    for j in frames:
        stamp = int(cam.stamps_ns[j])
        _publish_imu(h, seq, after_ns, stamp, imu_offset_ns)
        after_ns = stamp
        image = cam.images[j] if picture is None else picture(cam.images[j])
        h.publish("/cam0/image_raw", cv.array_to_image(image, "mono8", stamp, "cam0"))
        time.sleep(0.01)


@pytest.fixture(scope="module")
def seq():
    from meetup_ros.bags.reader import read_sequence

    return read_sequence(BAG)


def test_imu_gap_neither_resets_nor_drops_frames(harness: Harness, seq) -> None:
    """IMU silent for 0.8 s while the camera goes on: frames in the gap are estimated with
    what IMU there is, and the samples after the gap do not overtake them (before, the
    estimator's outage step jumped to the first sample after the gap and every waiting frame
    was then 'in the past': dropped, or a reset with the pose back at the origin)."""
    node, _frames = _vio_node_after(harness, seq, 2.5, imu_gap_s=(1.0, 1.8))
    counters = node.health.counters
    assert counters["resets"] == 0, node.summary()
    assert counters["frames_out_of_order"] == 0, node.summary()
    assert counters["camera_outage_steps"] == 0, node.summary()
    stamps = [cv.stamp_to_ns(m.header.stamp) for m in harness.received["/odom"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # at rest the whole time: the pose stays near the origin across the gap
    last = harness.received["/odom"][-1].pose.pose.position
    assert np.hypot(last.x, last.y) < 0.5


def test_an_imu_gap_upstream_is_counted_and_said(harness: Harness, seq) -> None:
    """A tester's 100 ms and 0.5 s of IMU never sent left no trace (dropped: 0, no warning):
    samples that never arrive are not dropped here, but they are missing, and said so."""
    node, _frames = _vio_node_after(harness, seq, 1.5, imu_gap_s=(0.5, 0.6))
    stats = node.estimator.stats
    assert stats.gaps == 1 and 19 <= stats.samples_missing <= 21, stats
    assert node.health.counters["imu_gaps"] == 1
    assert "samples missing upstream" in node.health.last_problem
    assert stats.dropped == 0


def test_a_refused_imu_message_is_dropped_not_missing(harness: Harness, seq) -> None:
    """A tester's NaN IMU message was logged as 'never received' (a gap) and counted by the
    demo as lost in transport: it was received, and refused."""
    import dataclasses

    t0 = int(seq.cam0.stamps_ns[0])
    nan_at = int(np.flatnonzero(seq.imu.stamps_ns > t0 + NS // 2)[0])
    accel = seq.imu.accel_mps2.copy()
    accel[nan_at] = [np.nan, 0.0, 9.8]
    damaged = dataclasses.replace(seq, imu=dataclasses.replace(seq.imu, accel_mps2=accel))
    node, _frames = _vio_node_after(harness, damaged, 1.0)
    stats = node.estimator.stats
    assert node.health.counters["bad_imu"] == 1
    assert (stats.dropped, stats.gaps, stats.samples_missing) == (1, 0, 0), stats
    assert node.health.counters["imu_gaps"] == 0 and node.health.counters["imu_rejected"] == 0
    published = int(np.sum((seq.imu.stamps_ns >= t0) & (seq.imu.stamps_ns <= t0 + NS)))
    assert stats.received == published


def test_rejected_imu_samples_and_unset_stamps_reach_the_diagnostics(
        harness: Harness, seq) -> None:
    node, _frames = _vio_node_after(harness, seq, 0.5)
    imu = seq.imu
    stamp = int(seq.cam0.stamps_ns[0]) + NS // 2  # a stamp the node has already seen
    harness.publish("/imu0", cv.arrays_to_imu(stamp, imu.gyro_radps[0], imu.accel_mps2[0]))
    harness.wait_for(lambda: node.health.counters["imu_rejected"] == 1, 5,
                     f"the duplicate stamp reported (node: {node.summary()})")
    assert "duplicate_stamp" in node.health.last_problem
    assert "/imu0" in node.health.last_problem
    harness.publish("/cam0/image_raw", cv.array_to_image(seq.cam0.images[0], "mono8", 0, "cam0"))
    harness.wait_for(lambda: node.health.counters["bad_image"] == 1, 5, "the zero stamp")
    assert "header.stamp is 0" in node.health.last_problem
    before = harness.count("/odom")
    time.sleep(0.3)
    assert harness.count("/odom") == before  # nothing published for the unset stamp


def test_stamps_that_are_not_times_are_dropped_without_a_reset(harness: Harness, seq) -> None:
    """A tester's Imu with sec = -5 passed (only 0 was refused) and reset the estimator twice,
    the pose back at the origin each time; an image with nanosec = 3e9 was read as 3 s ahead
    and published a 10 cm jump at rest."""
    from builtin_interfaces.msg import Time

    node, _frames = _vio_node_after(harness, seq, 0.5)
    imu = cv.arrays_to_imu(1, seq.imu.gyro_radps[0], seq.imu.accel_mps2[0])
    imu.header.stamp = Time(sec=-5, nanosec=0)
    harness.publish("/imu0", imu)
    harness.wait_for(lambda: node.health.counters["bad_imu"] == 1, 5, "the negative stamp")
    assert "/imu0: header.stamp (sec -5, nanosec 0) is not a time" in node.health.last_problem
    image = cv.array_to_image(seq.cam0.images[11], "mono8", 1, "cam0")
    image.header.stamp = Time(sec=int(seq.cam0.stamps_ns[11] // NS), nanosec=3_000_000_000)
    before = harness.count("/odom")
    harness.publish("/cam0/image_raw", image)
    harness.wait_for(lambda: node.health.counters["bad_image"] == 1, 5, "the bad nanosec")
    assert "nanosec 3000000000) is not a time" in node.health.last_problem
    time.sleep(0.3)
    assert harness.count("/odom") == before
    assert node.health.counters["resets"] == 0, node.summary()


def test_camera_ahead_of_its_imu_is_a_clock_mismatch_not_a_jump(harness: Harness, seq) -> None:
    """Camera stamps 10 s ahead of the IMU (a tester's live run): each frame used to wait
    imu_wait_s and then take a 10 s window, publishing a 0.45 m jump at rest; now they are
    dropped as a clock mismatch, and the odometry goes on when the clocks agree again."""
    from meetup_ros.nodes.vio_node import VioNode

    node = harness.add(VioNode(context=harness.context, parameter_overrides=_overrides(
        diagnostics_period_s=0.0, imu_wait_s=0.2)))
    harness.collect("/odom", Odometry)
    frames = _play(harness, seq, 0.5)
    harness.wait_for(lambda: harness.count("/odom") >= _estimated(node, frames), 30,
                     "odometry")
    frames = _estimated(node, frames)
    cam = seq.cam0
    t10 = int(cam.stamps_ns[10])
    for j in range(11, 16):  # IMU up to each frame, the frame 10 s ahead
        _publish_imu(harness, seq, int(cam.stamps_ns[j - 1]), int(cam.stamps_ns[j]))
        harness.publish("/cam0/image_raw", cv.array_to_image(
            cam.images[j], "mono8", int(cam.stamps_ns[j]) + 10 * NS, "cam0"))
    harness.wait_for(lambda: node.health.counters["clock_mismatch"] == 5, 10,
                     f"the frames ahead dropped (node: {node.summary()})")
    assert "ahead of the newest IMU sample" in node.health.last_problem
    assert harness.count("/odom") == frames
    _play_frames(harness, seq, range(16, 21), int(cam.stamps_ns[15]))
    harness.wait_for(lambda: harness.count("/odom") == frames + 5, 10, "odometry again")
    assert node.health.counters["resets"] == 0, node.summary()
    for msg in harness.received["/odom"]:
        position = msg.pose.pose.position
        assert np.hypot(position.x, position.y) < 0.05  # at rest: no jump
    assert t10 < cv.stamp_to_ns(harness.received["/odom"][-1].header.stamp)


def test_camera_resolution_change_is_taken_after_a_second(harness: Harness, seq) -> None:
    import cv2

    from meetup_ros.nodes.vio_node import SIZE_CHANGE_FRAMES

    node, frames = _vio_node_after(harness, seq, 0.5)
    cam = seq.cam0
    # one odd frame is dropped; then the camera runs at half resolution
    odd = cv2.resize(cam.images[0], (100, 80))
    t0 = int(cam.stamps_ns[0])
    harness.publish("/cam0/image_raw", cv.array_to_image(odd, "mono8", t0 + NS // 2 + 1, "cam0"))
    harness.wait_for(lambda: node.health.counters["bad_image"] == 1, 5, "the odd frame dropped")
    half_size = range(11, 11 + SIZE_CHANGE_FRAMES + 10)
    _play_frames(harness, seq, half_size, t0 + NS // 2 + 1,
                 lambda image: cv2.resize(image, (188, 120), interpolation=cv2.INTER_AREA))
    published = len(half_size)
    harness.wait_for(lambda: node.health.counters["image_size_changes"] == 1, 10,
                     f"the new size taken (node: {node.summary()})")
    # frames before the change was taken are dropped (each counted), the rest estimated
    harness.wait_for(lambda: harness.count("/odom") >= frames + published - SIZE_CHANGE_FRAMES
                     + 1, 10, f"odometry at the new size (node: {node.summary()})")
    assert node.health.counters["bad_image"] == 1 + SIZE_CHANGE_FRAMES - 1


def test_camera_outage_is_reported(harness: Harness, seq) -> None:
    """The camera stops, the IMU goes on (the bundled bag has 1 s of IMU after its last
    frame): the node says it is estimating without images."""
    t0 = int(seq.cam0.stamps_ns[0])
    node, _frames = _vio_node_after(harness, seq, 1.0)
    _publish_imu(harness, seq, t0 + NS, t0 + 2_300_000_000)
    harness.wait_for(lambda: node.health.counters["camera_outage_steps"] >= 1, 10,
                     f"the outage reported (node: {node.summary()})")
    assert "/cam0/image_raw" in node.health.last_problem
    assert node.health.counters["resets"] == 0


def test_clocks_that_disagree_are_reported_once_per_kind(harness: Harness, seq) -> None:
    """The IMU driver's clock runs 120 s ahead from some point on: one reset, then frames are
    dropped as a clock mismatch (named in the diagnostics), not one reset per frame."""
    node, _published = _vio_node_after(harness, seq, 0.5)
    received = node.health.counters["frames_received"]
    _play_frames(harness, seq, range(11, 31), int(seq.cam0.stamps_ns[10]),
                 imu_offset_ns=120 * NS)
    harness.wait_for(lambda: node.health.counters["frames_received"] == received + 20, 10,
                     "the frames received")
    harness.wait_for(lambda: node.health.counters["clock_mismatch"] >= 10, 10,
                     f"the mismatch reported (node: {node.summary()})")
    assert node.health.counters["resets"] == 1, node.summary()
    assert node.health.counters["frames_out_of_order"] == 0, node.summary()
    assert "clocks agree" in node.health.last_problem


@pytest.mark.parametrize(("params", "message"), [
    ({"imu_wait_s": float("inf")}, r"imu_wait_s inf: expected a finite wait in \[0, 1e\+09\] s"),
    ({"imu_wait_s": -1.0}, r"imu_wait_s -1\.0: expected a finite wait"),
    ({"imu_wait_s": 1e12}, r"imu_wait_s 1000000000000\.0: expected a finite wait"),
    ({"torch_threads": 0}, r"torch_threads 0: expected an integer >= 1"),
    ({"realtime_priority": 99}, r"realtime_priority 99: expected 0 \(normal scheduling\) or a "
                                r"SCHED_FIFO priority in \[1, 49\]"),
    ({"realtime_priority": -1}, r"realtime_priority -1: expected 0"),
    ({"image_height": -5}, r"image_height -5: expected pixels > 0, or 0"),
])
def test_vio_node_refuses_bad_parameters_naming_them(harness: Harness, params: dict,
                                                     message: str) -> None:
    """`imu_wait_s: .inf` failed in the flush timer with "cannot convert float infinity to
    integer", naming nothing."""
    from meetup_ros.nodes.vio_node import VioNode
    from meetup_ros.ros import RosInputError

    with pytest.raises(RosInputError, match=message):
        VioNode(context=harness.context, parameter_overrides=_overrides(**params))
