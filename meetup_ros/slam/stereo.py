"""Metric depth from a calibrated stereo pair: rectify, OpenCV StereoSGBM, metres in cam0."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from meetup_ros.slam import SlamError
from meetup_ros.slam.camera import PinholeCamera, StereoRectification

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SgbmConfig:
    """StereoSGBM settings; ``num_disparities`` is rounded up to a multiple of 16."""

    num_disparities: int = 64
    block_size: int = 5
    uniqueness_ratio: int = 10
    speckle_window_size: int = 50
    speckle_range: int = 2
    min_depth_m: float = 0.2
    max_depth_m: float = 20.0


def _check_image(name: str, image: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.shape != (camera.height, camera.width):
        raise SlamError(
            f"{name} has dtype {image.dtype} and shape {image.shape!r}; expected uint8 "
            f"{(camera.height, camera.width)!r}"
        )
    return image


def sgbm_disparity(rect0: np.ndarray, rect1: np.ndarray, cfg: SgbmConfig) -> np.ndarray:
    """Disparity (H, W) float32 in pixels on the rectified left grid; NaN where invalid."""
    num = int(np.ceil(cfg.num_disparities / 16) * 16)
    block = cfg.block_size
    sgbm = cv2.StereoSGBM.create(
        minDisparity=0, numDisparities=num, blockSize=block,
        P1=8 * block * block, P2=32 * block * block, disp12MaxDiff=1,
        uniquenessRatio=cfg.uniqueness_ratio, speckleWindowSize=cfg.speckle_window_size,
        speckleRange=cfg.speckle_range, mode=cv2.STEREO_SGBM_MODE_SGBM,
    )
    disp = sgbm.compute(rect0, rect1).astype(np.float32) / 16.0  # fixed point, 4 bits
    disp[disp <= 0.0] = np.nan
    return disp


class StereoDepth:
    """Cached rectification + SGBM for one calibrated pair; call with each image pair."""

    def __init__(
        self, camera0: Any, camera1: Any, T_cam0_cam1: np.ndarray,
        cfg: SgbmConfig | None = None,
    ) -> None:
        self.camera0 = PinholeCamera.from_info(camera0)
        self.camera1 = PinholeCamera.from_info(camera1)
        self.T_cam0_cam1 = np.asarray(T_cam0_cam1, dtype=np.float64)
        self.rect = StereoRectification.create(self.camera0, self.camera1, self.T_cam0_cam1)
        self.cfg = cfg or SgbmConfig()

    def rectified_depth(self, rect0: np.ndarray, rect1: np.ndarray) -> np.ndarray:
        """Depth (H, W) float32 metres on the rectified cam0 grid; NaN invalid or out of range."""
        disp = sgbm_disparity(rect0, rect1, self.cfg)
        depth = (self.rect.K_rect[0, 0] * self.rect.baseline_m / disp).astype(np.float32)
        bad = ~np.isfinite(depth) | (depth < self.cfg.min_depth_m) | (depth > self.cfg.max_depth_m)
        depth[bad] = np.nan
        return depth

    def __call__(self, img0: np.ndarray, img1: np.ndarray) -> np.ndarray:
        """Depth (H, W) float32 metres on cam0's original pixel grid; NaN invalid."""
        img0 = _check_image("img0", img0, self.camera0)
        img1 = _check_image("img1", img1, self.camera1)
        rect0, rect1 = self.rect.rectify(img0, img1)
        return self.rect.rectified_depth_to_cam0(self.rectified_depth(rect0, rect1))


def stereo_depth(
    img0: np.ndarray, img1: np.ndarray, camera0: Any, camera1: Any, T_cam0_cam1: np.ndarray,
    cfg: SgbmConfig | None = None,
) -> np.ndarray:
    """Depth of cam0's pixels from a calibrated stereo pair.

    Args:
        img0, img1: uint8 (H, W) left/right images as recorded (distorted).
        camera0, camera1: objects with K (3, 3), dist (4,) radtan, width, height.
        T_cam0_cam1: pose of cam1 in cam0 (4, 4), e.g. inv(T_body_cam0) @ T_body_cam1.
    Returns:
        depth_m (H, W) float32, z in cam0's frame, NaN where SGBM found no match.
    Raises:
        SlamError: bad images, camera models or transform.
    """
    return StereoDepth(camera0, camera1, T_cam0_cam1, cfg)(img0, img1)
