#!/usr/bin/env python3
"""What limits the inertial branch in flight: how much of the body velocity it recovers.

The in-motion figure (held-out last 30 s of EuRoC V1_01, IMU only) is an integral of the
velocity error, so this script looks at the velocity itself, on the validation split and on
the held-out segment of the weights' metadata:

1. The network's filtered body velocity against the ground truth's, per body axis: the
   slope of a least-squares line (1 = full scale, 0 = stands still) and the correlation.
   The network is run as ``odometry.training.evaluate_intervals`` runs it: one sequence,
   images masked, ground-truth attitudes in the physics features, ground-truth start
   velocity.
2. The one physical velocity signal an IMU on a multirotor carries, rotor drag: the
   specific force across the thrust axis (taken as the mean accelerometer direction) is
   about -k times the body velocity across it. Per axis, over 0.2 s means: the correlation,
   and the RMS error of the best affine velocity-from-force fit beside the velocity's own
   standard deviation (what predicting the mean would give). Computed on the whole flight,
   so it is an upper bound on what a linear drag model could add.
3. A physics ceiling on the held-out segment: the accelerometer rotated with the ground
   truth's attitude, less its bias, integrated twice from the ground-truth state with the
   velocity leaking to 0 (time constant tau). Measured 2026-12-06: best 0.86 m at 3 s,
   against the network's 0.78 m and dead reckoning's 1.34 m (0.2x would be 0.27 m).

Example:
    .venv/bin/python scripts/vio_velocity_diagnosis.py --bag /tmp/euroc_full
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("vio_velocity_diagnosis")
sys.path.insert(0, str(REPO))

from meetup_ros.bags.reader import Sequence, read_sequence  # noqa: E402
from meetup_ros.evaluation.trajectory import Trajectory, ate_rmse  # noqa: E402
from meetup_ros.odometry.dataset import (  # noqa: E402
    Intervals,
    build_intervals,
    frame_stamps,
    interpolate_groundtruth,
    select,
)
from meetup_ros.odometry.estimator import VioEstimator  # noqa: E402
from meetup_ros.odometry.model import GRAVITY_MPS2, VioNet  # noqa: E402
from meetup_ros.odometry.windowing import NS_PER_S  # noqa: E402


def network_velocity(model: VioNet, iv: Intervals) -> np.ndarray:
    """Filtered body velocity (K, 3) of the inertial branch over the intervals ``iv``."""
    import torch

    model.eval()
    with torch.no_grad():
        v0 = torch.from_numpy(iv.v_body_gt[:1]).float()
        _, _, _, v_body = model(
            torch.from_numpy(iv.imu)[None], torch.from_numpy(iv.imu_count)[None],
            torch.from_numpy(iv.pair)[None], torch.zeros(1, len(iv)),
            torch.from_numpy(iv.aux())[None], model.initial_state(1, v0))
    return v_body[0].numpy().astype(np.float64)


def velocity_table(name: str, v_est: np.ndarray, v_gt: np.ndarray) -> None:
    rms = float(np.sqrt(np.mean(np.sum((v_est - v_gt) ** 2, axis=1))))
    gt_rms = float(np.sqrt(np.mean(np.sum(v_gt**2, axis=1))))
    logger.info("%s: %d intervals, velocity error RMS %.3f m/s (ground-truth speed RMS %.3f)",
                name, len(v_gt), rms, gt_rms)
    for axis in range(3):
        slope = float(np.polyfit(v_gt[:, axis], v_est[:, axis], 1)[0])
        corr = float(np.corrcoef(v_gt[:, axis], v_est[:, axis])[0, 1])
        logger.info("  body axis %d: slope %.2f, correlation %.2f", axis, slope, corr)


def drag_table(seq: Sequence, window: int = 40) -> None:
    imu, gt = seq.imu, seq.groundtruth
    if imu is None or gt is None:
        raise SystemExit(f"bag {seq.paths!r} needs /imu0 and ground truth")
    sel = (imu.stamps_ns >= gt.stamps_ns[0]) & (imu.stamps_ns <= gt.stamps_ns[-1])
    poses = interpolate_groundtruth(gt, imu.stamps_ns[sel])
    if poses.v_world_mps is None:
        raise SystemExit(f"bag {seq.paths!r} has no ground-truth velocity")
    v_body = np.einsum("nji,nj->ni", poses.T_world_body[:, :3, :3], poses.v_world_mps)
    accel = imu.accel_mps2[sel]
    n = len(accel) // window
    force = accel[: n * window].reshape(n, window, 3).mean(axis=1)
    vel = v_body[: n * window].reshape(n, window, 3).mean(axis=1)
    thrust = accel.mean(axis=0) / np.linalg.norm(accel.mean(axis=0))
    e1 = np.cross(thrust, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(thrust, e1)
    design = np.column_stack([force @ e1, force @ e2, np.ones(n)])
    logger.info("rotor drag, whole flight, %d means of %d samples, thrust axis %s (body)",
                n, window, np.round(thrust, 3).tolist())
    for label, e in (("across 1", e1), ("across 2", e2)):
        coef, *_ = np.linalg.lstsq(design, vel @ e, rcond=None)
        fit_rms = float(np.sqrt(np.mean((design @ coef - vel @ e) ** 2)))
        corr = float(np.corrcoef(force @ e, vel @ e)[0, 1])
        logger.info("  %s: force-velocity correlation %.2f; velocity from force RMS %.3f m/s "
                    "vs velocity std %.3f m/s", label, corr, fit_rms, float(np.std(vel @ e)))


def leaky_integration_table(seq: Sequence, start_ns: int,
                            taus_s: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0, 10.0)) -> None:
    """A physics ceiling for the held-out segment: the accelerometer turned into the world
    with the ground truth's own attitude and bias, integrated twice from the ground-truth
    state, the velocity leaking back to 0 with time constant tau (a prior that a hovering
    vehicle does not drift off). SE(3)-aligned ATE per tau, beside the network's and dead
    reckoning's on the same stretch (`evaluate-vio`)."""
    imu, gt = seq.imu, seq.groundtruth
    if imu is None or gt is None:
        raise SystemExit(f"bag {seq.paths!r} needs /imu0 and ground truth")
    sel = (imu.stamps_ns > start_ns) & (imu.stamps_ns <= gt.stamps_ns[-1])
    stamps = imu.stamps_ns[sel]
    state = interpolate_groundtruth(gt, stamps)
    start = interpolate_groundtruth(gt, np.array([start_ns]))
    if state.v_world_mps is None or start.v_world_mps is None:
        raise SystemExit(f"bag {seq.paths!r} has no ground-truth velocity")
    t_ref = (gt.stamps_ns - gt.stamps_ns[0]) / NS_PER_S
    t = (stamps - gt.stamps_ns[0]) / NS_PER_S
    bias = np.stack([np.interp(t, t_ref, np.asarray(gt.bias_accel)[:, i]) for i in range(3)], 1)
    accel_world = (np.einsum("nij,nj->ni", state.T_world_body[:, :3, :3],
                             imu.accel_mps2[sel] - bias) - [0.0, 0.0, GRAVITY_MPS2])
    dt = np.diff(np.concatenate([[start_ns], stamps])) / NS_PER_S
    reference = Trajectory(stamps, state.T_world_body[:, :3, 3],
                           np.tile([0.0, 0.0, 0.0, 1.0], (len(stamps), 1)), "ground truth")
    logger.info("leaky double integration, ground-truth attitude and bias, %.1f s from %d ns",
                float(dt.sum()), start_ns)
    for tau in taus_s:
        v = start.v_world_mps[0].copy()
        p = start.T_world_body[0, :3, 3].copy()
        positions = np.empty((len(stamps), 3))
        for k in range(len(stamps)):
            v += (accel_world[k] - v / tau) * dt[k]
            p += v * dt[k]
            positions[k] = p
        est = Trajectory(stamps, positions, reference.q_xyzw, f"leaky {tau:g} s")
        logger.info("  tau %4.1f s: ATE (SE(3)) %.3f m", tau, ate_rmse(est, reference))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bag", type=Path, required=True, help="the full-flight bag")
    parser.add_argument("--weights", type=Path, default=REPO / "models" / "vio.pt")
    parser.add_argument("--val-s", type=float, default=15.0, help="validation split length")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    estimator = VioEstimator.from_weights(args.weights)
    seq = read_sequence((args.bag,))
    stamps, has_image = frame_stamps(seq)
    iv = build_intervals(seq, stamps, has_image, estimator.image_hw)
    heldout_start = int(estimator.metadata["heldout_start_ns"])
    val_start = heldout_start - int(args.val_s * NS_PER_S)
    starts, ends = iv.frame_stamps_ns[:-1], iv.frame_stamps_ns[1:]
    for name, index in (
        ("validation", np.flatnonzero((starts >= val_start) & (ends <= heldout_start))),
        ("held-out", np.flatnonzero(starts >= heldout_start)),
    ):
        part = select(iv, index)
        velocity_table(name, network_velocity(estimator.model, part), part.v_body_gt[1:])
    drag_table(seq)
    leaky_integration_table(seq, heldout_start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
