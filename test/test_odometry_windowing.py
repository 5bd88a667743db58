"""IMU windowing: every sample in exactly one window, jitter, gaps, late samples, resets, NaN."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from meetup_ros.odometry.windowing import ImuWindower, OdometryError

NS = 1_000_000_000
PERIOD_NS = 5_000_000  # 200 Hz
T0 = 1_403_715_273_262_142_976


def _sample(i: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([0.01 * i, 0.0, 0.0]), np.array([0.0, 0.0, 9.81])


def _feed(w: ImuWindower, stamps: list[int]) -> None:
    for s in stamps:
        gyro, accel = _sample(s)
        assert w.add(s, gyro, accel)


def test_nominal_rates_give_ten_samples_per_window() -> None:
    w = ImuWindower()
    _feed(w, [T0 + i * PERIOD_NS for i in range(201)])
    w.take(T0)  # the first frame
    sizes = [len(w.take(T0 + k * 50_000_000)) for k in range(1, 21)]
    assert sizes == [10] * 20
    assert w.stats.dropped == 0 and w.pending == 0


def test_jitter_gives_nine_to_eleven() -> None:
    rng = np.random.default_rng(0)
    imu = [T0 + i * PERIOD_NS + int(rng.integers(-1_500_000, 1_500_000)) for i in range(1, 401)]
    frames = [T0 + k * 50_000_000 + int(rng.integers(-4_000_000, 4_000_000))
              for k in range(1, 20)]
    w = ImuWindower()
    _feed(w, sorted(imu))
    sizes = [len(w.take(f)) for f in frames]
    assert set(sizes) <= {9, 10, 11} and len(set(sizes)) > 1, sizes
    window = w.take(frames[-1] + 50_000_000)
    assert np.all(window.dt_s > 0)


def test_gap_in_imu_gives_fewer_samples_and_a_long_dt() -> None:
    stamps = [T0 + i * PERIOD_NS for i in range(1, 41) if not 12 <= i <= 17]
    w = ImuWindower()
    _feed(w, stamps)
    first = w.take(T0 + 50_000_000)
    second = w.take(T0 + 100_000_000)
    assert len(first) == 10
    assert len(second) == 4
    assert second.dt_s[1] == pytest.approx(0.035)  # sample 18 after sample 11
    assert w.stats.dropped == 0
    # never received, so not dropped; but missing, and counted (6 samples, one gap)
    assert (w.stats.gaps, w.stats.samples_missing) == (1, 6)


def test_jitter_is_no_gap_and_one_missing_sample_is() -> None:
    rng = np.random.default_rng(1)
    jittered = [T0 + i * PERIOD_NS + int(rng.integers(-2_000_000, 2_000_000))
                for i in range(1, 401)]
    w = ImuWindower()
    _feed(w, sorted(jittered))
    w.take(T0 + 2 * NS)
    assert w.stats.gaps == 0
    w = ImuWindower()
    _feed(w, [T0 + i * PERIOD_NS for i in range(1, 41) if i != 20])
    w.take(T0 + NS)
    assert (w.stats.gaps, w.stats.samples_missing) == (1, 1)


def test_a_slower_imu_than_nominal_is_no_gap_once_its_rate_is_seen() -> None:
    """A tester's clean 100 Hz IMU was reported as losing every other sample (470 gaps)."""
    w = ImuWindower(rate_hz=200.0)
    _feed(w, [T0 + i * 2 * PERIOD_NS for i in range(1, 201) if i != 150])
    for k in range(1, 41):
        w.take(T0 + k * 50_000_000)
    assert (w.stats.gaps, w.stats.samples_missing) == (1, 1)  # sample 150 only


def test_missing_camera_frame_keeps_the_samples() -> None:
    w = ImuWindower()
    _feed(w, [T0 + i * PERIOD_NS for i in range(1, 31)])
    assert len(w.take(T0 + 50_000_000)) == 10
    # frame at +100 ms never arrives; the next one takes both intervals
    window = w.take(T0 + 150_000_000)
    assert len(window) == 20
    assert window.start_ns == T0 + 50_000_000
    assert np.allclose(window.dt_s, 0.005)


