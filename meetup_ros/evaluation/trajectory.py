"""Trajectory metrics through ``evo``: association by stamps, ATE and RPE, TUM files, plots.

A trajectory here is a :class:`Trajectory` (``stamps_ns`` (N,), ``p_xyz`` (N, 3) metres,
``q_xyzw`` (N, 4)); the functions also accept an evo ``PoseTrajectory3D``, a
``(stamps_ns, p, q_xyzw)`` tuple, or any object with ``stamps_ns``, ``p_world_body`` and
``q_world_body_xyzw`` (the bag reader's ground truth). The numbers are evo's: estimates are
associated to the reference by nearest stamp (evo.core.sync), aligned with Umeyama
(SE(3), or Sim(3) with scale) on the associated pairs, then scored with evo.core.metrics.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from evo.core import metrics, sync
from evo.core.trajectory import PoseTrajectory3D
from evo.tools import file_interface

logger = logging.getLogger(__name__)

Alignment = Literal["se3", "sim3", "none"]
# The world frame's axes, for the plots: "z_up" (mocap, ENU, TUM), or "camera" (a camera
# frame: x right, y down, z forward, as KITTI's poses), whose ground plane is x-z and whose
# height is -y.
PlotAxes = Literal["z_up", "camera"]
_ALIGNMENTS = ("se3", "sim3", "none")


class EvaluationError(ValueError):
    """A trajectory is malformed, or two trajectories cannot be compared."""


@dataclass(frozen=True)
class Trajectory:
    """Poses of a body in a fixed frame, stamped in ns."""

    stamps_ns: np.ndarray  # (N,) int64
    p_xyz: np.ndarray  # (N, 3) m
    q_xyzw: np.ndarray  # (N, 4) unit quaternions
    name: str = ""

    def __post_init__(self) -> None:
        n = len(self.stamps_ns)
        if np.shape(self.p_xyz) != (n, 3) or np.shape(self.q_xyzw) != (n, 4):
            raise EvaluationError(
                f"trajectory {self.name!r}: stamps {np.shape(self.stamps_ns)}, positions "
                f"{np.shape(self.p_xyz)}, quaternions {np.shape(self.q_xyzw)}; expected "
                "(N,), (N, 3), (N, 4)"
            )
        if n and not (np.all(np.isfinite(self.p_xyz)) and np.all(np.isfinite(self.q_xyzw))):
            raise EvaluationError(f"trajectory {self.name!r} has NaN or infinite poses")
        # Real estimator logs repeat a stamp now and then (evo's V1_02 test data does);
        # only stamps that go back are refused.
        steps = np.diff(np.asarray(self.stamps_ns))
        if n > 1 and np.any(steps < 0):
            i = int(np.flatnonzero(steps < 0)[0])
            raise EvaluationError(
                f"trajectory {self.name!r}: stamp {int(self.stamps_ns[i + 1])} at index {i + 1} "
                f"is before {int(self.stamps_ns[i])}; expected non-decreasing stamps"
            )

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def to_evo(self) -> PoseTrajectory3D:
        q = np.asarray(self.q_xyzw, dtype=np.float64)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        traj = PoseTrajectory3D(
            positions_xyz=np.asarray(self.p_xyz, dtype=np.float64),
            orientations_quat_wxyz=q[:, [3, 0, 1, 2]],
            timestamps=np.asarray(self.stamps_ns, dtype=np.int64) / 1e9,
        )
        traj.name = self.name
        return traj

    @classmethod
    def from_evo(cls, traj: PoseTrajectory3D, name: str = "") -> Trajectory:
        stamps_ns = np.round(np.asarray(traj.timestamps) * 1e9).astype(np.int64)
        q_wxyz = np.asarray(traj.orientations_quat_wxyz)
        return cls(
            stamps_ns, np.asarray(traj.positions_xyz).copy(), q_wxyz[:, [1, 2, 3, 0]].copy(),
            name or getattr(traj, "name", "") or "",
        )


def as_trajectory(value: Any, name: str = "") -> Trajectory:
    """Convert the accepted trajectory forms (see the module docstring) to a ``Trajectory``."""
    if isinstance(value, Trajectory):
        return value
    if isinstance(value, PoseTrajectory3D):
        return Trajectory.from_evo(value, name)
    if isinstance(value, tuple) and len(value) == 3:
        stamps, p, q = value
        return Trajectory(np.asarray(stamps, dtype=np.int64), np.asarray(p, dtype=np.float64),
                          np.asarray(q, dtype=np.float64), name)
    if hasattr(value, "stamps_ns") and hasattr(value, "p_world_body"):
        return Trajectory(np.asarray(value.stamps_ns, dtype=np.int64),
                          np.asarray(value.p_world_body, dtype=np.float64),
                          np.asarray(value.q_world_body_xyzw, dtype=np.float64), name)
    raise EvaluationError(
        f"cannot read a trajectory from {type(value).__name__}; expected Trajectory, "
        "PoseTrajectory3D, (stamps_ns, p, q_xyzw) or a ground-truth series"
    )


def associate(
    est: Any, ref: Any, *, max_diff_s: float = 0.01, offset_s: float = 0.0
) -> tuple[PoseTrajectory3D, PoseTrajectory3D]:
    """Pair estimate and reference poses by nearest stamp (evo.core.sync).

    Returns (reference, estimate) evo trajectories of equal length.

    Raises:
        EvaluationError: no stamps match within ``max_diff_s``.
    """
    est_t, ref_t = as_trajectory(est, "estimate"), as_trajectory(ref, "reference")
    if len(est_t) == 0 or len(ref_t) == 0:
        raise EvaluationError(
            f"cannot associate: estimate has {len(est_t)} poses, reference {len(ref_t)}"
        )
    try:
        ref_e, est_e = sync.associate_trajectories(
            ref_t.to_evo(), est_t.to_evo(), max_diff=max_diff_s, offset_2=offset_s
        )
    except sync.SyncException as exc:
        raise EvaluationError(
            f"no estimate stamp within {max_diff_s} s of a reference stamp: {exc}"
        ) from None
    return ref_e, est_e


def _check_alignment(align: str) -> None:
    if align not in _ALIGNMENTS:
        raise EvaluationError(f"align = {align!r}, expected one of {_ALIGNMENTS!r}")


def _aligned(
    est_e: PoseTrajectory3D, ref_e: PoseTrajectory3D, align: str, min_pairs: int
) -> tuple[PoseTrajectory3D, np.ndarray, float]:
    """A copy of ``est_e`` aligned to ``ref_e``; returns it, T_ref_est (4, 4) and the scale."""
    if est_e.num_poses < min_pairs:
        raise EvaluationError(
            f"{est_e.num_poses} associated pose pair(s); align={align!r} needs >= {min_pairs}"
        )
    est_e = copy.deepcopy(est_e)
    T = np.eye(4)
    scale = 1.0
    if align != "none":
        from evo.core.geometry import GeometryException

        try:
            rotation, translation, scale = est_e.align(ref_e, correct_scale=align == "sim3")
        except GeometryException:
            # An estimate that never moves (e.g. zero-velocity updates at rest) fixes no
            # rotation or scale; for a single point the best SE(3)/Sim(3) fit moves it onto
            # the reference's centroid, whatever the rotation, and the ATE is the
            # reference's spread about it.
            rotation, scale = np.eye(3), 1.0
            translation = (ref_e.positions_xyz.mean(0) - est_e.positions_xyz.mean(0))
            est_e.transform(np.block([[rotation, translation[:, None]], [np.zeros((1, 3)), 1.0]]))
        T[:3, :3], T[:3, 3] = rotation, translation
    return est_e, T, float(scale)


def _stats(metric: metrics.PE, prefix: str) -> dict[str, float]:
    stats = metric.get_all_statistics()
    return {f"{key}_{prefix}": float(value) for key, value in stats.items() if key != "sse"}


def ate(
    est: Any, ref: Any, align: Alignment = "se3", *, max_diff_s: float = 0.01
) -> dict[str, Any]:
    """Absolute trajectory error of the translation after alignment (evo APE).

    Returns: ``rmse_m``, ``mean_m``, ``median_m``, ``std_m``, ``min_m``, ``max_m``, ``pairs``,
    ``scale`` (1 unless sim3), ``T_ref_est`` (4, 4) the alignment (rotation and translation).

    Raises:
        EvaluationError: bad alignment name, no stamps in common, or too few pairs.
    """
    _check_alignment(align)
    ref_e, est_e = associate(est, ref, max_diff_s=max_diff_s)
    est_aligned, T, scale = _aligned(est_e, ref_e, align, 3 if align != "none" else 1)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref_e, est_aligned))
    result: dict[str, Any] = _stats(ape, "m")
    result.update(pairs=int(ref_e.num_poses), scale=scale, T_ref_est=T, align=align)
    return result


def ate_rmse(est: Any, ref: Any, align: Alignment = "se3", *, max_diff_s: float = 0.01) -> float:
    """ATE RMSE in metres (see ``ate``)."""
    return float(ate(est, ref, align, max_diff_s=max_diff_s)["rmse_m"])


def rpe(
    est: Any,
    ref: Any,
    *,
    delta: float = 1,
    delta_unit: Literal["frames", "meters", "seconds"] = "frames",
    align: Alignment = "se3",
    max_diff_s: float = 0.01,
) -> dict[str, Any]:
    """Relative pose error of the translation part over ``delta`` (evo RPE).

    SE(3) alignment leaves RPE unchanged; Sim(3) scales the estimate's motion first.

    Returns: ``rmse_m``, ``mean_m``, ... and ``pairs`` (number of relative pairs).

    Raises:
        EvaluationError: bad arguments, no stamps in common, or fewer poses than delta + 1.
    """
    _check_alignment(align)
    units = {"frames": metrics.Unit.frames, "meters": metrics.Unit.meters,
             "seconds": metrics.Unit.seconds}
    if delta_unit not in units:
        raise EvaluationError(f"delta_unit = {delta_unit!r}, expected one of {list(units)!r}")
    ref_e, est_e = associate(est, ref, max_diff_s=max_diff_s)
    est_aligned, _, scale = _aligned(est_e, ref_e, align, 3 if align != "none" else 2)
    try:
        metric = metrics.RPE(
            metrics.PoseRelation.translation_part, delta=delta, delta_unit=units[delta_unit],
            all_pairs=False,
        )
        metric.process_data((ref_e, est_aligned))
    except metrics.MetricsException as exc:
        raise EvaluationError(
            f"RPE with delta {delta!r} {delta_unit} on {ref_e.num_poses} pairs: {exc}"
        ) from None
    result: dict[str, Any] = _stats(metric, "m")
    result.update(pairs=len(metric.error), scale=scale, delta=delta, delta_unit=delta_unit)
    return result


def rpe_trans(est: Any, ref: Any, *, delta: float = 1, align: Alignment = "se3",
              max_diff_s: float = 0.01) -> float:
    """RPE translation RMSE in metres over ``delta`` frames."""
    return float(rpe(est, ref, delta=delta, align=align, max_diff_s=max_diff_s)["rmse_m"])


def write_tum(path: str | Path, traj: Any) -> Path:
    """Write ``timestamp_s tx ty tz qx qy qz qw`` lines (evo's TUM writer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_interface.write_tum_trajectory_file(str(path), as_trajectory(traj).to_evo())
    return path


def read_tum(path: str | Path, name: str = "") -> Trajectory:
    """Read a TUM trajectory file (evo's reader).

    Raises:
        EvaluationError: the file is missing or not in TUM format.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"TUM trajectory file {str(path)!r} does not exist")
    try:
        traj = file_interface.read_tum_trajectory_file(str(path))
    except file_interface.FileInterfaceException as exc:
        raise EvaluationError(f"{str(path)!r} is not a TUM trajectory: {exc}") from None
    return Trajectory.from_evo(traj, name or path.stem)


def plot_trajectories(
    path: str | Path,
    estimates: Mapping[str, Any] | Sequence[Any] | Any,
    reference: Any | None = None,
    *,
    align: Alignment = "se3",
    max_diff_s: float = 0.01,
    title: str = "",
    axes: PlotAxes = "z_up",
) -> Path:
    """PNG with a top view and the height over time of the estimate(s) against the reference.

    ``axes`` says which way is up: "z_up" draws x-y and z; "camera" (x right, y down, z
    forward) draws x-z and -y. Each estimate is aligned to the reference first (``align``)
    when a reference is given.
    """
    from meetup_ros.evaluation import plots

    if axes == "z_up":
        def ground(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return p[:, 0], p[:, 1]

        def height(p: np.ndarray) -> np.ndarray:
            return p[:, 2]

        labels = ("x [m]", "y [m]", "z [m]", "top view", "height over time")
    elif axes == "camera":
        def ground(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return p[:, 0], p[:, 2]

        def height(p: np.ndarray) -> np.ndarray:
            return -p[:, 1]

        labels = ("x (right) [m]", "z (forward) [m]", "-y (up) [m]", "top view (x-z)",
                  "height (-y) over time")
    else:
        raise EvaluationError(f"axes = {axes!r}, expected 'z_up' or 'camera'")
    if isinstance(estimates, Mapping):
        named = dict(estimates)
    elif isinstance(estimates, Sequence) and not isinstance(estimates, tuple):
        named = {f"estimate {i}": e for i, e in enumerate(estimates)}
    else:
        named = {"estimate": estimates}
    ref_t = as_trajectory(reference, "ground truth") if reference is not None else None
    t0_ns = min(
        [int(as_trajectory(e).stamps_ns[0]) for e in named.values() if len(as_trajectory(e))]
        + ([int(ref_t.stamps_ns[0])] if ref_t is not None and len(ref_t) else [])
    )
    fig = plots.figure((11, 4.8))
    ax_xy, ax_z = fig.subplots(1, 2)
    if ref_t is not None:
        ax_xy.plot(*ground(ref_t.p_xyz), "k-", lw=2, label="ground truth")
        ax_z.plot((ref_t.stamps_ns - t0_ns) / 1e9, height(ref_t.p_xyz), "k-", lw=2,
                  label="ground truth")
    for label, est in named.items():
        est_t = as_trajectory(est, label)
        if ref_t is not None and align != "none":
            try:
                ref_e, est_e = associate(est_t, ref_t, max_diff_s=max_diff_s)
                est_e, T, scale = _aligned(est_e, ref_e, align, 3)
                # apply the alignment to every pose, not only the associated ones
                p = scale * est_t.p_xyz @ T[:3, :3].T + T[:3, 3]
                label = f"{label} ({align}-aligned)"
            except EvaluationError as exc:
                logger.warning("plotting %s unaligned: %s", label, exc)
                p = est_t.p_xyz
        else:
            p = est_t.p_xyz
        ax_xy.plot(*ground(p), "-", label=label)
        ax_z.plot((est_t.stamps_ns - t0_ns) / 1e9, height(p), "-", label=label)
    ax_xy.set_xlabel(labels[0])
    ax_xy.set_ylabel(labels[1])
    ax_xy.set_title(labels[3])
    ax_xy.axis("equal")
    ax_xy.grid(True, alpha=0.3)
    ax_z.set_xlabel("time [s]")
    ax_z.set_ylabel(labels[2])
    ax_z.set_title(labels[4])
    ax_z.grid(True, alpha=0.3)
    ax_z.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return plots.save(fig, path, dpi=100)
