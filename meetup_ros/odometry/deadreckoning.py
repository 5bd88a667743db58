"""IMU-only dead reckoning from the ground-truth initial state: the floor a VIO must beat.

Start pose, velocity and IMU biases come from the ground truth (the biases interpolated at
each sample: the best an IMU-only integrator could know); every IMU sample after the start is
integrated with pypose's ``IMUPreintegrator`` (gravity 9.81007 m/s^2 along world -z, as EuRoC's
world frame has z up). Nothing corrects the drift, which grows roughly with t^2 (velocity
error) and t^3 (attitude error through gravity).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pypose as pp
import torch

from meetup_ros.evaluation.trajectory import Trajectory
from meetup_ros.odometry.dataset import interpolate_groundtruth
from meetup_ros.odometry.model import GRAVITY_MPS2
from meetup_ros.odometry.windowing import NS_PER_S, OdometryError

logger = logging.getLogger(__name__)


def _interp_columns(t: np.ndarray, t_ref: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(t, t_ref, values[:, i]) for i in range(values.shape[1])], 1)


def integrate_imu(
    stamps_ns: np.ndarray,
    gyro_radps: np.ndarray,
    accel_mps2: np.ndarray,
    T_world_body0: np.ndarray,
    v_world0_mps: np.ndarray,
    start_ns: int,
) -> Trajectory:
    """Integrate bias-corrected samples (stamps after ``start_ns``) from a known state.

    Returns the trajectory at ``start_ns`` and at every sample stamp.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    if stamps.size == 0:
        raise OdometryError("dead reckoning needs at least one IMU sample after the start")
    dt = np.diff(np.concatenate([[int(start_ns)], stamps])) / NS_PER_S
    integrator = pp.module.IMUPreintegrator(gravity=GRAVITY_MPS2, prop_cov=False,
                                            reset=True).double()
    rot0 = pp.mat2SO3(torch.as_tensor(T_world_body0[:3, :3], dtype=torch.float64),
                      check=False)
    init = {
        "pos": torch.as_tensor(T_world_body0[:3, 3], dtype=torch.float64)[None],
        "rot": rot0[None],
        "vel": torch.as_tensor(v_world0_mps, dtype=torch.float64)[None],
    }
    with torch.no_grad():
        out = integrator(
            torch.as_tensor(dt, dtype=torch.float64)[None, :, None],
            torch.as_tensor(gyro_radps, dtype=torch.float64)[None],
            torch.as_tensor(accel_mps2, dtype=torch.float64)[None],
            init_state=init,
        )
    p = out["pos"][0].numpy()
    q = out["rot"][0].tensor().numpy()
    p = np.concatenate([T_world_body0[None, :3, 3], p])
    q = np.concatenate([rot0.tensor().numpy()[None], q])
    return Trajectory(np.concatenate([[int(start_ns)], stamps]), p, q, "dead reckoning")


def dead_reckoning(seq: Any, start_ns: int, end_ns: int) -> Trajectory:
    """IMU-only trajectory of ``seq`` over [start_ns, end_ns] from the ground-truth state.

    Args:
        seq: a ``bags.reader.Sequence`` (or anything with ``imu`` and ``groundtruth`` alike)
            whose ground truth has velocities; biases are used where present (else zero).
        start_ns, end_ns: the stretch (EuRoC ns); the start must lie in the ground truth.

    Returns:
        Trajectory (``stamps_ns`` (N,), ``p_xyz`` (N, 3), ``q_xyzw`` (N, 4)) of the body in
        the ground-truth world frame, at ``start_ns`` and every IMU stamp up to ``end_ns``.

    Raises:
        OdometryError: no IMU or ground truth, no velocity, or a bad stretch.
    """
    if seq.imu is None or seq.groundtruth is None:
        raise OdometryError("dead reckoning needs IMU samples and ground truth in the sequence")
    gt = seq.groundtruth
    if gt.v_world_mps is None:
        raise OdometryError("dead reckoning needs ground-truth velocities; the sequence has none")
    start_ns, end_ns = int(start_ns), int(end_ns)
    if end_ns <= start_ns:
        raise OdometryError(f"dead reckoning stretch {start_ns}..{end_ns} ns is empty")
    state = interpolate_groundtruth(gt, np.array([start_ns]))
    assert state.v_world_mps is not None
    imu = seq.imu
    sel = (imu.stamps_ns > start_ns) & (imu.stamps_ns <= end_ns)
    stamps = imu.stamps_ns[sel]
    gyro = np.asarray(imu.gyro_radps[sel], dtype=np.float64)
    accel = np.asarray(imu.accel_mps2[sel], dtype=np.float64)
    finite = np.isfinite(gyro).all(axis=1) & np.isfinite(accel).all(axis=1)
    if not finite.all():
        # The estimator's windower rejects these samples (non_finite); skipping them here as
        # well keeps the two on the same data (the next sample's dt spans the gap, as in a
        # window), where one NaN made the whole dead-reckoned trajectory NaN.
        bad = stamps[~finite]
        names = [str(p) for p in getattr(seq, "paths", ())]
        logger.warning(
            "dead reckoning skips %d IMU sample(s) on /imu0 of bag %r with NaN or inf "
            "(stamps %s%s ns), as the estimator does", bad.size,
            names[0] if len(names) == 1 else names, ", ".join(str(int(s)) for s in bad[:3]),
            ", ..." if bad.size > 3 else "")
        stamps, gyro, accel = stamps[finite], gyro[finite], accel[finite]
    # bag reader names (bias_gyro) or EuRoC reader names (bias_gyro_radps)
    bias_gyro = getattr(gt, "bias_gyro", getattr(gt, "bias_gyro_radps", None))
    bias_accel = getattr(gt, "bias_accel", getattr(gt, "bias_accel_mps2", None))
    if bias_gyro is not None and bias_accel is not None:
        t_ref = (gt.stamps_ns - gt.stamps_ns[0]) / NS_PER_S
        t = (np.clip(stamps, gt.stamps_ns[0], gt.stamps_ns[-1]) - gt.stamps_ns[0]) / NS_PER_S
        gyro = gyro - _interp_columns(t, t_ref, np.asarray(bias_gyro))
        accel = accel - _interp_columns(t, t_ref, np.asarray(bias_accel))
    else:
        logger.warning("ground truth has no IMU biases; dead reckoning with zero biases")
    logger.info("dead reckoning %d IMU samples over %.2f s", stamps.size,
                (end_ns - start_ns) / NS_PER_S)
    return integrate_imu(stamps, gyro, accel, state.T_world_body[0], state.v_world_mps[0],
                         start_ns)
