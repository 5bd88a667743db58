"""Trajectory metrics: agreement with evo's own pipeline on real data; alignment recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evo.core import metrics, sync
from evo.main_ape import ape as evo_ape
from evo.main_rpe import rpe as evo_rpe
from evo.tools import file_interface
from scipy.spatial.transform import Rotation

from meetup_ros.evaluation.trajectory import (
    EvaluationError,
    Trajectory,
    ate,
    ate_rmse,
    plot_trajectories,
    read_tum,
    rpe,
    rpe_trans,
    write_tum,
)


@pytest.fixture(scope="module")
def tum_pair(shared_data: Path) -> tuple[Path, Path]:
    folder = shared_data / "trajectories_groundtruth" / "tum_rgbd"
    return folder / "freiburg1_xyz-rgbdslam.txt", folder / "freiburg1_xyz-groundtruth.txt"


@pytest.mark.parametrize("align", ["se3", "sim3"])
def test_ate_rpe_match_evo_on_rgbdslam(tum_pair: tuple[Path, Path], align: str) -> None:
    est_path, ref_path = tum_pair
    est, ref = read_tum(est_path), read_tum(ref_path)
    # evo's own entry points, as evo_ape / evo_rpe run them
    ref_e, est_e = sync.associate_trajectories(
        file_interface.read_tum_trajectory_file(str(ref_path)),
        file_interface.read_tum_trajectory_file(str(est_path)),
        max_diff=0.01,
    )
    expected_ate = evo_ape(
        ref_e, est_e, metrics.PoseRelation.translation_part, align=True,
        correct_scale=align == "sim3",
    ).stats["rmse"]
    ref_e, est_e = sync.associate_trajectories(
        file_interface.read_tum_trajectory_file(str(ref_path)),
        file_interface.read_tum_trajectory_file(str(est_path)),
        max_diff=0.01,
    )
    expected_rpe = evo_rpe(
        ref_e, est_e, metrics.PoseRelation.translation_part, delta=1,
        delta_unit=metrics.Unit.frames, align=True, correct_scale=align == "sim3",
    ).stats["rmse"]
    result = ate(est, ref, align=align)
    assert result["rmse_m"] == pytest.approx(expected_ate, rel=1e-9)
    assert result["pairs"] == 785
    assert 0.005 < result["rmse_m"] < 0.05  # RGBD-SLAM on fr1/xyz: about 1.3 cm
    assert rpe_trans(est, ref, align=align) == pytest.approx(expected_rpe, rel=1e-9)


def test_euroc_estimate_against_state_groundtruth(shared_data: Path) -> None:
    folder = shared_data / "trajectories_groundtruth" / "euroc_mav"
    ref = Trajectory.from_evo(
        file_interface.read_euroc_csv_trajectory(str(folder / "V102_groundtruth.csv"))
    )
    est = read_tum(folder / "V102_estimate_evo_testdata.txt")
    ref_e, est_e = sync.associate_trajectories(ref.to_evo(), est.to_evo(), max_diff=0.01)
    expected = evo_ape(
        ref_e, est_e, metrics.PoseRelation.translation_part, align=True, correct_scale=True
    ).stats["rmse"]
    assert ate_rmse(est, ref, align="sim3") == pytest.approx(expected, rel=1e-9)
    # RPE over 10 frames differs from the 1-frame value and matches evo's
    ref_e, est_e = sync.associate_trajectories(ref.to_evo(), est.to_evo(), max_diff=0.01)
    expected_10 = evo_rpe(
        ref_e, est_e, metrics.PoseRelation.translation_part, delta=10,
        delta_unit=metrics.Unit.frames,
    ).stats["rmse"]
    result = rpe(est, ref, delta=10, align="none")
    assert result["rmse_m"] == pytest.approx(expected_10, rel=1e-9)
    assert result["rmse_m"] != pytest.approx(rpe(est, ref, delta=1, align="none")["rmse_m"])


def synthetic(seed: int = 0, n: int = 200) -> Trajectory:
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 10.0, n)
    p = np.stack([np.cos(t), np.sin(0.7 * t), 0.2 * t], axis=1)
    p += 0.01 * rng.standard_normal((n, 3))
    q = Rotation.from_rotvec(np.stack([0.1 * t, 0.05 * t, t], axis=1)).as_quat()
    return Trajectory((t * 1e9).astype(np.int64) + 1_000_000_000, p, q, "synthetic")


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_alignment_recovers_known_transform(scale: float) -> None:
    ref = synthetic()
    R = Rotation.from_euler("zyx", [40.0, -15.0, 8.0], degrees=True)
    t = np.array([3.0, -1.0, 0.5])
    # est = inverse transform of ref, so aligning est back must give T_ref_est = (R, t), scale
    p_est = R.inv().apply(ref.p_xyz - t) / scale
    q_est = (R.inv() * Rotation.from_quat(ref.q_xyzw)).as_quat()
    est = Trajectory(ref.stamps_ns.copy(), p_est, q_est, "moved")
    align = "se3" if scale == 1.0 else "sim3"
    result = ate(est, ref, align=align)
    assert result["rmse_m"] < 1e-9
    assert result["scale"] == pytest.approx(scale, rel=1e-9)
    np.testing.assert_allclose(result["T_ref_est"][:3, :3], R.as_matrix(), atol=1e-9)
    np.testing.assert_allclose(result["T_ref_est"][:3, 3], t, atol=1e-9)
    if scale != 1.0:
        # SE(3) alone cannot explain a scale change
        assert ate(est, ref, align="se3")["rmse_m"] > 0.1
    # without alignment the error is the size of the offset
    assert ate(est, ref, align="none")["rmse_m"] > 1.0


def test_association_by_stamps() -> None:
    ref = synthetic(n=200)
    # every other pose, stamps shifted by 3 ms: all 100 associate with max_diff 10 ms
    shifted = Trajectory(ref.stamps_ns[::2] + 3_000_000, ref.p_xyz[::2], ref.q_xyzw[::2])
    assert ate(shifted, ref)["pairs"] == 100
    with pytest.raises(EvaluationError, match=r"no estimate stamp within 0\.001 s"):
        ate(shifted, ref, max_diff_s=0.001)


def test_tum_round_trip_and_plot(tmp_path: Path) -> None:
    traj = synthetic()
    path = write_tum(tmp_path / "out" / "est.tum", traj)
    back = read_tum(path)
    # TUM stores seconds as float: stamps survive to well under a microsecond
    assert np.max(np.abs(back.stamps_ns - traj.stamps_ns)) < 1_000
    np.testing.assert_allclose(back.p_xyz, traj.p_xyz, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(back.q_xyzw * traj.q_xyzw, axis=1)), 1.0, atol=1e-12)
    png = plot_trajectories(tmp_path / "plot.png", {"estimate": back}, traj)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda t: ate(t, t, align="affine"), r"align = 'affine', expected one of"),
        (lambda t: rpe(t, t, delta_unit="hours"), r"delta_unit = 'hours'"),
        (lambda t: ate(Trajectory(t.stamps_ns[:2], t.p_xyz[:2], t.q_xyzw[:2]), t),
         r"2 associated pose pair\(s\); align='se3' needs >= 3"),
        (lambda t: Trajectory(t.stamps_ns[::-1], t.p_xyz, t.q_xyzw),
         r"at index 1 is before .* expected non-decreasing"),
        (lambda t: Trajectory(t.stamps_ns, t.p_xyz[:, :2], t.q_xyzw),
         r"expected \(N,\), \(N, 3\)"),
        (lambda t: read_tum("/nonexistent/x.tum"), r"'/nonexistent/x.tum' does not exist"),
    ],
    ids=["bad align", "bad delta unit", "too few pairs", "stamps back", "bad shape", "no file"],
)
def test_bad_inputs(call, pattern: str) -> None:
    with pytest.raises(EvaluationError, match=pattern):
        call(synthetic())


@pytest.mark.parametrize("align", ["se3", "sim3"])
def test_estimate_that_never_moves_is_aligned_onto_the_centroid(align: str) -> None:
    """A constant estimate fixes no rotation; its best fit is the reference's centroid, and the
    ATE is the reference's RMS spread about it (what Umeyama approaches as the spread -> 0)."""
    rng = np.random.default_rng(3)
    n = 50
    stamps = np.arange(n, dtype=np.int64) * 50_000_000 + 1_000_000_000
    q = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))
    centre = np.array([1.0, 2.0, 0.5])
    ref = Trajectory(stamps, rng.normal(0, 0.002, (n, 3)) + centre, q, "jitter")
    still = Trajectory(stamps, np.zeros((n, 3)), q, "still")
    spread = float(np.sqrt(((ref.p_xyz - ref.p_xyz.mean(0)) ** 2).sum(1).mean()))
    result = ate(still, ref, align)
    assert result["rmse_m"] == pytest.approx(spread, rel=1e-9)
    assert result["scale"] == 1.0
