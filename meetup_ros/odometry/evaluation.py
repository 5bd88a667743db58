"""Score the VIO on real EuRoC data: at rest with images, in motion inertial-only, vs DR.

Two figures on real data, kept apart (see issue 5):

- at rest, with images: the full model over the image window (95 frames of EuRoC V1_01, the
  vehicle still on the ground), started from gravity like the node;
- in motion, inertial-only: the same model with image features masked over the held-out flight
  segment (by default the last 30 s of the recording, which training never sees), started from
  the ground-truth pose and velocity at the segment start (what dead reckoning gets, less
  the biases), with 20 Hz pseudo-frames without images.

Each is set beside IMU-only dead reckoning from the ground-truth state on the same stretch
(:func:`dead_reckoning`). Errors are evo's ATE (SE(3)-aligned) and RPE over 1 frame.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meetup_ros.bags import coverage
from meetup_ros.evaluation import trajectory as traj_metrics
from meetup_ros.evaluation.jsonsafe import finite_json
from meetup_ros.evaluation.trajectory import EvaluationError, Trajectory
from meetup_ros.odometry.dataset import (
    check_groundtruth_stamps,
    drop_imu_non_measurements,
    drop_invalid_imu_stamps,
    interpolate_groundtruth,
)
from meetup_ros.odometry.deadreckoning import dead_reckoning
from meetup_ros.odometry.estimator import OdometryEstimate, VioEstimator
from meetup_ros.odometry.windowing import NS_PER_S, OdometryError

__all__ = ["EstimatorRun", "dead_reckoning", "evaluate_vio", "run_estimator"]

logger = logging.getLogger(__name__)

# SE(3) alignment (Umeyama) needs three associated pose pairs.
MIN_DISTINCT_STAMPS = 3
# A scored stretch ends at the first IMU gap (coverage.MAX_GAP_PERIODS): dead reckoning
# integrates one sample across it, and the estimator resets there.
MAX_IMU_GAP_PERIODS = coverage.MAX_GAP_PERIODS
# Ground truth is interpolated (the start state, the reference poses): a hole of a few of its
# periods is already a guess.
MAX_GT_GAP_PERIODS = 3
# A held-out score over less than this says little (a tester's 0.2 s window scored 3 poses).
MIN_HELDOUT_S = 5.0
# What this command writes into --out: all removed first, so that a reused folder holds no
# figures of an earlier run beside a report that no longer has them.
OUTPUT_FILES = (
    "vio_report.json", "vio_rest.tum", "dead_reckoning_rest.tum", "groundtruth_rest.tum",
    "vio_rest.png", "vio_inertial_heldout.tum", "dead_reckoning_heldout.tum",
    "groundtruth_heldout.tum", "vio_inertial_heldout.png",
)


@dataclass
class EstimatorRun:
    """What one pass of the estimator over a stretch produced and cost."""

    trajectory: Trajectory
    estimates: list[OdometryEstimate]
    frame_latency_ms: np.ndarray  # (frames,)
    imu_latency_us: np.ndarray  # (imu samples,)
    stats: dict[str, int]
    wall_s: float
    span_s: float


def _events(
    seq: Any, start_ns: int, end_ns: int, use_images: bool, imu_per_frame: int,
    frame_stamps_ns: np.ndarray | None = None,
) -> Iterator[tuple[int, int, Any]]:
    """(stamp_ns, kind 0 = IMU / 1 = frame, payload) in stamp order, IMU first on ties."""
    imu = seq.imu
    sel = np.flatnonzero((imu.stamps_ns >= start_ns) & (imu.stamps_ns <= end_ns))
    events: list[tuple[int, int, Any]] = [(int(imu.stamps_ns[i]), 0, i) for i in sel]
    if use_images and seq.cam0 is not None:
        for j, stamp in enumerate(seq.cam0.stamps_ns):
            if start_ns <= stamp <= end_ns:
                events.append((int(stamp), 1, j))
    elif frame_stamps_ns is not None:
        events.extend((int(t), 1, None) for t in frame_stamps_ns if start_ns < t <= end_ns)
    else:
        events.extend((int(imu.stamps_ns[i]), 1, None)
                      for i in sel[imu_per_frame::imu_per_frame])
    events.sort(key=lambda e: (e[0], e[1]))
    return iter(events)


def _stamp_overlap(seq: Any, use_images: bool) -> str:
    """Why no window closed, where the stamps say it: camera and IMU stamps that do not
    overlap (a tester's camera 100 s ahead of its IMU gave only queue-full warnings)."""
    if not use_images or seq.cam0 is None or not len(seq.cam0.stamps_ns):
        return ""
    cam, imu = seq.cam0.stamps_ns, seq.imu.stamps_ns
    if cam[0] <= imu[-1] and imu[0] <= cam[-1]:
        return ""
    return (f"; the camera's stamps ({int(cam[0])}..{int(cam[-1])} ns) and the IMU's "
            f"({int(imu[0])}..{int(imu[-1])} ns) do not overlap "
            f"({(int(cam[0]) - int(imu[0])) / 1e9:+.3f} s apart at the start): are the two "
            "clocks the same?")


def run_estimator(
    estimator: VioEstimator,
    seq: Any,
    start_ns: int,
    end_ns: int,
    *,
    use_images: bool = True,
    imu_per_frame: int = 10,
    T_world_body0: np.ndarray | None = None,
    v_world0_mps: np.ndarray | None = None,
    frame_stamps_ns: np.ndarray | None = None,
) -> EstimatorRun:
    """Feed ``seq``'s IMU and frames in [start_ns, end_ns] to ``estimator`` in stamp order.

    With ``use_images`` the camera frames are the frames; otherwise every ``imu_per_frame``-th
    IMU stamp is a frame without image (the inertial-only mode), or each of
    ``frame_stamps_ns``. ``T_world_body0`` (and
    ``v_world0_mps``) start the estimator in that state at ``start_ns`` (else it initialises
    from gravity, at rest).
    """
    if T_world_body0 is not None:
        estimator.initialise(start_ns, T_world_body0, v_world0_mps)
    estimates: list[OdometryEstimate] = []
    frame_ms: list[float] = []
    imu_us: list[float] = []
    imu = seq.imu
    t_start = time.perf_counter()
    for stamp_ns, kind, payload in _events(seq, start_ns, end_ns, use_images, imu_per_frame,
                                           frame_stamps_ns):
        if kind == 0:
            t0 = time.perf_counter()
            estimator.add_imu(stamp_ns, imu.gyro_radps[payload], imu.accel_mps2[payload])
            imu_us.append((time.perf_counter() - t0) * 1e6)
        else:
            image = seq.cam0.images[payload] if payload is not None else None
            t0 = time.perf_counter()
            estimate = estimator.add_frame(stamp_ns, image)
            frame_ms.append((time.perf_counter() - t0) * 1e3)
            if estimate is not None and (T_world_body0 is None or stamp_ns > start_ns):
                estimates.append(estimate)
    wall_s = time.perf_counter() - t_start
    if not estimates:
        raise OdometryError(f"the estimator gave no estimate over {start_ns}..{end_ns} ns"
                            + _stamp_overlap(seq, use_images))
    T = np.stack([e.T_odom_base for e in estimates])
    from scipy.spatial.transform import Rotation

    trajectory = Trajectory(
        np.array([e.stamp_ns for e in estimates], dtype=np.int64), T[:, :3, 3].copy(),
        Rotation.from_matrix(T[:, :3, :3]).as_quat(), "vio",
    )
    stats = {k: int(v) for k, v in vars(estimator.stats).items()}
    return EstimatorRun(trajectory, estimates, np.asarray(frame_ms), np.asarray(imu_us), stats,
                        wall_s, (end_ns - start_ns) / NS_PER_S)


def _pseudo_frames(gt_stamps_ns: np.ndarray, start_ns: int, end_ns: int,
                   min_step_ns: int = 47_500_000) -> np.ndarray:
    """Frame stamps for the inertial-only run: the ground truth's own stamps, at most one per
    ``min_step_ns`` (the network's ~10 IMU samples a window). Every 10th IMU sample instead
    slid off the ground truth's 20 Hz grid after a few missing samples, beyond evo's 10 ms
    association: a tester's VIO ATE silently left out 222 of its 581 poses."""
    stamps = np.asarray(gt_stamps_ns, dtype=np.int64)
    stamps = stamps[(stamps > start_ns) & (stamps <= end_ns)]
    kept: list[int] = []
    for t in stamps:
        if not kept or t - kept[-1] >= min_step_ns:
            kept.append(int(t))
    return np.asarray(kept, dtype=np.int64)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": float("nan"), "p99": float("nan")}
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def _gt_reference(seq: Any, start_ns: int, end_ns: int) -> Trajectory:
    gt = seq.groundtruth
    sel = (gt.stamps_ns >= start_ns) & (gt.stamps_ns <= end_ns)
    return Trajectory(gt.stamps_ns[sel], gt.p_world_body[sel], gt.q_world_body_xyzw[sel],
                      "ground truth")


def _clip(traj: Trajectory, start_ns: int, end_ns: int) -> Trajectory:
    keep = (traj.stamps_ns >= start_ns) & (traj.stamps_ns <= end_ns)
    return Trajectory(traj.stamps_ns[keep], traj.p_xyz[keep], traj.q_xyzw[keep], traj.name)


def _score(est: Trajectory, ref: Trajectory) -> dict[str, float]:
    # evo associates within 10 ms; estimates sit on IMU stamps, ground truth on camera stamps
    return {
        "ate_rmse_m": traj_metrics.ate_rmse(est, ref, "se3"),
        "rpe_trans_m": traj_metrics.rpe_trans(est, ref, delta=1),
    }


def _bag_label(seq: Any) -> str:
    names = [str(p) for p in seq.paths]
    return repr(names[0] if len(names) == 1 else names)


def covered_window(stamps_ns: np.ndarray, start_ns: int, end_ns: int, topic: str,
                   max_gap_periods: float) -> tuple[int, int, str]:
    """:func:`meetup_ros.bags.coverage.covered_window`, refusing a series absent from it.

    Raises:
        OdometryError: no stamp in or near the window.
    """
    window = coverage.covered_window(stamps_ns, start_ns, end_ns, topic, max_gap_periods)
    if window is None:
        raise OdometryError(f"no {topic} message in {start_ns}..{end_ns} ns")
    return window


def imu_covered_window(imu_stamps_ns: np.ndarray, start_ns: int,
                       end_ns: int) -> tuple[int, int, str]:
    """:func:`covered_window` of the IMU (a gap is :data:`MAX_IMU_GAP_PERIODS` periods)."""
    return covered_window(imu_stamps_ns, start_ns, end_ns, "/imu0", MAX_IMU_GAP_PERIODS)


def scored_window(seq: Any, start_ns: int, end_ns: int) -> tuple[int, int, str]:
    """Where both the IMU and the ground truth cover [start_ns, end_ns] without a gap: dead
    reckoning starts from the ground truth interpolated at the start (across a tester's 2 s
    hole in the ground truth, 18.7 m off), and both are scored against it."""
    from meetup_ros.bags import topics

    imu = imu_covered_window(seq.imu.stamps_ns, start_ns, end_ns)
    gt = covered_window(seq.groundtruth.stamps_ns, imu[0], imu[1], topics.GROUNDTRUTH_ODOMETRY,
                        MAX_GT_GAP_PERIODS)
    return gt[0], gt[1], "; ".join(r for r in (imu[2], gt[2]) if r)


def _cut(what: str, start_ns: int, end_ns: int, window: tuple[int, int, str]) -> None:
    if window[2]:
        logger.warning("%s %d..%d ns scored over %d..%d ns only (%.3f of %.3f s): %s", what,
                       start_ns, end_ns, window[0], window[1], (window[1] - window[0]) / NS_PER_S,
                       (end_ns - start_ns) / NS_PER_S, window[2])


def _check_stamps(seq: Any) -> None:
    """Refuse series whose header stamps cannot be told apart: estimates are paired with
    ground truth by stamp, and a bag with every stamp 0 (unset) left one pair and an evo
    error that named neither the bag nor the cause."""
    from meetup_ros.bags import topics

    problems = []
    for topic, series in ((topics.CAM0_IMAGE, seq.cam0), (topics.IMU, seq.imu),
                          (topics.GROUNDTRUTH_ODOMETRY, seq.groundtruth)):
        if series is None or len(series.stamps_ns) < MIN_DISTINCT_STAMPS:
            continue  # absent or short series are handled (or reported) where they are used
        distinct = np.unique(series.stamps_ns)
        if distinct.size < MIN_DISTINCT_STAMPS:
            problems.append(f"{topic} has {distinct.size} in {len(series.stamps_ns)} "
                            f"messages ({distinct.tolist()} ns)")
    if problems:
        raise OdometryError(
            f"bag {_bag_label(seq)}: too few distinct header stamps to associate poses "
            f"({MIN_DISTINCT_STAMPS} needed): {'; '.join(problems)}; are the stamps unset?")


def evaluate_vio(
    bag_paths: Any,
    weights: str | Path,
    out_dir: str | Path | None = None,
    *,
    heldout_s: float | None = None,
    heldout_start_ns: int | None = None,
) -> dict[str, Any]:
    """All VIO figures on a bag (see the module doc); writes JSON, TUM files and plots.

    The at-rest figures need camera frames in the bag; the in-motion figures need IMU and
    ground truth reaching at least ``heldout_s`` past the last frame (the full-flight bag).
    The held-out start is the weights' ``heldout_start_ns`` where recorded, so the scored
    segment is exactly the one training left out; a ``heldout_s`` given then is not used
    (said: it would score samples the weights trained on). None: 30 s.

    Raises:
        OdometryError, BagError: unreadable inputs or nothing to score.
    """
    from meetup_ros.bags import topics
    from meetup_ros.bags.reader import read_sequence

    seq = read_sequence(bag_paths)
    missing = [name for name, series in ((topics.IMU, seq.imu),
                                         (topics.GROUNDTRUTH_ODOMETRY, seq.groundtruth))
               if series is None]
    if missing:
        raise OdometryError(f"bag {_bag_label(seq)} has no {' and no '.join(missing)}: the VIO "
                            "runs on the IMU and is scored against the ground truth")
    _check_stamps(seq)
    check_groundtruth_stamps(seq)
    # Dropped here, before the estimator: sorted first and queued, one such sample made a
    # 1.4e9 s "gap" to the real ones that reset the windower.
    seq, invalid = drop_invalid_imu_stamps(seq)
    seq, not_measurements = drop_imu_non_measurements(seq)
    if not len(seq.imu.stamps_ns):
        raise OdometryError(f"bag {_bag_label(seq)}: every /imu0 stamp is 0 or negative "
                            "(never set); nothing to score")
    if out_dir is not None:
        for name in OUTPUT_FILES:
            (Path(out_dir) / name).unlink(missing_ok=True)
    try:
        return _evaluate(seq, weights, out_dir, heldout_s, heldout_start_ns, invalid,
                         not_measurements)
    except (EvaluationError, OdometryError) as exc:  # evo's reasons, a window, a stamp
        raise OdometryError(f"bag {_bag_label(seq)}: cannot score the VIO: {exc}") from None


def _evaluate(seq: Any, weights: str | Path, out_dir: str | Path | None, heldout_s: float | None,
              heldout_start_ns: int | None, invalid_imu_stamps: int = 0,
              imu_non_measurements: int = 0) -> dict[str, Any]:
    """The body of :func:`evaluate_vio` on a sequence read and checked."""
    from meetup_ros.bags import topics

    out = Path(out_dir) if out_dir is not None else None
    report: dict[str, Any] = {"bag": [str(p) for p in seq.paths], "weights": str(weights),
                              # dropped on reading, before the estimator (stamp 0 or below)
                              "imu_samples_invalid_stamp": invalid_imu_stamps,
                              "imu_samples_not_measurements": imu_non_measurements}
    estimator = VioEstimator.from_weights(weights)
    meta = estimator.metadata
    gt_start, gt_end = int(seq.groundtruth.stamps_ns[0]), int(seq.groundtruth.stamps_ns[-1])

    # -- at rest, with images ---------------------------------------------------------------
    # Scored where frames, ground truth and a gap-free IMU all are: the VIO and dead
    # reckoning on the same stretch (an IMU that stopped 2 s into the 4.7 s window had dead
    # reckoning scored on 2 s, the VIO on 3 s, and the report name the whole window).
    rest = None
    if seq.cam0 is not None and len(seq.cam0.stamps_ns) >= 3:
        frames_start, frames_end = int(seq.cam0.stamps_ns[0]), int(seq.cam0.stamps_ns[-1])
        start, end = max(frames_start, gt_start), min(frames_end, gt_end)
        if end - start < 0:
            raise OdometryError(
                f"the camera's frames {frames_start}..{frames_end} ns and the ground truth's "
                f"{gt_start}..{gt_end} ns ({topics.GROUNDTRUTH_ODOMETRY}) do not overlap"
                + _stamp_overlap(seq, use_images=True))
        rest = scored_window(seq, start, end)
        reasons = [r for r in (
            f"ground truth starts {(gt_start - frames_start) / NS_PER_S:.3f} s after the first "
            "frame" if gt_start > frames_start else "",
            f"ground truth ends {(frames_end - gt_end) / NS_PER_S:.3f} s before the last "
            "frame" if gt_end < frames_end else "", rest[2]) if r]
        rest = (rest[0], rest[1], "; ".join(reasons))
        _cut("at-rest window", frames_start, frames_end, rest)
        n_frames = int(np.count_nonzero((seq.cam0.stamps_ns >= rest[0])
                                        & (seq.cam0.stamps_ns <= rest[1])))
        if n_frames < 3:
            logger.warning("at-rest window: %d frame(s) where the IMU and ground truth cover "
                           "them (%s); no at-rest score", n_frames, rest[2])
            rest = None
    if rest is not None:
        start, end, cut = rest
        run = run_estimator(estimator, seq, int(seq.imu.stamps_ns[0]), end, use_images=True)
        vio = _clip(run.trajectory, start, end)  # what is scored is what is written
        ref = _gt_reference(seq, start, end)
        scores = _score(vio, ref)
        dr = dead_reckoning(seq, start, end)
        # The same window without zero-velocity updates: what the network alone does at rest.
        bare = VioEstimator.from_weights(weights, zero_velocity_update=False)
        bare_run = run_estimator(bare, seq, int(seq.imu.stamps_ns[0]), end, use_images=True)
        report.update(
            ate_rmse_m=scores["ate_rmse_m"],
            ate_rmse_m_without_zero_velocity_updates=_score(
                _clip(bare_run.trajectory, start, end), ref)["ate_rmse_m"],
            zero_velocity_updates=run.stats.get("zero_velocity_updates", 0),
            rpe_trans_m=scores["rpe_trans_m"],
            ate_rmse_m_dead_reckoning=traj_metrics.ate_rmse(dr, ref, "se3"),
            frames=len(vio.stamps_ns),
            rest_window_ns=[start, end],
            rest_window_cut=cut,
            latency_ms=_percentiles(run.frame_latency_ms),
            imu_callback_us=_percentiles(run.imu_latency_us),
            imu_samples_received=run.stats["received"],
            imu_samples_dropped=run.stats["dropped"],
            imu_samples_used=run.stats["used"],
            speedup_vs_real_time=run.span_s / max(run.wall_s, 1e-9),
        )
        if out is not None:
            traj_metrics.write_tum(out / "vio_rest.tum", vio)
            traj_metrics.write_tum(out / "dead_reckoning_rest.tum", dr)
            traj_metrics.write_tum(out / "groundtruth_rest.tum", ref)
            traj_metrics.plot_trajectories(
                out / "vio_rest.png", {"vio (images + IMU)": vio,
                                       "dead reckoning": dr}, ref,
                title="EuRoC V1_01 image window (at rest)")
    elif seq.cam0 is None or len(seq.cam0.stamps_ns) < 3:
        logger.warning("bag has fewer than 3 camera frames; no at-rest score")

    # -- in motion, inertial only, held-out segment ------------------------------------------
    imu_end = int(seq.imu.stamps_ns[-1])
    if heldout_start_ns is None and meta.get("heldout_start_ns") is not None:
        heldout_start_ns = int(meta["heldout_start_ns"])
        if heldout_s is not None:  # a tester's --heldout-s 60 was ignored without a word
            logger.warning(
                "held-out length %g s not used: the weights record their held-out start, so "
                "the segment scored is the last %.1f s of the IMU, exactly what they never "
                "trained on (a longer one would score training data)", heldout_s,
                (imu_end - heldout_start_ns) / NS_PER_S)
    if heldout_start_ns is None:
        heldout_start_ns = imu_end - int((30.0 if heldout_s is None else heldout_s) * NS_PER_S)
    last_frame = int(seq.cam0.stamps_ns[-1]) if seq.cam0 is not None else int(
        seq.imu.stamps_ns[0])
    heldout = None
    if heldout_start_ns > last_frame and heldout_start_ns < gt_end:
        heldout = scored_window(seq, heldout_start_ns, gt_end)
        _cut("held-out segment", heldout_start_ns, gt_end, heldout)
        if (heldout[1] - heldout[0]) / NS_PER_S < MIN_HELDOUT_S:
            logger.warning("held-out segment: %.3f s scored (%s), under %g s; no in-motion "
                           "score", (heldout[1] - heldout[0]) / NS_PER_S, heldout[2],
                           MIN_HELDOUT_S)
            heldout = None
    if heldout is not None:
        # from an IMU sample: the estimator and dead reckoning start on one
        start = int(seq.imu.stamps_ns[np.searchsorted(seq.imu.stamps_ns, heldout[0])])
        end, cut = heldout[1], heldout[2]
        gt0 = interpolate_groundtruth(seq.groundtruth, np.array([start]))
        estimator.reset("held-out segment")
        assert gt0.v_world_mps is not None  # dead reckoning below needs it as well
        run = run_estimator(estimator, seq, start, end, use_images=False,
                            T_world_body0=gt0.T_world_body[0], v_world0_mps=gt0.v_world_mps[0],
                            frame_stamps_ns=_pseudo_frames(seq.groundtruth.stamps_ns, start,
                                                           end))
        ref = _gt_reference(seq, start, end)
        dr = dead_reckoning(seq, start, end)
        # A constant position, best placed (at the centroid): Umeyama is degenerate for it.
        still_rmse = float(np.sqrt(np.mean(np.sum(
            (ref.p_xyz - ref.p_xyz.mean(axis=0)) ** 2, axis=1))))
        report.update(
            ate_rmse_m_inertial_heldout=traj_metrics.ate_rmse(run.trajectory, ref, "se3"),
            ate_rmse_m_inertial_heldout_dead_reckoning=traj_metrics.ate_rmse(dr, ref, "se3"),
            ate_rmse_m_inertial_heldout_standing_still=still_rmse,
            rpe_trans_m_inertial_heldout=traj_metrics.rpe_trans(run.trajectory, ref),
            heldout_window_ns=[start, end],
            heldout_window_cut=cut,
            heldout_imu_samples=int(np.unique(seq.imu.stamps_ns[
                (seq.imu.stamps_ns > start) & (seq.imu.stamps_ns <= end)]).size),
            heldout_never_trained_on=bool(
                meta.get("heldout_start_ns") is not None
                and start >= int(meta["heldout_start_ns"])),
        )
        report["ate_ratio_inertial_heldout_vs_dead_reckoning"] = (
            report["ate_rmse_m_inertial_heldout"]
            / max(report["ate_rmse_m_inertial_heldout_dead_reckoning"], 1e-12))
        if out is not None:
            traj_metrics.write_tum(out / "vio_inertial_heldout.tum", run.trajectory)
            traj_metrics.write_tum(out / "dead_reckoning_heldout.tum", dr)
            traj_metrics.write_tum(out / "groundtruth_heldout.tum", ref)
            traj_metrics.plot_trajectories(
                out / "vio_inertial_heldout.png",
                {"vio (inertial only)": run.trajectory, "dead reckoning": dr}, ref,
                title=f"EuRoC V1_01 held-out flight, {(end - start) / 1e9:.1f} s scored"
                + (" (cut)" if cut else ""))
    elif not (heldout_start_ns > last_frame and heldout_start_ns < gt_end):
        source = ("the weights' heldout_start_ns" if "heldout_start_ns" in meta
                  else f"--heldout-s {30.0 if heldout_s is None else heldout_s:g} before "
                       "the IMU's end")
        logger.info("held-out start %d ns (%s) is not between the last frame %d ns and the "
                    "ground truth's end %d ns: no in-motion score (the full-flight bag from "
                    "import-euroc --imu-margin-s 200 has one)", heldout_start_ns, source,
                    last_frame, gt_end)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "vio_report.json").write_text(json.dumps(finite_json(report), indent=2,
                                                        default=float))
    return report
