"""Keyframe frontend: stereo (or monocular) frames in, keyframes with depth, pose, points out.

Keyframes are chosen by motion: with an odometry prior, when the camera moved more than
``keyframe_translation_m`` or turned more than ``keyframe_rotation_rad`` since the last
keyframe; without motion (or without a prior) the first frame and then every
``keyframe_every_n`` frames or ``keyframe_interval_s`` seconds.

Per keyframe (stereo): both images are rectified, reduced to the depth network's resolution,
and the two codes and the relative pose (initialised from the calibration) are optimised on
photometric error with the learned step (``solver="learned"``) or Gauss-Newton
(``solver="gauss_newton"``) / LM. Monocular: the two views are the previous keyframe and the
current frame, the pose initialised from the odometry prior (identity without one).
The depth of cam0 (the code's, on cam0's original pixel grid) is returned with NaN where
invalid, points are back-projected in cam0, and ``T_world_cam`` is the prior's pose when
present, else the previous keyframe's pose composed with the optimised relative pose (mono)
or left unchanged (stereo, no prior). A keyframe's depth is published only where the second
view confirms it (``FrontendConfig.min_two_view_support``); else it is all NaN.

Known limit: confirmed depth is still drawn toward the depth network's prior (~2 m indoors):
the same Middlebury pair with its baseline halved or doubled, i.e. the scene at half or twice
the distance, gave 0.65x / 1.41x the depth with the learned step (0.59x / 1.79x after 30
Gauss-Newton iterations) where 0.5x / 2x is right (a tester's measurement, 2026-12-05): the
code and its prior cannot move the whole map's scale that far.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from meetup_ros.slam import SlamError
from meetup_ros.slam.camera import PinholeCamera, StereoRectification
from meetup_ros.slam.data import crop_resize
from meetup_ros.slam.depth_code import DepthCodeModel, logit_to_depth
from meetup_ros.slam.learned import LearnedStep, check_depth_pairing, learned_solve
from meetup_ros.slam.solvers import (
    SolverResult,
    TwoViewProblem,
    gauss_newton,
    levenberg_marquardt,
    make_problem,
)

logger = logging.getLogger(__name__)

SOLVERS = ("learned", "gauss_newton", "levenberg_marquardt")
# Below this standard deviation (grey levels, at the network's resolution) an image is flat:
# the real pairs' are tens of levels.
MIN_IMAGE_SPREAD = 2.0


@dataclass(frozen=True)
class FrontendConfig:
    solver: str = "learned"
    iterations: int = 5
    # A keyframe's solve also stops once an iteration changes the error by less than this
    # share: stereo pairs tied to their calibration converge in 2-4 iterations. On the
    # bundled bag's 95 pairs (one thread): 3 iterations on most, 4-5 on its last 18, 3.4 on
    # average instead of 5, 40.5 instead of 49.6 ms p50 (47.7 instead of 59.7 p99), depth
    # AbsRel against SGBM 0.089 instead of 0.086 (held-out frames 0.077 instead of 0.076;
    # scripts/slam_keyframe_cost.py). 0: always ``iterations``.
    tolerance: float = 1e-3
    keyframe_translation_m: float = 0.10
    keyframe_rotation_rad: float = 0.10
    keyframe_every_n: int = 10
    keyframe_interval_s: float = 1.0
    # Predicted Laplace scale of the proximity error above which a pixel's depth is NaN.
    max_uncertainty: float = 0.1
    min_depth_m: float = 0.1
    max_depth_m: float = 20.0
    code_prior_weight: float = 1e-3
    pose_prior_weight: float = 10.0  # ties the pose to its initial value (calibration/odometry)
    num_threads: int = 1
    # The second view must explain this share of the photometric error that the same two
    # views leave with no depth (``TwoViewProblem.two_view_support``), over at least
    # ``min_texture`` of it (mean squared normalised intensity), or the keyframe's depth is
    # the single-image guess and is published as NaN. Real pairs: 0.65-0.71 (the bundled
    # bag), 0.88 (Middlebury), 0.68-0.75 (KITTI 06 without a prior); no information (noise,
    # a black or unrelated second camera): 0.06-0.18; a monocular pair without baseline, or
    # a first monocular keyframe: texture ~1e-4 or 0. 0 = publish every keyframe's depth.
    min_two_view_support: float = 0.3
    min_texture: float = 0.02
    # Stereo: the optimised pair may turn this far from the calibration (degrees). Real
    # pairs: at most 0.19 (the bundled bag's 95), 0.30 (Middlebury); the cameras swapped
    # 3.0 and 1.3, the same image twice 1.5: a pair its calibration does not fit, and whose
    # depth the photometric error alone would pass.
    max_stereo_rotation_deg: float = 1.0

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise SlamError(f"solver {self.solver!r} is not one of {SOLVERS}")
        if not 0.0 <= self.tolerance < 1.0:  # NaN fails too
            raise SlamError(f"tolerance {self.tolerance!r} must be in [0, 1) (a relative "
                            "change of the error)")
        if self.iterations < 1 or self.keyframe_every_n < 1:
            raise SlamError(
                f"iterations {self.iterations!r} and keyframe_every_n "
                f"{self.keyframe_every_n!r} must be >= 1"
            )
        if not (0.0 <= self.min_two_view_support < 1.0 and 0.0 <= self.min_texture < 1e3
                and 0.0 < self.max_stereo_rotation_deg <= 180.0):
            raise SlamError(
                f"min_two_view_support {self.min_two_view_support!r} must be in [0, 1), "
                f"min_texture {self.min_texture!r} in [0, 1000) and max_stereo_rotation_deg "
                f"{self.max_stereo_rotation_deg!r} in (0, 180]")


@dataclass
class Keyframe:
    stamp_ns: int
    depth_m: np.ndarray  # (H, W) float32, cam0's original pixel grid, NaN invalid
    T_world_cam: np.ndarray  # (4, 4)
    points_cam: np.ndarray  # (N, 3) float32, cam0 frame
    iterations: int
    photometric_error: float
    solver: str
    T_cam1_cam0_estimate: np.ndarray | None = None  # stereo: optimised pose of cam0 in cam1
    elapsed_s: float = 0.0
    # Where T_world_cam comes from: "prior" (the odometry given to process), "two_view"
    # (monocular: chained from the previous keyframe, up to scale) or "none" (stereo without
    # a prior: a pair says nothing of the motion, and T_world_cam is the last one known).
    pose_source: str = "prior"
    # TwoViewProblem.two_view_support; depth_m is all NaN when it is below the config's
    # minimum (``depth_supported`` False), the pose is kept
    two_view_support: float = float("nan")
    texture: float = float("nan")
    depth_supported: bool = True
    unsupported_reason: str = ""  # why depth_supported is False


def _rel_motion(T_a: np.ndarray, T_b: np.ndarray) -> tuple[float, float]:
    T = np.linalg.inv(T_a) @ T_b
    angle = float(np.arccos(np.clip((np.trace(T[:3, :3]) - 1) / 2, -1.0, 1.0)))
    return float(np.linalg.norm(T[:3, 3])), angle


def _increment_matrix(problem: TwoViewProblem, x: torch.Tensor) -> np.ndarray:
    R, t = problem.pose(x)
    T = np.eye(4)
    T[:3, :3] = R.detach().numpy()
    T[:3, 3] = t.detach().numpy()
    return T


def solve(problem: TwoViewProblem, cfg: FrontendConfig, step: LearnedStep | None,
          ) -> SolverResult:
    """Up to ``cfg.iterations`` of ``cfg.solver`` on ``problem``, fewer once an iteration
    changes the error by less than ``cfg.tolerance`` (relative)."""
    if cfg.solver == "learned":
        if step is None:
            raise SlamError("solver 'learned' needs optimizer weights; got None")
        return learned_solve(step, problem, iterations=cfg.iterations, tol=cfg.tolerance)
    if cfg.solver == "gauss_newton":
        return gauss_newton(problem, iterations=cfg.iterations, tol=cfg.tolerance)
    return levenberg_marquardt(problem, iterations=cfg.iterations, tol=cfg.tolerance)


def warm_up_solver(depth_model: DepthCodeModel, step: LearnedStep | None,
                   cfg: FrontendConfig, K_small: np.ndarray | None = None) -> None:
    """Solve one problem on noise images at the network's resolution and decode its depth.

    torch's first calls cost more: a frontend built cold took 68 ms, 30 ms once this had run,
    and its first keyframe would otherwise carry the difference (and the node's p99). Needs
    no camera: ``K_small`` None takes a nominal pinhole on the network grid.
    """
    h, w = depth_model.cfg.height, depth_model.cfg.width
    if K_small is None:
        K_small = np.array([[w, 0.0, w / 2], [0.0, w, h / 2], [0.0, 0.0, 1.0]])
    noise = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
    problem = make_problem(depth_model.net, noise, noise, K_small, np.eye(4),
                           cfg.code_prior_weight, pose_prior_weight=cfg.pose_prior_weight)
    x = solve(problem, cfg, step).x
    with torch.no_grad():
        logit_to_depth(problem.view_a.prior_logit + problem.split(x)[0] @ problem.view_a.basis,
                       problem.average_depth_m)


def load_networks(depth_weights: str | Path, optimizer_weights: str | Path | None,
                  solver: str) -> tuple[DepthCodeModel, LearnedStep | None]:
    """The depth network, and the learned step only for ``solver`` "learned": a classical
    solver never uses it, yet slam_node with ``solver: gauss_newton`` loaded it (a missing or
    stale file stopped the node) and listed it among its weights (a tester's).

    Raises:
        SlamError: a weights file is missing or corrupt.
    """
    model = DepthCodeModel.from_weights(depth_weights)
    if solver != "learned" or not optimizer_weights:
        return model, None
    step = LearnedStep.from_weights(optimizer_weights)
    # a step trained with another depth network ran without a word: warned, not refused;
    # the shipped pair records no digest (one info line)
    check_depth_pairing(model, depth_weights, optimizer_weights, step.loaded_metadata)
    return model, step


class SlamFrontend:
    """Depth-code SLAM frontend (see module docstring); ROS-free, numpy in and out."""

    def __init__(
        self, depth_model: DepthCodeModel, step: LearnedStep | None, camera0: Any,
        camera1: Any | None = None, T_cam0_cam1: np.ndarray | None = None,
        cfg: FrontendConfig | None = None, *, warm_up: bool = True,
    ) -> None:
        """``warm_up`` False: the caller ran :func:`warm_up_solver` already (slam_node does at
        start-up, so that the camera_info that builds its frontend mid-stream costs no solve)."""
        self.cfg = cfg or FrontendConfig()
        if self.cfg.solver == "learned" and step is None:
            raise SlamError("solver 'learned' needs optimizer weights; got None")
        self.model = depth_model
        self.step = step
        self.camera0 = PinholeCamera.from_info(camera0)
        self.stereo = camera1 is not None
        h, w = depth_model.cfg.height, depth_model.cfg.width
        h0, w0 = self.camera0.height, self.camera0.width
        if h0 < h or w0 < w:  # a tester's 1-pixel-wide camera got depth and a pose
            raise SlamError(f"camera of {w0} x {h0} pixels is smaller than the depth "
                            f"network's {w} x {h} grid: too few pixels for depth")
        self.rect: StereoRectification | None = None
        if camera1 is not None:
            if T_cam0_cam1 is None:
                raise SlamError("a stereo frontend needs T_cam0_cam1 (4, 4); got None")
            self.camera1 = PinholeCamera.from_info(camera1)
            self.T_cam0_cam1 = np.asarray(T_cam0_cam1, dtype=np.float64)
            self.rect = StereoRectification.create(self.camera0, self.camera1, self.T_cam0_cam1)
            K_full = self.rect.K_rect
            self.T_r1_r0 = np.linalg.inv(self.rect.T_rect0_rect1(self.T_cam0_cam1))
            self.R_cam1_cam0 = np.linalg.inv(self.T_cam0_cam1)[:3, :3]  # the calibration's
        else:
            # Monocular: undistort cam0 into a pinhole image with the same K.
            K_full = self.camera0.K
            self.map0 = cv2.initUndistortRectifyMap(
                self.camera0.K, self.camera0.dist, np.eye(3), K_full,
                (self.camera0.width, self.camera0.height), cv2.CV_32FC1)
        self.K_full = K_full
        dummy = np.zeros((self.camera0.height, self.camera0.width), np.uint8)
        _, K_small = crop_resize(dummy, K_full, h, w)
        assert K_small is not None
        self.K_small = K_small
        self._crop = self._crop_box()
        self._inside_a, self._inside_b = self._inside_small()
        self.reset("start")
        # The per-camera lookup tables (undistorted rays, original cam0 pixels in the rectified
        # frame) now, not on the first keyframe, whose latency they added to (8 ms).
        self.camera0.normalized_rays()
        if self.rect is not None:
            self.rect.rectified_depth_to_cam0(np.zeros((h0, w0), np.float32))
        if warm_up:
            warm_up_solver(self.model, self.step, self.cfg, self.K_small)

    @classmethod
    def from_weights(
        cls, depth_weights: str | Path, optimizer_weights: str | Path | None, camera0: Any,
        camera1: Any | None = None, T_cam0_cam1: np.ndarray | None = None, **cfg: Any,
    ) -> SlamFrontend:
        """Load the weights the solver uses (:func:`load_networks`); ``cfg`` keys are
        FrontendConfig fields.

        Raises:
            SlamError: a weights file is missing/corrupt, or a cfg key is unknown.
        """
        known = {f.name for f in fields(FrontendConfig)}
        unknown = set(cfg) - known
        if unknown:
            raise SlamError(
                f"unknown frontend options {sorted(unknown)!r}; expected {sorted(known)}"
            )
        config = FrontendConfig(**cfg)
        model, step = load_networks(depth_weights, optimizer_weights, config.solver)
        return cls(model, step, camera0, camera1, T_cam0_cam1, config)

    def reset(self, reason: str = "") -> None:
        """Forget keyframes (e.g. when time jumps back)."""
        if reason and reason != "start":
            logger.info("SLAM frontend reset: %s", reason)
        self._last_kf_ns: int | None = None
        self._last_kf_prior: np.ndarray | None = None
        self._last_kf_small: np.ndarray | None = None
        self._frames_since_kf = 0
        self.T_world_cam = np.eye(4)
        # Whether T_world_cam is the odometry's (metric, its frame): a two-view step (of
        # unknown scale) chained onto it is neither (a tester's monocular poses after the
        # odometry stopped), so such a keyframe has no pose until the next prior or reset.
        self._anchored_in_prior = False

    # ---- keyframe selection -----------------------------------------------------------------

    def _is_keyframe(self, stamp_ns: int, prior: np.ndarray | None) -> bool:
        c = self.cfg
        if self._last_kf_ns is None:
            return True
        if prior is not None and self._last_kf_prior is not None:
            dist, angle = _rel_motion(self._last_kf_prior, prior)
            if dist > c.keyframe_translation_m or angle > c.keyframe_rotation_rad:
                return True
        if self._frames_since_kf + 1 >= c.keyframe_every_n:
            return True
        return (stamp_ns - self._last_kf_ns) * 1e-9 >= c.keyframe_interval_s

    # ---- image geometry ---------------------------------------------------------------------

    def _crop_box(self) -> tuple[int, int, int, int]:
        h0, w0 = self.camera0.height, self.camera0.width
        aspect = self.model.cfg.width / self.model.cfg.height
        if w0 / h0 > aspect:
            cw, ch = round(h0 * aspect), h0
        else:
            cw, ch = w0, round(w0 / aspect)
        return (w0 - cw) // 2, (h0 - ch) // 2, cw, ch

    def _inside_small(self) -> tuple[torch.Tensor, torch.Tensor]:
        """1 where a network-grid pixel shows the sensor, 0 on the black border that
        rectification or undistortion leaves (and 1 pixel in): view A's (h*w,), view B's
        (h, w) (cam1's, or cam0's again for a monocular pair)."""
        h, w = self.model.cfg.height, self.model.cfg.width
        white0 = np.full((self.camera0.height, self.camera0.width), 255, np.uint8)
        if self.rect is not None:
            white1 = np.full((self.camera1.height, self.camera1.width), 255, np.uint8)
            full0, full1 = self.rect.rectify(white0, white1)
        else:
            full0 = full1 = cv2.remap(white0, self.map0[0], self.map0[1], cv2.INTER_LINEAR)
        masks = []
        for full in (full0, full1):
            small, _ = crop_resize(full, None, h, w)
            inside = cv2.erode((small >= 250).astype(np.uint8), np.ones((3, 3), np.uint8))
            masks.append(torch.from_numpy(inside.astype(np.float32)))
        return masks[0].reshape(-1), masks[1]

    def _small_to_full(self, small: np.ndarray) -> np.ndarray:
        """Map (h, w) values on the network grid to the full (rectified/undistorted) grid."""
        x0, y0, cw, ch = self._crop
        full = np.full((self.camera0.height, self.camera0.width), np.nan, np.float32)
        full[y0:y0 + ch, x0:x0 + cw] = cv2.resize(small, (cw, ch),
                                                  interpolation=cv2.INTER_LINEAR)
        return full

    def _check(self, name: str, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        shape = (self.camera0.height, self.camera0.width)
        if image.dtype != np.uint8 or image.shape != shape:
            raise SlamError(
                f"{name} has dtype {image.dtype} and shape {image.shape!r}; expected uint8 "
                f"{shape!r}"
            )
        return image

    # ---- processing ---------------------------------------------------------------------------

    def _solve(self, problem: TwoViewProblem) -> SolverResult:
        return solve(problem, self.cfg, self.step)

    def process(
        self, stamp_ns: int, image0: np.ndarray, image1: np.ndarray | None = None,
        T_odom_cam_prior: np.ndarray | None = None,
    ) -> Keyframe | None:
        """Consume one frame (pair); return a Keyframe when this frame becomes one.

        Raises:
            SlamError: images of the wrong size/type, or a stereo frontend given no image1.
        """
        start = time.perf_counter()
        torch.set_num_threads(self.cfg.num_threads)
        image0 = self._check("image0", image0)
        if self.stereo and image1 is None:
            raise SlamError("stereo frontend got image1=None; expected the cam1 image")
        if self._last_kf_ns is not None and stamp_ns <= self._last_kf_ns:
            self.reset(f"stamp {stamp_ns} ns not after last keyframe {self._last_kf_ns} ns")
        prior = None if T_odom_cam_prior is None else np.asarray(T_odom_cam_prior, np.float64)
        if not self._is_keyframe(stamp_ns, prior):
            self._frames_since_kf += 1
            return None
        h, w = self.model.cfg.height, self.model.cfg.width
        T_cam1_cam0_est = None
        if self.rect is not None:
            assert image1 is not None
            r0, r1 = self.rect.rectify(image0, self._check("image1", image1))
            small0, _ = crop_resize(r0, None, h, w)
            small1, _ = crop_resize(r1, None, h, w)
            small_b = small1
            problem = make_problem(self.model.net, small0, small1, self.K_small, self.T_r1_r0,
                                   self.cfg.code_prior_weight,
                                   pose_prior_weight=self.cfg.pose_prior_weight)
            result = self._solve(problem)
            T_r1_r0_est = _increment_matrix(problem, result.x)
            T_cam1_cam0_est = self.rect.R1.T @ T_r1_r0_est[:3, :3] @ self.rect.R0
            T_est = np.eye(4)
            T_est[:3, :3] = T_cam1_cam0_est
            T_est[:3, 3] = self.rect.R1.T @ T_r1_r0_est[:3, 3]
            T_cam1_cam0_est = T_est
            T_world_cam = prior if prior is not None else self.T_world_cam
            pose_source = "prior" if prior is not None else "none"
        else:
            und = cv2.remap(image0, self.map0[0], self.map0[1], cv2.INTER_LINEAR)
            small0, _ = crop_resize(und, None, h, w)
            prev = self._last_kf_small if self._last_kf_small is not None else small0
            small_b = prev
            T_cur_prev0 = np.eye(4)
            if prior is not None and self._last_kf_prior is not None:
                T_cur_prev0 = np.linalg.inv(prior) @ self._last_kf_prior
            # A = current frame (its depth is published), B = previous keyframe.
            problem = make_problem(self.model.net, small0, prev, self.K_small,
                                   np.linalg.inv(T_cur_prev0), self.cfg.code_prior_weight,
                                   optimize_pose=self._last_kf_small is not None,
                                   pose_prior_weight=self.cfg.pose_prior_weight
                                   if prior is not None else 0.0)
            result = self._solve(problem)
            T_prev_cur = _increment_matrix(problem, result.x)
            if prior is not None:
                T_world_cam, pose_source = prior, "prior"
            elif self._anchored_in_prior:
                T_world_cam, pose_source = self.T_world_cam, "none"
            else:
                T_world_cam, pose_source = self.T_world_cam @ T_prev_cur, "two_view"
            self._last_kf_small = small0
        depth_full = self._depth_full(problem, result.x)
        support, _, texture = problem.two_view_support(result.x, self._inside_a,
                                                       self._inside_b)
        # problem's images are normalised to unit spread: a flat one's rounding noise becomes
        # "texture" there, so the raw spread is checked on the images as they came
        flat = min(float(small0.std()), float(small_b.std()))
        reason = self._unsupported(support, texture, T_cam1_cam0_est, flat)
        if reason:
            depth_full[:] = np.nan
        points = self.camera0.backproject(depth_full)
        self.T_world_cam = T_world_cam
        self._anchored_in_prior = self._anchored_in_prior or prior is not None
        self._last_kf_ns = stamp_ns
        self._last_kf_prior = prior
        self._frames_since_kf = 0
        return Keyframe(
            stamp_ns=int(stamp_ns), depth_m=depth_full, T_world_cam=T_world_cam.copy(),
            points_cam=points, iterations=result.iterations,
            photometric_error=result.errors[-1], solver=result.name,
            T_cam1_cam0_estimate=T_cam1_cam0_est, elapsed_s=time.perf_counter() - start,
            pose_source=pose_source, two_view_support=support, texture=texture,
            depth_supported=not reason, unsupported_reason=reason,
        )

    def _unsupported(self, support: float, texture: float, T_cam1_cam0_est: np.ndarray | None,
                     spread: float) -> str:
        """Why the second view does not confirm the keyframe's depth ("" when it does)."""
        c = self.cfg
        if c.min_two_view_support <= 0.0:
            return ""
        if spread < MIN_IMAGE_SPREAD:
            return (f"an image of the pair is flat (intensity spread {spread:.2g} < "
                    f"{MIN_IMAGE_SPREAD:g} grey levels): black, saturated or covered")
        if T_cam1_cam0_est is not None:
            cos = (np.trace(T_cam1_cam0_est[:3, :3].T @ self.R_cam1_cam0) - 1.0) / 2.0
            turn = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
            if turn > c.max_stereo_rotation_deg:
                return (f"the stereo pair fits its calibration only turned by {turn:.2f} deg "
                        f"(> max_stereo_rotation_deg {c.max_stereo_rotation_deg:g}): cameras "
                        "swapped, the same image twice, another camera's calibration, or a "
                        "scene nearer than the depth network reaches?")
        if not texture >= c.min_texture:
            return (f"the two views hardly differ ({texture:.2g} < min_texture "
                    f"{c.min_texture:g}): no texture, no baseline (a first monocular "
                    "keyframe, a camera at rest), or a scene too far for the baseline")
        if not support >= c.min_two_view_support:
            return (f"the depth explains {support:.2f} of the two views' disagreement "
                    f"(< min_two_view_support {c.min_two_view_support:g}): the second view "
                    "does not confirm it (a dead or unrelated camera, noise, a pose prior "
                    "that does not fit the images)")
        return ""

    def _depth_full(self, problem: TwoViewProblem, x: torch.Tensor) -> np.ndarray:
        """Depth of view A on cam0's original pixel grid, NaN where invalid or uncertain."""
        code_a = problem.split(x)[0]
        view = problem.view_a
        with torch.no_grad():
            logit = view.prior_logit + code_a @ view.basis
            depth = logit_to_depth(logit, problem.average_depth_m)
        h, w = self.model.cfg.height, self.model.cfg.width
        small = depth.reshape(h, w).numpy().astype(np.float32)
        if view.log_b is not None:
            uncertain = (torch.exp(view.log_b) > self.cfg.max_uncertainty).reshape(h, w)
            small[uncertain.numpy()] = np.nan
        full = self._small_to_full(small)
        if self.rect is not None:
            out = self.rect.rectified_depth_to_cam0(full)
        else:
            # Undistorted grid -> original grid: sample at each original pixel's undistorted
            # position (same K).
            xy = self.camera0.normalized_rays()
            u = (xy[..., 0] * self.K_full[0, 0] + self.K_full[0, 2]).astype(np.float32)
            v = (xy[..., 1] * self.K_full[1, 1] + self.K_full[1, 2]).astype(np.float32)
            out = cv2.remap(full, u, v, cv2.INTER_NEAREST, borderValue=float("nan"))
        bad = ~np.isfinite(out) | (out < self.cfg.min_depth_m) | (out > self.cfg.max_depth_m)
        out[bad] = np.nan
        return out.astype(np.float32)