def test_out_of_order_samples_are_inserted_in_order() -> None:
    stamps = [T0 + i * PERIOD_NS for i in range(1, 21)]
    shuffled = [*stamps[:5], stamps[6], stamps[5], stamps[8], stamps[7], *stamps[9:]]
    w = ImuWindower()
    _feed(w, shuffled)
    window = w.take(T0 + 100_000_000)
    assert window.stamps_ns.tolist() == stamps
    assert np.all(np.diff(window.stamps_ns) > 0)


def test_sample_arriving_after_its_window_goes_to_the_next() -> None:
    w = ImuWindower()
    _feed(w, [T0 + i * PERIOD_NS for i in range(1, 10)])  # sample 10 is late
    assert len(w.take(T0 + 50_000_000)) == 9
    _feed(w, [T0 + 10 * PERIOD_NS] + [T0 + i * PERIOD_NS for i in range(11, 21)])
    window = w.take(T0 + 100_000_000)
    assert len(window) == 11
    assert w.stats.late_merged == 1 and w.stats.dropped == 0
    assert w.stats.used == 20


def test_time_going_back_resets(caplog: pytest.LogCaptureFixture) -> None:
    w = ImuWindower(reset_backwards_s=0.5)
    _feed(w, [T0 + i * PERIOD_NS for i in range(1, 300)])
    w.take(T0 + 1 * NS)
    pending = w.pending
    with caplog.at_level(logging.WARNING):
        assert w.add(T0 + PERIOD_NS, *_sample(1))  # the bag starts again
    assert w.reset_happened
    assert w.stats.resets == 1 and w.stats.discarded_on_reset == pending
    assert w.pending == 1
    assert "time went back" in caplog.text
    # a small step back is a late sample, not a reset
    _feed(w, [T0 + 3 * PERIOD_NS])
    assert w.add(T0 + 2 * PERIOD_NS, *_sample(2)) and not w.reset_happened


