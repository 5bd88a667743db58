"""The offline stereo readers pair cam0 and cam1 by stamp, as slam_node does (a tester's
findings, t16b): with one image missing on one camera they paired by list index, every later
left image with the right one taken 50 ms before it, or ended in an IndexError traceback.
And a bag without /tf_static (one written by `meetup-ros record`) is refused naming the
missing extrinsics, not as "stereo baseline 0.0 m is too small to rectify"."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from bag_variants import SAMPLE_BAG, filtered_bag, restamped_bag

from meetup_ros.bags.reader import read_sequence
from meetup_ros.slam import SlamError, pairing
from meetup_ros.slam import data as slam_data

MS = 1_000_000
DROPPED = 50  # the frame each damaged bag lacks on one camera (of the bundled bag's 95)
STRIDE = 5  # 0, 5, ..., 90: the dropped frame's pair and its neighbours', quickly


def _stamp(frame: int) -> int:
    return int(read_sequence(SAMPLE_BAG).cam0.stamps_ns[frame])


@pytest.fixture(scope="module")
def dropped_stamp() -> int:
    return _stamp(DROPPED)


def _without_frame(tmp_path: Path, topic: str, stamp_ns: int) -> Path:
    return filtered_bag(tmp_path / f"no_{topic.strip('/').replace('/', '_')}",
                        lambda t, s: not (t == topic and s == stamp_ns))


def _frame(pair: slam_data.PairSample) -> int:
    return int(pair.name.removeprefix("euroc_"))


@pytest.fixture(scope="module")
def full_pairs() -> dict[str, slam_data.PairSample]:
    return {p.name: p for p in slam_data.euroc_stereo_pairs(SAMPLE_BAG, stride=1)}


def test_match_stamps_pairs_within_the_tolerance_the_closest_first() -> None:
    left = [0, 50 * MS, 100 * MS, 150 * MS]
    right = [1 * MS, 100 * MS + 200, 149 * MS, 151 * MS + 500]  # none near 50 ms
    assert pairing.match_stamps(left, right, 3 * MS) == [(0, 0), (2, 1), (3, 2)]
    assert pairing.match_stamps(left[::-1], right, 3 * MS) == [(0, 2), (1, 1), (3, 0)]
    assert pairing.match_stamps(left, [], 3 * MS) == []
    assert pairing.match_stamps([], right, 3 * MS) == []
    # the closer left image takes the right one, whichever comes first
    assert pairing.match_stamps([0, 2 * MS], [int(1.5 * MS)], 3 * MS) == [(1, 0)]


def test_a_missing_right_frame_skips_its_pair_and_says_so(
    tmp_path: Path, dropped_stamp: int, full_pairs: dict[str, slam_data.PairSample],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`train depth` and `benchmark-slam` ended in "IndexError: list index out of range"."""
    bag = _without_frame(tmp_path, "/cam1/image_raw", dropped_stamp)
    with caplog.at_level(logging.WARNING, logger="meetup_ros.slam.data"):
        pairs = slam_data.euroc_stereo_pairs(bag, stride=STRIDE)
    assert [_frame(p) for p in pairs] == [i for i in range(0, 95, STRIDE) if i != DROPPED]
    assert "0 cam0 and 0 cam1" not in caplog.text
    assert (f"bag {str(bag)!r}: 1 cam0 and 0 cam1 image(s) have no partner within 0.003 s "
            "on the other camera (dropped frames?): skipped; 94 stereo pairs") in caplog.text
    for pair in pairs:  # the same images as the complete bag's pair of that name
        assert np.array_equal(pair.image_b, full_pairs[pair.name].image_b), pair.name
    frames = slam_data.euroc_depth_frames(bag, stride=1)
    assert [f.name for f in frames] == [f"euroc_{i:03d}" for i in range(76) if i != DROPPED]


def test_a_missing_left_frame_does_not_shift_the_later_pairs(
    tmp_path: Path, dropped_stamp: int, full_pairs: dict[str, slam_data.PairSample],
) -> None:
    """Every pair after the missing left image joined a left image with the right image
    taken 50 ms earlier (45 of the 94), without a word."""
    bag = _without_frame(tmp_path, "/cam0/image_raw", dropped_stamp)
    pairs = slam_data.euroc_stereo_pairs(bag, stride=1)
    assert len(pairs) == 94
    for pair in pairs:
        # cam0 indices from the dropped frame on are the complete bag's index - 1
        full = full_pairs[f"euroc_{_frame(pair) + (_frame(pair) >= DROPPED):03d}"]
        assert np.array_equal(pair.image_a, full.image_a), pair.name
        assert np.array_equal(pair.image_b, full.image_b), pair.name


def test_the_held_out_split_goes_by_frame_index_not_list_position(
    full_pairs: dict[str, slam_data.PairSample],
) -> None:
    pairs = [p for p in full_pairs.values() if p.frame != 60]
    train, held = slam_data.euroc_split(pairs)
    assert [p.frame for p in held] == list(range(76, 95))
    assert [p.frame for p in train] == [i for i in range(76) if i != 60]
    assert [p.frame for p in slam_data.euroc_split(pairs, 3)[1]] == list(range(76, 95, 3))


