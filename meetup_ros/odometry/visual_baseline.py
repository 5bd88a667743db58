"""Vision in motion: a learned image branch beside a classical monocular baseline.

Sequences (real, no IMU; ``../shared/data``): KITTI 06 frames 0-50 (straight, 60 m), the
KITTI snippet with a 98 deg turn (52 m), TUM RGB-D fr3/long_office_household at 1 Hz (17
frames, 4.7 m, 108 deg). Both methods estimate camera poses frame to frame; monocular scale is
unknown, so each trajectory is scored by evo's ATE after Sim(3) alignment.

- Classical baseline (:func:`classical_vo`): ORB features, brute-force Hamming matches with
  cross check, ``cv2.findEssentialMat`` (RANSAC) and ``cv2.recoverPose``; every step has unit
  length (the scale comes from the alignment only).
- Learned image branch (:class:`FlowScaleNet`): a small CNN over the dense optical flow of the
  frame pair (OpenCV Farneback) divided by the focal length, plus the normalised pixel
  coordinates, resampled to a fixed grid, regressing the step length (log, relative to the
  sequence's mean), which monocular geometry cannot give; rotation and direction come from
  the same essential-matrix geometry as the baseline. It is trained leave-one-out: for each
  sequence, on the other two only (both directions of every pair), so no scored sequence is
  ever trained on. A first version regressed the whole pose from the flow and lost to the
  baseline by 3-10x (two training sequences are far too few to learn geometry).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation, Slerp
from torch import nn

from meetup_ros.evaluation import datasets
from meetup_ros.evaluation import trajectory as traj_metrics
from meetup_ros.evaluation.datasets import KITTI06, KITTI_TURN, TUM_OFFICE
from meetup_ros.evaluation.jsonsafe import finite_json
from meetup_ros.evaluation.trajectory import Trajectory

logger = logging.getLogger(__name__)

# TUM's published fr3 intrinsics (the images are already undistorted); not in the files
TUM_FR3_K = np.array([[535.4, 0.0, 320.1], [0.0, 539.2, 247.6], [0.0, 0.0, 1.0]])
FLOW_GRID_HW = (24, 64)


@dataclass(frozen=True)
class MonoSequence:
    """A monocular sequence with ground-truth camera poses at its frames."""

    name: str
    images: list[np.ndarray]  # uint8 (H, W)
    K: np.ndarray  # (3, 3)
    stamps_ns: np.ndarray  # (N,)
    T_world_cam: np.ndarray  # (N, 4, 4)
    # the world frame's axes, for the plots: KITTI's is its first camera frame (x right,
    # y down, z forward), TUM's mocap frame has z up
    axes: traj_metrics.PlotAxes = "z_up"

    def groundtruth(self) -> Trajectory:
        return _trajectory(self.stamps_ns, self.T_world_cam, "ground truth")


def _trajectory(stamps_ns: np.ndarray, T: np.ndarray, name: str) -> Trajectory:
    return Trajectory(np.asarray(stamps_ns, dtype=np.int64), T[:, :3, 3].copy(),
                      Rotation.from_matrix(T[:, :3, :3]).as_quat(), name)


def load_kitti(folder: Path, name: str) -> MonoSequence:
    """KITTI odometry snippet: ``image_l/*.png``, ``poses.txt`` (3x4 T_w_cam0), ``calib.txt``.

    Raises:
        DatasetError: a file is missing or malformed (:func:`datasets.read_kitti`), or an
            image cannot be read.
    """
    kitti = datasets.read_kitti(folder)
    # KITTI frames are about 0.1036 s apart; only the stamps' spacing matters here
    stamps = (np.arange(len(kitti.T_world_cam)) * 103_600_000).astype(np.int64)
    images = [datasets.read_gray_image(p) for p in kitti.image_paths]
    return MonoSequence(name, images, kitti.K, stamps, kitti.T_world_cam, "camera")


def load_tum(folder: Path, name: str) -> MonoSequence:
    """TUM RGB-D frames ``assets/freiburg_sequence/<stamp>.png`` + 100 Hz mocap ground truth.

    Ground truth is interpolated at each frame. A frame may lie up to
    :data:`datasets.TUM_GT_TOLERANCE_S` outside the ground truth's span and then takes its end
    pose (the first frame is 0.067 s before the ground truth starts); further out is refused.

    Raises:
        DatasetError: a file is missing or malformed, or a frame is not covered
            (:func:`datasets.read_tum`), or an image cannot be read.
    """
    tum = datasets.read_tum(folder)
    gt = tum.groundtruth
    stamps_s = tum.frames.stamps_s
    t = np.clip(stamps_s, gt.stamps_s[0], gt.stamps_s[-1])
    slerp = Slerp(gt.stamps_s, Rotation.from_quat(gt.q_xyzw))
    T = np.tile(np.eye(4), (len(stamps_s), 1, 1))
    T[:, :3, :3] = slerp(t).as_matrix()
    T[:, :3, 3] = np.stack([np.interp(t, gt.stamps_s, gt.p_xyz[:, i]) for i in range(3)], 1)
    images = [datasets.read_gray_image(p) for p in tum.frames.paths]  # RGB, read as grey
    return MonoSequence(name, images, TUM_FR3_K.copy(), np.round(stamps_s * 1e9).astype(np.int64),
                        T, "z_up")


def load_sequences(data_root: Path) -> list[MonoSequence]:
    """The three sequences; every missing folder is named at once (DatasetError)."""
    kitti06, turn, tum = datasets.mono_sequence_folders(data_root)
    return [
        load_kitti(kitti06, "kitti06_frames000-050"),
        load_kitti(turn, "kitti_sequence_2_turn"),
        load_tum(tum, "tum_fr3_long_office_household_17"),
    ]


# -- classical baseline -----------------------------------------------------------------------
def relative_pose_essential(image0: np.ndarray, image1: np.ndarray, K: np.ndarray
                            ) -> np.ndarray | None:
    """T_cam0_cam1 (4, 4) with unit translation from ORB + essential matrix, or None."""
    orb = cv2.ORB_create(3000)  # type: ignore[attr-defined]  # missing from cv2's stubs
    k0, d0 = orb.detectAndCompute(image0, None)
    k1, d1 = orb.detectAndCompute(image1, None)
    if d0 is None or d1 is None or len(k0) < 8 or len(k1) < 8:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d0, d1)
    if len(matches) < 8:
        return None
    p0 = np.array([k0[m.queryIdx].pt for m in matches], dtype=np.float64)
    p1 = np.array([k1[m.trainIdx].pt for m in matches], dtype=np.float64)
    E, inliers = cv2.findEssentialMat(p0, p1, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    if E is None or E.shape != (3, 3):
        return None
    _, R, t, _ = cv2.recoverPose(E, p0, p1, K, mask=inliers)
    # recoverPose gives x1 = R x0 + t (points from cam0 to cam1); invert for T_cam0_cam1
    T_c1_c0 = np.eye(4)
    T_c1_c0[:3, :3], T_c1_c0[:3, 3] = R, t.ravel()
    return np.linalg.inv(T_c1_c0)


def classical_vo(seq: MonoSequence) -> Trajectory:
    """Chain the essential-matrix relative poses (unit steps); a failed pair repeats the last."""
    T = [np.eye(4)]
    last = np.eye(4)
    for a, b in zip(seq.images[:-1], seq.images[1:], strict=True):
        rel = relative_pose_essential(a, b, seq.K)
        if rel is None:
            logger.warning("%s: essential matrix failed; repeating the last motion", seq.name)
            rel = last
        last = rel
        T.append(T[-1] @ rel)
    return _trajectory(seq.stamps_ns, np.stack(T), "classical (ORB + essential matrix)")


# -- learned image branch (optical flow CNN) --------------------------------------------------
def flow_input(image0: np.ndarray, image1: np.ndarray, K: np.ndarray,
               R_cam1_cam0: np.ndarray | None = None) -> np.ndarray:
    """(4, Hg, Wg) float32: Farneback flow / focal length and normalised pixel coordinates.

    With ``R_cam1_cam0`` (points of cam0 into cam1) the flow a pure rotation would cause is
    removed first, leaving the part that depends on translation over depth.
    """
    scale = 320.0 / image0.shape[1]  # flow at 320 px width: fast and enough for the grid
    size = (320, max(8, round(image0.shape[0] * scale)))
    a = cv2.resize(image0, size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(image1, size, interpolation=cv2.INTER_AREA)
    flow = cv2.calcOpticalFlowFarneback(
        a, b, None, 0.5, 4, 21, 3, 7, 1.5, 0  # type: ignore[call-overload]  # None = allocate
    )
    f = K[0, 0] * scale
    cx, cy = K[0, 2] * scale, K[1, 2] * scale
    h, w = FLOW_GRID_HW
    flow_grid = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / f
    xs = (np.linspace(0, size[0] - 1, w) - cx) / f
    ys = (np.linspace(0, size[1] - 1, h) - cy) / f
    gx, gy = np.meshgrid(xs, ys)
    if R_cam1_cam0 is not None:
        rays = np.stack([gx, gy, np.ones_like(gx)], axis=-1) @ R_cam1_cam0.T
        z = np.where(np.abs(rays[..., 2]) > 1e-6, rays[..., 2], 1e-6)
        flow_grid = flow_grid - np.stack([rays[..., 0] / z - gx, rays[..., 1] / z - gy], -1)
    return np.concatenate([flow_grid.transpose(2, 0, 1) * 10.0, gx[None], gy[None]]
                          ).astype(np.float32)


def _rotation(rel: np.ndarray | None) -> np.ndarray | None:
    """R_cam1_cam0 of a T_cam0_cam1."""
    return None if rel is None else rel[:3, :3].T


class FlowScaleNet(nn.Module):
    """Small CNN: (B, 4, 24, 64) flow grid -> log step length (B,), relative to the sequence."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(4, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((2, 4)),
            nn.Flatten(), nn.Linear(2 * c * 8, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]


def _pairs(seq: MonoSequence) -> tuple[np.ndarray, np.ndarray]:
    """Flow inputs of both directions (2(N-1), 4, h, w) and their log step lengths minus the
    sequence's mean (2(N-1),): monocular scale is relative, so is the target."""
    xs, ys = [], []
    for i in range(len(seq.images) - 1):
        step_m = float(np.linalg.norm(seq.T_world_cam[i + 1, :3, 3] - seq.T_world_cam[i, :3, 3]))
        for a, b in ((i, i + 1), (i + 1, i)):
            rel = relative_pose_essential(seq.images[a], seq.images[b], seq.K)
            xs.append(flow_input(seq.images[a], seq.images[b], seq.K, _rotation(rel)))
            ys.append(np.log(max(step_m, 1e-3)))
    y = np.asarray(ys, dtype=np.float32)
    return np.stack(xs), y - y.mean()


def train_flow_net(train: list[tuple[np.ndarray, np.ndarray]], *, steps: int = 400,
                   seed: int = 0) -> FlowScaleNet:
    """Fit :class:`FlowScaleNet` with an L1 loss on the relative log step length."""
    torch.manual_seed(seed)
    x = torch.from_numpy(np.concatenate([p[0] for p in train]))
    y = torch.from_numpy(np.concatenate([p[1] for p in train]))
    # per-sequence weights so the short TUM sequence counts as much as a KITTI one
    w = torch.cat([torch.full((len(p[0]),), 1.0 / len(p[0])) for p in train])
    w = w / w.mean()
    model = FlowScaleNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,), generator=gen)
        loss = ((model(x[idx]) - y[idx]).abs() * w[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def learned_vo(model: FlowScaleNet, seq: MonoSequence) -> Trajectory:
    """Essential-matrix rotation and direction, step length from the flow CNN."""
    T = [np.eye(4)]
    last = np.eye(4)
    with torch.no_grad():
        for a, b in zip(seq.images[:-1], seq.images[1:], strict=True):
            rel = relative_pose_essential(a, b, seq.K)
            if rel is None:
                rel = last
            x = flow_input(a, b, seq.K, _rotation(rel))
            log_step = float(model(torch.from_numpy(x)[None])[0])
            rel = rel.copy()
            norm = max(float(np.linalg.norm(rel[:3, 3])), 1e-9)
            rel[:3, 3] = rel[:3, 3] / norm * float(np.exp(log_step))
            last = rel
            T.append(T[-1] @ rel)
    return _trajectory(seq.stamps_ns, np.stack(T), "learned scale (flow CNN) + geometry")


def write_sequence_outputs(out_dir: Path, seq: MonoSequence,
                           estimates: dict[str, Trajectory]) -> None:
    """``<name>_<estimate>.tum``, ``<name>_groundtruth.tum`` and the plot ``<name>.png``,
    drawn in the sequence's axes (a KITTI top view is x-z: its y points down)."""
    ref = seq.groundtruth()
    for label, est in estimates.items():
        traj_metrics.write_tum(out_dir / f"{seq.name}_{label}.tum", est)
    traj_metrics.write_tum(out_dir / f"{seq.name}_groundtruth.tum", ref)
    traj_metrics.plot_trajectories(out_dir / f"{seq.name}.png", estimates, ref, align="sim3",
                                   title=seq.name, axes=seq.axes)


def evaluate_visual(data_root: Path, out_dir: Path | None) -> dict[str, Any]:
    """ATE (Sim(3)) of the learned branch and the classical baseline on each sequence.

    The learned branch (:class:`FlowScaleNet`) is trained here, leave-one-out, in about a
    minute; no weights file is read (the VIO weights never saw moving images).

    Raises:
        DatasetError: a sequence folder or file is missing or malformed (names it).
    """
    cv2.setRNGSeed(0)  # RANSAC draws from OpenCV's global RNG: fixed for repeatable figures
    t0 = time.perf_counter()
    seqs = load_sequences(Path(data_root))
    pairs = {s.name: _pairs(s) for s in seqs}
    report: dict[str, Any] = {"alignment": "sim3", "sequences": {}}
    for seq in seqs:
        ref = seq.groundtruth()
        base = classical_vo(seq)
        model = train_flow_net([pairs[o.name] for o in seqs if o.name != seq.name])
        learned = learned_vo(model, seq)
        entry = {
            "frames": len(seq.images),
            "ate_rmse_m_visual": traj_metrics.ate_rmse(learned, ref, "sim3"),
            "ate_rmse_m_visual_baseline": traj_metrics.ate_rmse(base, ref, "sim3"),
            "trained_on": [o.name for o in seqs if o.name != seq.name],
            "path_length_m": float(np.linalg.norm(np.diff(ref.p_xyz, axis=0), axis=1).sum()),
        }
        report["sequences"][seq.name] = entry
        logger.info("%s: learned %.3f m, classical %.3f m (ATE, sim3)", seq.name,
                    entry["ate_rmse_m_visual"], entry["ate_rmse_m_visual_baseline"])
        if out_dir is not None:
            write_sequence_outputs(out_dir, seq, {"learned": learned, "classical": base})
    report["ate_rmse_m_visual"] = {k: v["ate_rmse_m_visual"]
                                   for k, v in report["sequences"].items()}
    report["ate_rmse_m_visual_baseline"] = {k: v["ate_rmse_m_visual_baseline"]
                                            for k, v in report["sequences"].items()}
    report["wall_s"] = time.perf_counter() - t0
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "visual_report.json").write_text(json.dumps(finite_json(report), indent=2))
    return report


__all__ = [
    "KITTI06", "KITTI_TURN", "TUM_OFFICE", "classical_vo", "evaluate_visual", "learned_vo",
    "load_sequences", "write_sequence_outputs",
]
