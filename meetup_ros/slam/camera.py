"""Pinhole + radial-tangential camera model and stereo rectification from EuRoC calibration.

Frames: ``T_cam0_cam1`` maps points in cam1 coordinates to cam0 coordinates (the pose of cam1
in cam0). Pixels are (u, v) = (column, row); intrinsics K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cv2
import numpy as np

from meetup_ros.slam import SlamError

_K_NAMES = (" (fx)", " (skew)", " (cx)", "", " (fy)", " (cy)", "", "", "")


def check_intrinsics(K: Any, dist: Any, width: int, height: int,
                     distortion_model: str = "plumb_bob") -> None:
    """Refuse intrinsics that no pinhole camera of this size has, naming the bad entry.

    A NaN cx passed a check of fx and fy alone, and every depth image then had no valid pixel.
    The principal point must lie in the image (a calibrated camera's is near its centre). The
    camera models radtan k1 k2 p1 p2 only (:class:`PinholeCamera`): another model, or a k3 it
    would drop, would undistort every pixel wrongly without a word.

    Raises:
        SlamError: a non-positive size; K not 9 finite values of the form
            [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0 and (cx, cy) in the
            image (no skew); a model other than plumb_bob (or unset); fewer than 4 coefficients, a
            non-finite one, or a non-zero one after p2.
    """
    if distortion_model not in ("plumb_bob", ""):
        raise SlamError(f"distortion_model {distortion_model!r}: expected plumb_bob "
                        "(k1 k2 p1 p2)")
    d = np.asarray(dist, dtype=np.float64).reshape(-1).tolist()
    if len(d) < 4:
        raise SlamError(f"D {d!r}: expected 4 or more (plumb_bob)")
    if width <= 0 or height <= 0:
        raise SlamError(f"image size {(width, height)!r}: expected a positive width and height")
    k = np.asarray(K, dtype=np.float64).reshape(-1).tolist()
    if len(k) != 9:
        raise SlamError(f"K {k!r}: expected 9 values (3x3 row-major)")
    for i, (value, name) in enumerate(zip(k, _K_NAMES, strict=True)):
        if not np.isfinite(value):
            raise SlamError(f"K[{i}]{name} {value!r}: expected finite values")
    if (k[3], k[6], k[7], k[8]) != (0.0, 0.0, 0.0, 1.0):
        raise SlamError(f"K {k!r}: expected [[fx, skew, cx], [0, fy, cy], [0, 0, 1]]")
    if k[1] != 0.0:
        # Nothing downstream models it (the crops, the rectification, the network's grid):
        # a tester's 40 px skew gave depth bit-identical to none.
        raise SlamError(f"K[1] (skew) {k[1]!r}: expected 0 (no skew is modelled)")
    for i, name in ((0, "fx"), (4, "fy")):
        if k[i] <= 0:
            raise SlamError(f"K[{i}] ({name}) {k[i]!r}: expected a focal length > 0 px")
    for i, name, size in ((2, "cx", width), (5, "cy", height)):
        if not 0 <= k[i] <= size:
            raise SlamError(
                f"K[{i}] ({name}) {k[i]!r}: expected a principal point in the {width} x "
                f"{height} image (0 to {size} px)"
            )
    for i, value in enumerate(d):
        if not np.isfinite(value):
            raise SlamError(f"D[{i}] {value!r}: expected finite distortion coefficients")
    if any(value != 0.0 for value in d[4:]):
        raise SlamError(f"D {d!r}: expected k3 and beyond 0 (k1 k2 p1 p2 are modelled)")


@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera with radtan distortion (k1, k2, p1, p2) at a given image size."""

    K: np.ndarray  # (3, 3)
    dist: np.ndarray  # (4,) k1 k2 p1 p2; zeros for an undistorted camera
    width: int
    height: int

    @classmethod
    def from_info(cls, info: Any) -> PinholeCamera:
        """Build from anything with K, dist, width, height (bags.reader.CameraInfo, CameraData).

        Raises:
            SlamError: K is not a valid 3x3 camera matrix, dist is not finite or the size is
                not positive (see :func:`check_intrinsics`).
        """
        if isinstance(info, PinholeCamera):
            return info
        try:
            K = np.asarray(info.K, dtype=np.float64).reshape(3, 3)
            dist = np.asarray(getattr(info, "dist", np.zeros(4)), dtype=np.float64).ravel()
            width, height = int(info.width), int(info.height)
            model = str(getattr(info, "distortion_model", "plumb_bob"))
        except (AttributeError, ValueError, TypeError) as exc:
            raise SlamError(
                f"camera {info!r} lacks K (3x3), dist, width, height: {exc}"
            ) from exc
        check_intrinsics(K, dist, width, height, model)
        dist4 = np.zeros(4)
        dist4[: min(4, dist.size)] = dist[:4]
        return cls(K=K, dist=dist4, width=width, height=height)

    def scaled(self, width: int, height: int) -> PinholeCamera:
        """The same camera resampled to ``width`` x ``height`` (pixel-centre convention)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0, 0] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return PinholeCamera(K=K, dist=self.dist.copy(), width=width, height=height)

    def normalized_rays(self) -> np.ndarray:
        """Undistorted normalised coordinates (x/z, y/z) of every pixel centre, (H, W, 2)."""
        return self._rays

    @cached_property
    def _rays(self) -> np.ndarray:
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        pts = np.stack([u, v], -1).reshape(-1, 1, 2).astype(np.float64)
        xy = cv2.undistortPoints(pts, self.K, self.dist)
        return xy.reshape(self.height, self.width, 2)

    def backproject(self, depth_m: np.ndarray) -> np.ndarray:
        """Points (N, 3) float32 in the camera frame from depth (H, W); NaN pixels skipped."""
        if depth_m.shape != (self.height, self.width):
            raise SlamError(
                f"depth shape {depth_m.shape!r}, expected {(self.height, self.width)!r}"
            )
        xy = self.normalized_rays()
        valid = np.isfinite(depth_m) & (depth_m > 0)
        z = depth_m[valid].astype(np.float64)
        pts = np.stack([xy[valid][:, 0] * z, xy[valid][:, 1] * z, z], -1)
        return pts.astype(np.float32)


@dataclass(frozen=True)
class StereoRectification:
    """Rectifying maps for a calibrated pair (cv2.stereoRectify, alpha=0: valid pixels only).

    Rectified cam0 and cam1 share the intrinsics ``K_rect`` and differ by a translation of
    ``baseline_m`` along x: a point at depth z has disparity ``fx * baseline_m / z``.
    """

    camera0: PinholeCamera
    camera1: PinholeCamera
    R0: np.ndarray  # (3, 3) cam0 -> rectified cam0
    R1: np.ndarray  # (3, 3) cam1 -> rectified cam1
    K_rect: np.ndarray  # (3, 3)
    baseline_m: float
    map0: tuple[np.ndarray, np.ndarray]
    map1: tuple[np.ndarray, np.ndarray]

    @classmethod
    def create(
        cls, camera0: PinholeCamera, camera1: PinholeCamera, T_cam0_cam1: np.ndarray
    ) -> StereoRectification:
        """Rectify with cam1's pose in cam0 (4, 4).

        Raises:
            SlamError: the transform is not 4x4 rigid, the baseline is degenerate or the
                cameras' sizes differ.
        """
        T = np.asarray(T_cam0_cam1, dtype=np.float64)
        if T.shape != (4, 4) or not np.allclose(T[3], [0, 0, 0, 1]):
            raise SlamError(f"T_cam0_cam1 {T.tolist()!r} is not a 4x4 rigid transform")
        if (camera0.width, camera0.height) != (camera1.width, camera1.height):
            raise SlamError(
                f"camera sizes differ: {(camera0.width, camera0.height)!r} vs "
                f"{(camera1.width, camera1.height)!r}"
            )
        baseline = float(np.linalg.norm(T[:3, 3]))
        if baseline < 1e-3:
            raise SlamError(f"stereo baseline {baseline!r} m is too small to rectify")
        # stereoRectify wants the transform from cam0 to cam1 coordinates.
        T_cam1_cam0 = np.linalg.inv(T)
        size = (camera0.width, camera0.height)
        R0, R1, P0, _P1, _Q, _roi0, _roi1 = cv2.stereoRectify(
            camera0.K, camera0.dist, camera1.K, camera1.dist, size,
            T_cam1_cam0[:3, :3].copy(), T_cam1_cam0[:3, 3].reshape(3, 1).copy(),
            flags=cv2.CALIB_ZERO_DISPARITY, alpha=0,
        )
        K_rect = P0[:3, :3].copy()
        map0 = cv2.initUndistortRectifyMap(camera0.K, camera0.dist, R0, K_rect, size,
                                           cv2.CV_32FC1)
        map1 = cv2.initUndistortRectifyMap(camera1.K, camera1.dist, R1, K_rect, size,
                                           cv2.CV_32FC1)
        return cls(camera0, camera1, R0, R1, K_rect, baseline, map0, map1)

    @property
    def rectified_camera(self) -> PinholeCamera:
        return PinholeCamera(self.K_rect, np.zeros(4), self.camera0.width, self.camera0.height)

    def rectify(self, img0: np.ndarray, img1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both images resampled into the rectified frames (bilinear)."""
        r0 = cv2.remap(img0, self.map0[0], self.map0[1], cv2.INTER_LINEAR)
        r1 = cv2.remap(img1, self.map1[0], self.map1[1], cv2.INTER_LINEAR)
        return r0, r1

    def T_rect0_rect1(self, T_cam0_cam1: np.ndarray) -> np.ndarray:  # noqa: N802
        """Pose of rectified cam1 in rectified cam0 (4, 4); ideally a pure x translation."""
        T = np.eye(4)
        T[:3, :3] = self.R0 @ T_cam0_cam1[:3, :3] @ self.R1.T
        T[:3, 3] = self.R0 @ T_cam0_cam1[:3, 3]
        return T

    def rectified_depth_to_cam0(self, depth_rect_m: np.ndarray) -> np.ndarray:
        """Depth (H, W) on the rectified cam0 grid -> depth on the original cam0 pixel grid.

        Each original pixel's ray is rotated into the rectified frame, the rectified depth is
        sampled there (nearest, so that NaN holes stay holes) and the 3-D point's z in cam0 is
        returned. NaN where the ray leaves the rectified image or the depth is invalid.
        """
        row, col, inside, ray_z = self._cam0_lookup
        cam = self.camera0
        out = np.full(inside.shape[0], np.nan, dtype=np.float64)
        # The point is z_rect * ray_rect / ray_rect_z; its cam0 depth is that times ray z = 1.
        out[inside] = depth_rect_m[row, col].astype(np.float64) / ray_z
        return out.reshape(cam.height, cam.width).astype(np.float32)

    @cached_property
    def _cam0_lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cam = self.camera0
        xy = cam.normalized_rays().reshape(-1, 2)
        rays = np.concatenate([xy, np.ones((xy.shape[0], 1))], 1)  # cam0, z = 1
        rays_rect = rays @ self.R0.T
        uv = rays_rect[:, :2] / rays_rect[:, 2:3] * np.diag(self.K_rect)[:2] + self.K_rect[:2, 2]
        col = np.round(uv[:, 0]).astype(np.int64)
        row = np.round(uv[:, 1]).astype(np.int64)
        inside = (col >= 0) & (col < cam.width) & (row >= 0) & (row < cam.height)
        return row[inside], col[inside], inside, rays_rect[inside, 2]