def test_the_bundled_bag_keeps_its_pair_names(
        full_pairs: dict[str, slam_data.PairSample]) -> None:
    assert list(full_pairs) == [f"euroc_{i:03d}" for i in range(95)]
    assert all(p.frame == _frame(p) for p in full_pairs.values())


def test_frontend_depth_and_the_controller_depths_skip_an_unpaired_frame(
    tmp_path: Path,
) -> None:
    """benchmark-slam's frontend figures and `train controller`'s nearest depths took
    cam1.images[i] with cam0.images[i] (an IndexError past a missing right frame)."""
    from meetup_ros.control.training import stereo_nearest_depths
    from meetup_ros.slam.benchmark import frontend_depth

    held_out = _stamp(slam_data.EUROC_HELD_OUT_FROM + 2)
    bag = _without_frame(tmp_path, "/cam1/image_raw", held_out)
    models = Path(__file__).resolve().parent.parent / "models"
    figures = frontend_depth(bag, models / "depth_code.pt", models / "slam_optimizer.pt",
                             first_index=slam_data.EUROC_HELD_OUT_FROM)
    assert figures["frontend_keyframes"] == 94 - slam_data.EUROC_HELD_OUT_FROM
    depths = stereo_nearest_depths(read_sequence(bag), 95)
    assert depths.size == 94


def test_a_bag_without_tf_static_names_the_missing_extrinsics(tmp_path: Path) -> None:
    """A bag written by `meetup-ros record` has no /tf_static: the reader takes identity for
    both cameras, and `train depth` ended with "stereo baseline 0.0 m is too small to
    rectify"."""
    from meetup_ros.control.training import stereo_nearest_depths

    bag = filtered_bag(tmp_path / "no_tf", lambda topic, _: topic != "/tf_static")
    expected = (rf"^bag {re.escape(repr(str(bag)))} has no /tf_static transform to cam0 or "
                r"cam1: the cam0-cam1 extrinsics \(the stereo baseline\) are missing; expected "
                r"a stereo EuRoC bag with /tf_static \(a bag written by `meetup-ros record` "
                r"has none")
    with pytest.raises(SlamError, match=expected):
        slam_data.euroc_depth_frames(bag)
    with pytest.raises(SlamError, match=expected):
        stereo_nearest_depths(read_sequence(bag), 3)


def test_train_depth_on_a_bag_without_tf_static_is_one_line_and_exit_2(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """(Depth training checks its data root first: without ../shared/data a clone failed here
    on that, hence the fixture.)"""
    from meetup_ros.cli import main

    bag = filtered_bag(tmp_path / "no_tf", lambda topic, _: topic != "/tf_static")
    code = main(["train", "depth", "--bag", str(bag), "--out", str(tmp_path / "out"),
                 "--epochs", "1", "--threads", "1", "--set", "steps=1",
                 "--set", f"data_root={shared_data}"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert "has no /tf_static transform to cam0 or cam1" in err and "baseline 0.0" not in err


def _depth_msg(stamp_ns: int, depth: np.ndarray) -> SimpleNamespace:
    """What report._depth_scores reads of a recorded /depth (32FC1) message."""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
        encoding="32FC1", height=depth.shape[0], width=depth.shape[1],
        step=4 * depth.shape[1], data=depth.astype("<f4").view(np.uint8).ravel())


def test_the_demo_scores_depth_against_the_partner_within_the_tolerance(
    tmp_path: Path,
) -> None:
    """The demo's depth scoring took a cam1 image only at cam0's exact stamp: cam1 stamped
    1 ms later (slam_node pairs it, pair_tolerance_s 3 ms) left "no /depth stamp matches"."""
    from meetup_ros.evaluation.report import _depth_scores

    bag = restamped_bag(tmp_path / "cam1_late", lambda topic, stamp_ns: stamp_ns + (
        MS if topic == "/cam1/image_raw" else 0))
    seq = read_sequence(bag)
    depth = np.full((seq.cam0.height, seq.cam0.width), 2.0, np.float32)
    frames = (10, 80)
    msgs = [_depth_msg(int(seq.cam0.stamps_ns[i]), depth) for i in frames]
    scored = _depth_scores(seq, msgs, 12, tmp_path)
    assert scored[3] == len(frames)


def test_the_demo_names_missing_extrinsics_in_its_depth_figure(tmp_path: Path) -> None:
    from meetup_ros.evaluation.report import _depth_scores

    seq = read_sequence(filtered_bag(tmp_path / "no_tf", lambda topic, _: topic != "/tf_static"))
    depth = np.full((seq.cam0.height, seq.cam0.width), 2.0, np.float32)
    with pytest.raises(SlamError, match=r"has no /tf_static transform to cam0 or cam1"):
        _depth_scores(seq, [_depth_msg(int(seq.cam0.stamps_ns[0]), depth)], 12, tmp_path)
