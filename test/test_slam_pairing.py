"""StereoPairs and PriorWait, slam_node's pairing (no ROS): stamps within the tolerance, the
wait for the odometry that comes after the frame, and the prior lookup. The node runs the
same over DDS in test_slam_node_prior.py and test_slam_node_inputs.py."""

from __future__ import annotations

import numpy as np

from meetup_ros.slam.pairing import FramePair, PriorWait, StereoPairs

MS = 1_000_000
T0 = 1_000 * MS
TOPICS = {"cam0": "/cam0/image_raw", "cam1": "/cam1/image_raw"}


def _image(value: int) -> np.ndarray:
    return np.full((4, 6), value, dtype=np.uint8)


def _stereo(max_pending: int = 3) -> tuple[StereoPairs, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    pairs = StereoPairs(stereo=True, tolerance_ns=MS, max_pending=max_pending,
                        report=lambda key, msg: problems.append((key, msg)), topics=TOPICS)
    return pairs, problems


def test_left_and_right_pair_within_the_tolerance_in_either_order() -> None:
    pairs, problems = _stereo()
    assert pairs.add("cam1", T0 + 500_000, _image(2)) == []
    out = pairs.add("cam0", T0, _image(1))
    assert [p.stamp_ns for p in out] == [T0]
    assert out[0].image0[0, 0] == 1 and out[0].image1 is not None and out[0].image1[0, 0] == 2
    assert pairs.add("cam0", T0 + 50 * MS, _image(3)) == []
    assert pairs.add("cam1", T0 + 50 * MS + 2 * MS, _image(4)) == [], "2 ms apart: no pair"
    assert not problems


def test_an_image_without_partner_is_dropped_naming_the_nearest_one() -> None:
    pairs, problems = _stereo(max_pending=2)
    pairs.add("cam1", T0 + 3 * MS, _image(0))
    for k in range(3):
        pairs.add("cam0", T0 + k * 50 * MS, _image(k))
    assert list(pairs.pending["cam0"]) == [T0 + 50 * MS, T0 + 100 * MS]
    assert len(problems) == 1 and problems[0][0] == "unpaired_dropped"
    assert "/cam0/image_raw" in problems[0][1] and "+3000.0 us" in problems[0][1]
    assert "pair_tolerance_s 0.001 s" in problems[0][1]


def test_without_a_second_camera_each_image_is_a_pair() -> None:
    pairs = StereoPairs(stereo=False, tolerance_ns=MS, max_pending=3,
                        report=lambda *_: None, topics=TOPICS)
    out = pairs.add("cam0", T0, _image(1))
    assert [(p.stamp_ns, p.image1) for p in out] == [(T0, None)]
    assert not pairs.pending["cam0"]


def _pair(stamp_ns: int) -> FramePair:
    return FramePair(stamp_ns, _image(0), _image(0))


def test_a_pair_waits_for_odometry_at_or_after_its_stamp() -> None:
    priors = PriorWait(wait_s=0.5, tolerance_ns=5 * MS, max_pending=4)
    priors.add_odometry(T0 - 50 * MS, np.eye(4))
    assert priors.add(_pair(T0), now_s=0.0) == []
    assert priors.pop_ready(0.1) is None, "the odometry before the frame is not its prior"
    priors.add_odometry(T0 + 2 * MS, np.eye(4) * 2)
    ready = priors.pop_ready(0.12)
    assert ready is not None and ready[0].stamp_ns == T0 and abs(ready[1] - 0.12) < 1e-12
    prior = priors.prior(T0)
    assert prior is not None and prior[0, 0] == 2


def test_a_pair_goes_on_without_a_prior_after_the_wait() -> None:
    priors = PriorWait(wait_s=0.5, tolerance_ns=5 * MS, max_pending=4)
    priors.add(_pair(T0), 0.0)
    priors.add(_pair(T0 + 50 * MS), 0.2)
    assert priors.pop_ready(0.49) is None
    first = priors.pop_ready(0.5)
    assert first is not None and first[0].stamp_ns == T0
    assert priors.pop_ready(0.5) is None, "the second has waited 0.3 s only"
    assert priors.prior(T0) is None


def test_without_odometry_pairs_do_not_wait() -> None:
    priors = PriorWait(wait_s=0.5, tolerance_ns=5 * MS, max_pending=4, enabled=False)
    priors.add(_pair(T0), 0.0)
    ready = priors.pop_ready(0.0)
    assert ready is not None and ready[0].stamp_ns == T0


def test_a_full_queue_hands_out_the_oldest() -> None:
    priors = PriorWait(wait_s=0.5, tolerance_ns=5 * MS, max_pending=2)
    out = [priors.add(_pair(T0 + k * 50 * MS), 0.01 * k) for k in range(3)]
    assert out[0] == [] and out[1] == []
    assert [(p.stamp_ns, round(w, 6)) for p, w in out[2]] == [(T0, 0.02)]


def test_odometry_going_back_clears_the_old_pass_and_priors_need_the_tolerance() -> None:
    priors = PriorWait(wait_s=0.5, tolerance_ns=5 * MS, max_pending=2)
    priors.add_odometry(T0 + 100 * MS, np.eye(4))
    priors.add_odometry(T0, np.eye(4) * 3)  # a loop
    assert list(s for s, _ in priors.odometry) == [T0]
    prior = priors.prior(T0 + 4 * MS)
    assert prior is not None and prior[0, 0] == 3
    assert priors.prior(T0 + 6 * MS) is None


def test_one_stamp_one_picture_until_a_new_timeline() -> None:
    """A repeated image at a stamp is a duplicate, another picture a conflict that drops the
    held one too; a loop (a jump back of a second or more) replays the same stamps and
    images, and they pair again."""
    pairs, problems = _stereo()
    assert pairs.add("cam0", T0, _image(1)) == []
    assert pairs.add("cam0", T0, _image(1)) == []
    assert pairs.add("cam0", T0, _image(9)) == []
    assert pairs.add("cam1", T0, _image(2)) == [], "the held cam0 image went with the conflict"
    assert [k for k, _ in problems] == ["duplicate_frames", "conflicting_frames",
                                        "unpaired_dropped"]
    assert "both dropped" in problems[1][1]
    assert "image for it was dropped as conflicting" in problems[-1][1]
    assert not pairs.pending["cam1"], "said now, not later as a misleading 'no partner'"
    t1 = T0 + 2_000 * MS
    assert len(pairs.add("cam0", t1, _image(3)) + pairs.add("cam1", t1, _image(4))) == 1
    loop = pairs.add("cam0", T0, _image(1)) + pairs.add("cam1", T0, _image(2))
    assert [p.stamp_ns for p in loop] == [T0] and len(problems) == 3, problems


def test_a_partner_coming_after_a_conflict_is_dropped_saying_why() -> None:
    """A tester's misleading 'no partner' warnings: the cam1 image of a cam0 stamp dropped as
    conflicting waited, then went as unpaired, the nearest cam0 image named."""
    pairs, problems = _stereo()
    pairs.add("cam0", T0, _image(1))
    pairs.add("cam0", T0, _image(6))
    assert pairs.add("cam1", T0 + MS // 2, _image(7)) == []
    assert [k for k, _ in problems] == ["conflicting_frames", "unpaired_dropped"]
    assert "image for it was dropped as conflicting" in problems[-1][1]
    assert not pairs.pending["cam1"]
