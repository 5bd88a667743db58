"""The KITTI/TUM readers behind evaluate-visual and benchmark-slam (a tester's F3, F4, F6, F12).

Each test builds a small data root in tmp_path with the shared data's layout: two KITTI
snippets of 4 frames and 4 TUM frames 1 s apart with 100 Hz ground truth that starts 0.05 s
after the first frame (the shared data's first frame is 0.067 s before its ground truth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from meetup_ros.odometry import visual_baseline
from meetup_ros.slam import data as slam_data

KITTI06 = "kitti_odometry_06_frames000-050_mono/KITTI_sequence_1"
KITTI_TURN = "kitti_odometry_KITTIsequence2_frames51_mono/KITTI_sequence_2"
TUM = "tum_rgbd_fr3_long_office_household_17frames_1hz"
FRAMES = 4
TUM_STAMPS = 1000.0 + np.arange(FRAMES)  # s
CALIB = "7.07e+02 0 6.0e+02 0 0 7.07e+02 1.8e+02 0 0 0 1 0\n" \
        "7.07e+02 0 6.0e+02 -3.8e+02 0 7.07e+02 1.8e+02 0 0 0 1 0\n"


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64), dtype=np.uint8)


def _pose_line(yaw_rad: float, forward_m: float) -> str:
    T = np.eye(4)[:3]
    T[:, :3] = Rotation.from_euler("y", yaw_rad).as_matrix()
    T[2, 3] = forward_m
    return " ".join(f"{v:.6e}" for v in T.ravel()) + "\n"


def _gt_rows(start_s: float, end_s: float) -> str:
    """100 Hz rows: moving along x at 0.3 m/s, turning about z."""
    rows = []
    for t in np.arange(round(start_s * 100), round(end_s * 100) + 1) / 100:
        q = Rotation.from_euler("z", 0.1 * (t - 1000.0)).as_quat()
        rows.append(f"{t:.4f} {0.3 * (t - 1000.0):.4f} 1.0 1.5 "
                    + " ".join(f"{v:.4f}" for v in q) + "\n")
    return "".join(rows)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for rel in (KITTI06, KITTI_TURN):
        folder = root / rel
        (folder / "image_l").mkdir(parents=True)
        for i in range(FRAMES):
            cv2.imwrite(str(folder / "image_l" / f"{i:06d}.png"), _image(i))
        (folder / "poses.txt").write_text("".join(_pose_line(0.05 * i, 1.0 * i)
                                                  for i in range(FRAMES)))
        (folder / "calib.txt").write_text(CALIB)
    tum = root / TUM
    (tum / "assets" / "freiburg_sequence").mkdir(parents=True)
    (tum / "eao_slam_data").mkdir()
    for i, stamp in enumerate(TUM_STAMPS):
        cv2.imwrite(str(tum / "assets" / "freiburg_sequence" / f"{stamp:.6f}.png"), _image(i))
    (tum / "eao_slam_data" / "groundtruth.txt").write_text(
        "# timestamp tx ty tz qx qy qz qw\n"
        + _gt_rows(TUM_STAMPS[0] + 0.05, TUM_STAMPS[-1] + 0.5))
    return root


def _gt_path(root: Path) -> Path:
    return root / TUM / "eao_slam_data" / "groundtruth.txt"


def _both_refuse(root: Path, pattern: str) -> None:
    """evaluate-visual's and the SLAM pairs' readers refuse the TUM data alike."""
    with pytest.raises(ValueError, match=pattern):
        visual_baseline.load_tum(root / TUM, "tum")
    with pytest.raises(ValueError, match=pattern):
        slam_data.mono_pose_pairs(root)


def _line_no(path: Path, stamp_s: float) -> int:
    """The 1-based line of ``path`` whose stamp is ``stamp_s``."""
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.startswith("#") and abs(float(line.split()[0]) - stamp_s) < 1e-6:
            return n
    raise AssertionError(f"no line at {stamp_s} in {path}")


# -- readers on good files ------------------------------------------------------------------
def test_good_root_reads_in_both_commands(root: Path) -> None:
    seqs = visual_baseline.load_sequences(root)
    assert [len(s.images) for s in seqs] == [FRAMES] * 3
    np.testing.assert_allclose(seqs[0].K, [[707, 0, 600], [0, 707, 180], [0, 0, 1]])
    np.testing.assert_allclose(seqs[0].T_world_cam[2, 2, 3], 2.0)
    # the first TUM frame is 0.05 s before the ground truth: it takes the first pose
    gt = np.loadtxt(_gt_path(root))
    np.testing.assert_allclose(seqs[2].T_world_cam[0, :3, 3], gt[0, 1:4])
    pairs = slam_data.mono_pose_pairs(root, limit=4)
    assert len(pairs) == 3 * (FRAMES - 1)
    # labelled KITTI calibration lines (the official files) give the same P0
    (root / KITTI06 / "calib.txt").write_text("P0: " + CALIB.replace("\n", "\nP1: ", 1))
    np.testing.assert_array_equal(visual_baseline.load_kitti(root / KITTI06, "k").K, seqs[0].K)


# -- F3: TUM frames outside the ground truth ------------------------------------------------
def test_tum_ground_truth_that_starts_late_is_refused_in_both_commands(root: Path) -> None:
    """Ground truth starting 2.5 s after the first frame: evaluate-visual clamped frames 0-2 to
    the first pose and benchmark-slam took the nearest row however far, without a word."""
    gt = _gt_path(root)
    gt.write_text(_gt_rows(TUM_STAMPS[0] + 2.5, TUM_STAMPS[-1] + 0.5))
    frame = root / TUM / "assets" / "freiburg_sequence" / f"{TUM_STAMPS[0]:.6f}.png"
    pattern = (rf"TUM frame {str(frame)!r} at 1000\.000000 s is 2\.500 s outside the span "
               rf"1002\.500000\.\.1003\.500000 s of ground truth {str(gt)!r}; expected every "
               r"frame within 0\.1 s of it")
    _both_refuse(root, pattern)


def test_tum_ground_truth_that_ends_early_or_has_a_gap_is_refused(root: Path) -> None:
    gt = _gt_path(root)
    gt.write_text(_gt_rows(TUM_STAMPS[0], TUM_STAMPS[-1] - 0.2))
    with pytest.raises(ValueError, match=r"1003\.000000 s is 0\.200 s outside the span"):
        visual_baseline.load_tum(root / TUM, "tum")
    # rows on both sides, but none within 0.1 s of frame 2 (1002 s): nearest is 0.5 s away
    gt.write_text(_gt_rows(TUM_STAMPS[0], 1001.5) + _gt_rows(1002.5, TUM_STAMPS[-1]))
    a, b = _line_no(gt, 1001.5), _line_no(gt, 1002.5)
    pattern = (rf"1002\.000000 s falls in a gap of ground truth .*lines {a}\.\.{b}, "
               r"1001\.500000\.\.1002\.500000 s\): the nearest pose is 0\.500 s away")
    _both_refuse(root, pattern)


def test_slam_takes_the_nearest_row_within_the_tolerance(root: Path) -> None:
    """The first frame, 0.05 s before the ground truth (as the shared data's 0.067 s), takes
    the first row; the tolerance is 0.1 s."""
    from meetup_ros.evaluation.datasets import TUM_GT_TOLERANCE_S

    assert TUM_GT_TOLERANCE_S == 0.1
    pair = next(p for p in slam_data.mono_pose_pairs(root, limit=1) if p.name.startswith("tum"))
    gt = np.loadtxt(_gt_path(root))
    j = int(np.argmin(np.abs(gt[:, 0] - TUM_STAMPS[1])))
    T_w_a, T_w_b = np.eye(4), np.eye(4)
    T_w_a[:3, :3] = Rotation.from_quat(gt[0, 4:8]).as_matrix()
    T_w_a[:3, 3] = gt[0, 1:4]
    T_w_b[:3, :3] = Rotation.from_quat(gt[j, 4:8]).as_matrix()
    T_w_b[:3, 3] = gt[j, 1:4]
    np.testing.assert_allclose(pair.T_b_a, np.linalg.inv(T_w_b) @ T_w_a, atol=1e-9)


# -- F4: a data root without some sequences -------------------------------------------------
def test_partial_data_root_is_refused_naming_every_missing_folder(root: Path) -> None:
    import shutil

    shutil.rmtree(root / TUM)
    shutil.rmtree(root / KITTI_TURN)
    pattern = rf"data root {str(root)!r} lacks {KITTI_TURN}, {TUM}; expected the KITTI and TUM"
    with pytest.raises(ValueError, match=pattern):
        slam_data.mono_pose_pairs(root)
    with pytest.raises(ValueError, match=pattern):
        visual_baseline.load_sequences(root)


def test_pairs_record_their_sequence(root: Path) -> None:
    pairs = slam_data.mono_pose_pairs(root, limit=2)
    assert slam_data.pairs_per_sequence(pairs) == {KITTI06: 2, KITTI_TURN: 2, TUM: 2}
    # a group one sequence gives nothing to still names it, with 0
    late = slam_data.mono_pose_pairs(root, limit=2, first=FRAMES)
    assert slam_data.pairs_per_sequence(late) == {KITTI06: 0, KITTI_TURN: 0, TUM: 0}


def test_benchmark_slam_with_a_partial_data_root_fails_in_one_line(
    root: Path, repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It exited 0 with the TUM pairs dropped (mono_untouched 0.34 instead of 0.43), or with
    no monocular figures at all for an empty folder."""
    import shutil

    from meetup_ros.cli import main

    shutil.rmtree(root / TUM)
    monkeypatch.chdir(repo_root)
    assert main(["benchmark-slam", "--data-root", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (f"meetup-ros benchmark-slam: error: data root {str(root)!r} lacks {TUM}; "
                   "expected the KITTI and TUM snippets of the shared data (../shared/data)\n")
    assert not (tmp_path / "o" / "benchmark_slam.json").exists()


# -- F6: malformed files ----------------------------------------------------------------------
def _nan_pose(root: Path) -> tuple[Path, str]:
    path = root / KITTI06 / "poses.txt"
    lines = path.read_text().splitlines(True)
    lines[2] = lines[2].replace(lines[2].split()[3], "nan", 1)
    path.write_text("".join(lines))
    return path, r":3: 'nan' is not finite; expected 12 finite numbers"


def _garbage_pose(root: Path) -> tuple[Path, str]:
    path = root / KITTI06 / "poses.txt"
    lines = path.read_text().splitlines(True)
    lines[1] = "hello world\n"
    path.write_text("".join(lines))
    return path, r":2: 'hello world' has 2 values; expected 12"


def _not_a_rotation(root: Path) -> tuple[Path, str]:
    path = root / KITTI06 / "poses.txt"
    lines = path.read_text().splitlines(True)
    values = lines[3].split()
    values[0], values[3] = values[3], values[0]  # a swapped value
    lines[3] = " ".join(values) + "\n"
    path.write_text("".join(lines))
    return path, r":4: the 3x3 part is not a rotation"


def _calib_missing(root: Path) -> tuple[Path, str]:
    path = root / KITTI06 / "calib.txt"
    path.unlink()
    return path, r"KITTI calibration '.*' does not exist; expected a line 'P0: <12 numbers>'"


def _calib_short(root: Path) -> tuple[Path, str]:
    path = root / KITTI06 / "calib.txt"
    path.write_text("P0: 1 2 3\n")
    return path, r":1: '1 2 3' has 3 values; expected 12 \(P0, the 3x4 projection\)"


def _gt_empty(root: Path) -> tuple[Path, str]:
    path = _gt_path(root)
    path.write_text("# nothing\n")
    return path, r"TUM ground truth '.*' has 0 pose\(s\); expected at least 2"


def _gt_backwards(root: Path) -> tuple[Path, str]:
    path = _gt_path(root)
    lines = path.read_text().splitlines(True)
    lines[5], lines[6] = lines[6], lines[5]
    path.write_text("".join(lines))
    return path, r":7: stamp .* is not after .* \(line 6\); expected increasing stamps"


def _gt_zero_quaternion(root: Path) -> tuple[Path, str]:
    path = _gt_path(root)
    lines = path.read_text().splitlines(True)
    lines[3] = " ".join([*lines[3].split()[:4], "0", "0", "0", "0"]) + "\n"
    path.write_text("".join(lines))
    return path, r":4: quaternion \[0\.0, 0\.0, 0\.0, 0\.0\] is zero"


def _gt_seven_columns(root: Path) -> tuple[Path, str]:
    path = _gt_path(root)
    lines = path.read_text().splitlines(True)
    lines[9] = " ".join(lines[9].split()[:7]) + "\n"
    path.write_text("".join(lines))
    return path, r":10: '.*' has 7 values; expected 8 \(timestamp tx ty tz qx qy qz qw\)"


def _one_tum_frame(root: Path) -> tuple[Path, str]:
    folder = root / TUM / "assets" / "freiburg_sequence"
    for path in sorted(folder.iterdir())[1:]:
        path.unlink()
    return folder, r"has 1 frame\(s\); expected at least 2"


def _tum_frame_not_a_stamp(root: Path) -> tuple[Path, str]:
    folder = root / TUM / "assets" / "freiburg_sequence"
    cv2.imwrite(str(folder / "frame.png"), _image(9))
    return folder / "frame.png", r": name 'frame' is not a stamp; expected <seconds>\.png"


DAMAGE = [_nan_pose, _garbage_pose, _not_a_rotation, _calib_missing, _calib_short, _gt_empty,
          _gt_backwards, _gt_zero_quaternion, _gt_seven_columns, _one_tum_frame,
          _tum_frame_not_a_stamp]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_malformed_file_is_named_with_its_line_in_both_commands(root: Path, damage: Any
                                                                ) -> None:
    """NaN poses, a garbage line, a missing or short calib.txt, an empty ground truth and a
    single TUM frame were tracebacks (EvaluationError naming no file, ValueError from numpy,
    FileNotFoundError, IndexError); a NaN pose off the benchmark's pairs went unnoticed."""
    from meetup_ros.evaluation.datasets import DatasetError

    path, message = damage(root)
    for load in (visual_baseline.load_sequences, slam_data.mono_pose_pairs):
        with pytest.raises(DatasetError, match=message) as info:
            load(root)
        assert str(path) in str(info.value)  # quoted alone, or as path:line


def test_evaluate_visual_with_a_missing_calib_fails_in_one_line(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meetup_ros.cli import main

    calib = root / KITTI06 / "calib.txt"
    calib.unlink()
    assert main(["evaluate-visual", "--data-root", str(root), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (f"meetup-ros evaluate-visual: error: KITTI calibration {str(calib)!r} does "
                   "not exist; expected a line 'P0: <12 numbers>' (or the 12 numbers alone on "
                   "the first line)\n")


# -- F12: KITTI plots in the camera frame ---------------------------------------------------
def test_kitti_plots_are_drawn_in_the_camera_frame(root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """KITTI poses are camera frames (x right, y down, z forward): the top view was x-y (a side
    view: the 98 deg turn did not show) and 'height' was z (the forward distance)."""
    from meetup_ros.evaluation import plots

    figures: list[Any] = []
    monkeypatch.setattr(plots, "save", lambda fig, path, dpi=110: figures.append(fig) or path)
    kitti = visual_baseline.load_kitti(root / KITTI_TURN, "kitti")
    tum = visual_baseline.load_tum(root / TUM, "tum")
    assert (kitti.axes, tum.axes) == ("camera", "z_up")
    for seq in (kitti, tum):
        ref = seq.groundtruth()
        visual_baseline.write_sequence_outputs(tmp_path / "out", seq, {"estimate": ref})
        top, height = figures[-1].axes
        gt_top, gt_height = top.lines[0], height.lines[0]
        p = ref.p_xyz
        if seq is kitti:
            np.testing.assert_allclose(gt_top.get_xdata(), p[:, 0])
            np.testing.assert_allclose(gt_top.get_ydata(), p[:, 2])
            np.testing.assert_allclose(gt_height.get_ydata(), -p[:, 1])
            assert (top.get_ylabel(), height.get_ylabel()) == ("z (forward) [m]", "-y (up) [m]")
        else:
            np.testing.assert_allclose(gt_top.get_ydata(), p[:, 1])
            np.testing.assert_allclose(gt_height.get_ydata(), p[:, 2])
            assert (top.get_ylabel(), height.get_ylabel()) == ("y [m]", "z [m]")
    assert (tmp_path / "out" / "kitti_groundtruth.tum").is_file()


def test_kitti_poses_with_comments_and_a_byte_order_mark_are_read(tmp_path: Path) -> None:
    """evo reads '#' comment lines in a KITTI poses.txt, and an editor may write a UTF-8
    byte-order mark: both were refused as malformed rows (a second tester's)."""
    from meetup_ros.evaluation.datasets import read_kitti_poses

    row = "1 0 0 0.5 0 1 0 0 0 0 1 2\n"
    path = tmp_path / "poses.txt"
    path.write_bytes(("\ufeff# exported by a tool\n" + row + "  # note\n" + row).encode())
    poses = read_kitti_poses(path)
    assert poses.shape == (2, 4, 4) and poses[0, 0, 3] == 0.5 and poses[1, 2, 3] == 2.0


def test_kitti_poses_rounded_to_three_decimals_are_read(tmp_path: Path) -> None:
    """A second tester's poses.txt rounded to 3 decimals was refused as 'not a rotation'."""
    from scipy.spatial.transform import Rotation

    from meetup_ros.evaluation.datasets import read_kitti_poses

    R = Rotation.from_euler("xyz", [0.3, -0.7, 1.1]).as_matrix()
    row = np.round(np.c_[R, [1.0, 2.0, 3.0]], 3).ravel()
    path = tmp_path / "poses.txt"
    path.write_text(" ".join(f"{v:.3f}" for v in row) + "\n")
    assert read_kitti_poses(path).shape == (1, 4, 4)
