"""Zero-velocity detection: unchanged frames at rest, never on real moving frames."""

from __future__ import annotations

import glob
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from meetup_ros.odometry.stationary import StationaryDetector

AT_REST = np.tile([0.0, 0.0, 9.81], (10, 1))
NO_TURN = np.zeros((10, 3))


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((240, 376)) * 255).astype(np.uint8), (5, 5), 1.5)


def test_same_picture_at_rest_is_stationary() -> None:
    image = _texture()
    noisy = np.clip(image + np.random.default_rng(1).normal(0, 1.0, image.shape), 0, 255)
    assert StationaryDetector().is_stationary(image, noisy.astype(np.uint8), AT_REST, NO_TURN)


@pytest.mark.parametrize("case", ["shift", "zoom", "flat", "accelerating", "no_imu",
                                  "turning"])
def test_motion_or_missing_evidence_is_not_stationary(case: str) -> None:
    image = _texture()
    other, accel, gyro = image, AT_REST, NO_TURN
    if case == "shift":
        other = np.roll(image, 3, axis=1)
    elif case == "zoom":  # driving forward: the picture grows about its centre, no shift
        crop = image[6:-6, 9:-9]
        other = cv2.resize(crop, (376, 240), interpolation=cv2.INTER_LINEAR)
    elif case == "flat":
        image = other = np.full((240, 376), 128, np.uint8)
    elif case == "accelerating":
        accel = np.tile([0.0, 0.0, 11.0], (10, 1))  # climbing at 1.2 m/s^2
    elif case == "turning":  # a frozen camera on a body turning at 0.5 rad/s
        gyro = np.tile([0.5, 0.0, 0.0], (10, 1))
    else:
        accel = gyro = np.zeros((0, 3))
    assert not StationaryDetector().is_stationary(image, other, accel, gyro)


def test_real_frames_at_rest_and_in_motion(shared_data: Path) -> None:
    """EuRoC cam0 at rest (rotors running) is stationary; KITTI and TUM pairs never are."""
    from rosbags.highlevel import AnyReader

    repo = Path(__file__).resolve().parent.parent
    frames = []
    with AnyReader([repo / "data" / "euroc_v1_01_easy_sample"]) as reader:
        conns = [c for c in reader.connections if c.topic == "/cam0/image_raw"]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            frames.append(np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width))
    detector = StationaryDetector()
    rest = [detector.is_stationary(a, b, AT_REST, NO_TURN) for a, b in itertools.pairwise(frames)]
    assert sum(rest) >= 0.95 * len(rest), sum(rest)
    for name in ("kitti_odometry_06_frames000-050_mono",
                 "kitti_odometry_KITTIsequence2_frames51_mono",
                 "tum_rgbd_fr3_long_office_household_17frames_1hz"):
        files = sorted(glob.glob(str(shared_data / name / "**" / "*.png"), recursive=True))
        images = [cv2.imread(f, cv2.IMREAD_GRAYSCALE) for f in files]
        images = [cv2.resize(i, (376, round(376 * i.shape[0] / i.shape[1])),
                             interpolation=cv2.INTER_AREA) for i in images if i is not None]
        assert len(images) > 10, name
        moving = [detector.is_stationary(a, b, AT_REST, NO_TURN)
                  for a, b in itertools.pairwise(images)]
        assert not any(moving), (name, moving)