def test_clock_jumping_forward_resets_instead_of_integrating_the_gap(
        caplog: pytest.LogCaptureFixture) -> None:
    w = ImuWindower(reset_forward_s=1.0)
    _feed(w, [T0 + i * PERIOD_NS for i in range(1, 21)])
    w.take(T0 + 20 * PERIOD_NS)
    # an IMU gap under the limit is integrated with its real dt
    _feed(w, [T0 + 20 * PERIOD_NS + NS // 2])
    assert not w.reset_happened
    assert w.take(T0 + 20 * PERIOD_NS + NS).dt_s.tolist() == pytest.approx([0.5])
    with caplog.at_level(logging.WARNING):
        _feed(w, [T0 + 130 * NS])  # the driver's clock stepped by two minutes
    assert w.reset_happened and w.stats.resets == 1
    assert "after the newest" in w.last_reset_reason and "after the newest" in caplog.text
    # the first sample after the reset covers a nominal period, not two minutes
    assert w.take(T0 + 131 * NS).dt_s.tolist() == pytest.approx([w.nominal_dt_s])


@pytest.mark.parametrize(
    ("gyro", "accel", "reason"),
    [
        ([np.nan, 0.0, 0.0], [0.0, 0.0, 9.8], "non_finite"),
        ([0.0, 0.0, 0.0], [np.inf, 0.0, 9.8], "non_finite"),
        ([0.0, 0.0], [0.0, 0.0, 9.8], "bad_shape"),
    ],
)
def test_bad_samples_rejected_with_a_counted_logged_reason(
    gyro: list[float], accel: list[float], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    w = ImuWindower()
    with caplog.at_level(logging.WARNING):
        assert not w.add(T0, np.array(gyro), np.array(accel))
    assert w.stats.dropped_by_reason == {reason: 1}
    assert str(T0) in caplog.text and reason in caplog.text
    assert w.pending == 0


def test_duplicate_stamp_rejected_not_used_twice() -> None:
    w = ImuWindower()
    _feed(w, [T0 + PERIOD_NS])
    assert not w.add(T0 + PERIOD_NS, *_sample(1))
    w.take(T0 + PERIOD_NS)
    assert not w.add(T0 + PERIOD_NS, *_sample(1))
    assert w.stats.dropped_by_reason == {"duplicate_stamp": 2}
    assert w.stats.used == 1


def test_bounded_queue_sized_for_200hz() -> None:
    w = ImuWindower(rate_hz=200.0)
    assert w.capacity >= 200  # at least one second of 200 Hz without a frame
    small = ImuWindower(capacity=3)
    _feed(small, [T0 + i * PERIOD_NS for i in range(3)])
    assert not small.add(T0 + 3 * PERIOD_NS, *_sample(3))
    assert small.stats.dropped_by_reason == {"queue_full": 1}


@pytest.mark.parametrize("kwargs", [{"rate_hz": 0.0}, {"capacity": 0},
                                    {"reset_backwards_s": -1.0}, {"reset_forward_s": 0.0}])
def test_bad_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(OdometryError, match=repr(next(iter(kwargs.values())))):
        ImuWindower(**kwargs)  # type: ignore[arg-type]


def test_whole_real_euroc_imu_stream_none_dropped_none_twice(euroc_dir: Path) -> None:
    """All 145 s of real 200 Hz IMU against the real 20 Hz frames (then 20 Hz pseudo-frames)."""
    from meetup_ros.bags.euroc import load_euroc

    seq = load_euroc(euroc_dir)
    imu = seq.imu
    frames = np.concatenate([seq.cam0.stamps_ns,
                             imu.stamps_ns[imu.stamps_ns > seq.cam0.stamps_ns[-1]][9::10]])
    w = ImuWindower()
    used: list[np.ndarray] = []
    j = 0
    sizes = []
    for frame_ns in frames:
        while j < len(imu.stamps_ns) and imu.stamps_ns[j] <= frame_ns:
            assert w.add(int(imu.stamps_ns[j]), imu.gyro_radps[j], imu.accel_mps2[j])
            j += 1
        window = w.take(int(frame_ns))
        used.append(window.stamps_ns)
        sizes.append(len(window))
    stamps = np.concatenate(used)
    inside = imu.stamps_ns[imu.stamps_ns <= frames[-1]]
    assert np.array_equal(stamps, inside)  # each sample once, in order
    assert w.stats.dropped == 0 and w.stats.used == len(inside)
    assert all(n == 10 for n in sizes[1:]), sorted(set(sizes[1:]))
    np.testing.assert_allclose(np.concatenate([u for u in used]).size, len(inside))


def test_a_refused_sample_is_dropped_not_missing() -> None:
    """A tester's NaN sample was reported as never received (a gap) as well as dropped: a
    sample that came and was refused, here or by the node's message check, is no gap."""
    stamps = [T0 + i * PERIOD_NS for i in range(1, 41)]
    w = ImuWindower()
    for s in stamps:
        gyro, accel = _sample(s)
        if s == stamps[19]:
            gyro = np.array([np.nan, 0.0, 0.0])
        w.add(s, gyro, accel)
    w.refuse(None, "bad_message", "a stamp that is not a time")  # counted, explains nothing
    w.take(T0 + NS)
    assert (w.stats.dropped, w.stats.gaps, w.stats.samples_missing) == (2, 0, 0), w.stats
    assert w.stats.received == 41 and w.stats.used == 39
    # refused by the caller (the node) before add: the same
    w = ImuWindower()
    for s in stamps:
        if s == stamps[19]:
            w.refuse(s, "bad_message", "linear_acceleration is not finite")
        else:
            w.add(s, *_sample(s))
    w.take(T0 + NS)
    assert (w.stats.dropped, w.stats.gaps, w.stats.samples_missing) == (1, 0, 0), w.stats
    # a refused sample inside a longer hole explains only itself
    w = ImuWindower()
    for i, s in enumerate(stamps):
        if i == 20:
            w.refuse(s, "bad_message", "NaN")
        elif i not in (19, 21):
            w.add(s, *_sample(s))
    w.take(T0 + NS)
    assert (w.stats.gaps, w.stats.samples_missing) == (1, 2), w.stats


def test_a_late_sample_that_fills_a_counted_gap_takes_it_back() -> None:
    """A tester's sample delivered 7 ms late, after its window had closed: merged into the
    next window and used, yet counted as a sample that never arrived."""
    stamps = [T0 + i * PERIOD_NS for i in range(1, 41)]
    late = stamps[9]  # its successor came first, then the frame, then it
    w = ImuWindower()
    _feed(w, [s for s in stamps[:12] if s != late])
    w.take(stamps[10] + PERIOD_NS // 2)
    assert (w.stats.gaps, w.stats.samples_missing) == (1, 1)
    assert w.add(late, *_sample(late))
    _feed(w, stamps[12:])
    window = w.take(T0 + NS)
    assert late in window.stamps_ns.tolist() and w.stats.late_merged == 1
    assert (w.stats.gaps, w.stats.samples_missing) == (0, 0), w.stats
