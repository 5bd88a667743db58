"""Stereo depth on the bundled EuRoC pair, and depth metrics on hand-made cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meetup_ros.slam import SlamError
from meetup_ros.slam.evaluation import depth_metrics
from meetup_ros.slam.stereo import StereoDepth, stereo_depth


@pytest.fixture(scope="module")
def euroc_seq(repo_root: Path):
    from meetup_ros.bags.reader import read_sequence

    return read_sequence(repo_root / "data" / "euroc_v1_01_easy_sample")


def test_sgbm_depth_is_plausible_for_the_vicon_room(euroc_seq) -> None:
    seq = euroc_seq
    T = seq.T_cam0_cam1
    assert T is not None and 0.10 < np.linalg.norm(T[:3, 3]) < 0.12  # EuRoC baseline ~11 cm
    depth = stereo_depth(seq.cam0.images[0], seq.cam1.images[0], seq.cam0.info, seq.cam1.info, T)
    assert depth.shape == (240, 376) and depth.dtype == np.float32
    valid = np.isfinite(depth)
    assert valid.mean() > 0.4
    # The camera looks at the room's padded wall and floor, 1 to 5 m away.
    assert 1.0 < float(np.nanmedian(depth)) < 4.0
    assert float(np.nanpercentile(depth, 1)) > 0.3 and float(np.nanpercentile(depth, 99)) < 12.0
    # The lower image rows see the floor nearer than the wall in the middle rows.
    assert np.nanmedian(depth[200:230]) < np.nanmedian(depth[80:140])


def test_sgbm_depth_reprojects_cam1_onto_cam0(euroc_seq) -> None:
    """Depth + calibration must map cam0 pixels to matching cam1 intensities."""
    seq = euroc_seq
    sd = StereoDepth(seq.cam0.info, seq.cam1.info, seq.T_cam0_cam1)
    r0, r1 = sd.rect.rectify(seq.cam0.images[3], seq.cam1.images[3])
    depth = sd.rectified_depth(r0, r1)
    rows, cols = np.nonzero(np.isfinite(depth))
    disp = sd.rect.K_rect[0, 0] * sd.rect.baseline_m / depth[rows, cols]
    # The two cameras' exposures differ: compare zero-mean, unit-spread intensities.
    n0 = (r0.astype(float) - r0.mean()) / r0.std()
    n1 = (r1.astype(float) - r1.mean()) / r1.std()

    def error(shift_px: np.ndarray) -> float:
        right_cols = np.round(cols - shift_px).astype(int)
        ok = (right_cols >= 0) & (right_cols < r1.shape[1])
        return float(np.abs(n0[rows[ok], cols[ok]] - n1[rows[ok], right_cols[ok]]).mean())

    matched = error(disp)
    assert matched < 0.6 * error(np.zeros_like(disp))
    assert matched < 0.8 * error(disp + 4.0) and matched < 0.8 * error(disp - 4.0)


def test_stereo_depth_rejects_bad_inputs(euroc_seq) -> None:
    seq = euroc_seq
    img = seq.cam0.images[0]
    with pytest.raises(SlamError, match="shape"):
        stereo_depth(img[:100], seq.cam1.images[0], seq.cam0.info, seq.cam1.info,
                     seq.T_cam0_cam1)
    with pytest.raises(SlamError, match="rigid"):
        stereo_depth(img, seq.cam1.images[0], seq.cam0.info, seq.cam1.info, np.eye(3))
    with pytest.raises(SlamError, match="baseline"):
        stereo_depth(img, seq.cam1.images[0], seq.cam0.info, seq.cam1.info, np.eye(4))


def test_depth_metrics_hand_cases() -> None:
    ref = np.array([[1.0, 2.0], [4.0, np.nan]])
    same = depth_metrics(ref, ref)
    assert same["absrel"] == 0.0 and same["rmse_m"] == 0.0 and same["delta1"] == 1.0
    assert same["valid_fraction"] == pytest.approx(0.75)
    double = depth_metrics(2 * ref, ref)
    assert double["absrel"] == pytest.approx(1.0)
    assert double["rmse_m"] == pytest.approx(np.sqrt((1 + 4 + 16) / 3))
    assert double["delta1"] == 0.0
    # 1.2x is inside delta < 1.25, 1.3x is not; non-positive predictions are invalid.
    mixed = depth_metrics(np.array([1.2, 1.3, 0.0, 5.0]), np.array([1.0, 1.0, 1.0, np.inf]))
    assert mixed["delta1"] == pytest.approx(0.5)
    assert mixed["absrel"] == pytest.approx(0.25)
    empty = depth_metrics(np.full(3, np.nan), np.ones(3))
    assert np.isnan(empty["absrel"]) and empty["valid_fraction"] == 0.0
    with pytest.raises(SlamError, match="shape"):
        depth_metrics(np.ones(3), np.ones(4))
