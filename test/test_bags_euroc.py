"""EuRoC ASL reading on the shared V1_01_easy micro folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from meetup_ros.bags.euroc import find_groundtruth, load_euroc, load_image, read_sensor_yaml


@pytest.fixture(scope="module")
def seq(euroc_dir: Path):
    return load_euroc(euroc_dir)


def test_counts_and_windows(seq) -> None:
    assert seq.cam0.stamps_ns.size == 95
    # cam1/data.csv lists 99 rows but only 95 PNGs exist: the 4 extra are skipped
    assert seq.cam1.stamps_ns.size == 95
    assert seq.skipped == {"cam0": 0, "cam1": 4}
    np.testing.assert_array_equal(seq.cam0.stamps_ns, seq.cam1.stamps_ns)
    assert seq.cam0.stamps_ns[0] == 1403715273262142976
    assert seq.cam0.stamps_ns[-1] == 1403715277962142976
    assert seq.imu.stamps_ns.size == 29120
    inside = (seq.imu.stamps_ns >= seq.cam0.stamps_ns[0]) & (
        seq.imu.stamps_ns <= seq.cam0.stamps_ns[-1]
    )
    assert int(inside.sum()) == 941  # PROVENANCE.md
    assert seq.groundtruth.stamps_ns.size == 2895
    assert seq.groundtruth.source.endswith("groundtruth/V1_01_easy.csv")


def test_values_from_files(seq, euroc_dir: Path) -> None:
    calib = seq.cam0.calib
    np.testing.assert_allclose(calib.K, [[458.654, 0, 367.215], [0, 457.296, 248.375], [0, 0, 1]])
    np.testing.assert_allclose(
        calib.dist, [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05]
    )
    assert (calib.width, calib.height) == (752, 480)
    assert calib.T_body_cam[0, 3] == pytest.approx(-0.0216401454975)
    assert seq.cam1.calib.K[0, 2] == pytest.approx(379.999)
    # first IMU row of imu0/data.csv
    assert seq.imu.gyro_radps[0, 2] == pytest.approx(0.07749261878854824, abs=0)
    assert seq.imu.accel_mps2[0, 0] == pytest.approx(9.0874956666666655, abs=0)
    imu = seq.imu_calib
    assert imu.gyro_noise_density == pytest.approx(1.6968e-04)
    assert imu.gyro_var_radps2 == pytest.approx(1.6968e-04**2 * 200)
    assert imu.accel_var_mps2_2 == pytest.approx(2.0e-3**2 * 200)
    gt = seq.groundtruth
    # first row: qw,qx,qy,qz = 0.069433,-0.824237,-0.106942,-0.551702 -> stored xyzw, normalised
    q = np.array([-0.824237, -0.106942, -0.551702, 0.069433])
    np.testing.assert_allclose(gt.q_world_body_xyzw[0], q / np.linalg.norm(q), atol=1e-12)
    np.testing.assert_allclose(gt.p_world_body[0], [0.878895, 2.1834, 0.948427])
    np.testing.assert_allclose(gt.v_world_mps[0], [0.00157587, 0.00179383, -0.00231615])
    np.testing.assert_allclose(gt.bias_accel_mps2[0], [-0.0180115, 0.0659796, 0.0309774])


def test_sensor_yaml_directive_is_skipped(euroc_dir: Path) -> None:
    path = euroc_dir / "mav0" / "cam0" / "sensor.yaml"
    assert path.read_text().startswith("%YAML:1.0")
    assert read_sensor_yaml(path)["camera_model"] == "pinhole"


def test_load_image(seq) -> None:
    image = load_image(seq.cam0.paths[0], seq.cam0.calib)
    assert image.dtype == np.uint8 and image.shape == (480, 752)
    assert 20 < image.mean() < 235  # a real exposure, not a blank frame


def test_state_groundtruth_preferred_when_present(euroc_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "asl"
    mav0 = root / "mav0"
    mav0.mkdir(parents=True)
    for name in ("cam0", "imu0"):
        (mav0 / name).symlink_to(euroc_dir / "mav0" / name)
    state = mav0 / "state_groundtruth_estimate0"
    state.mkdir()
    rows = (euroc_dir / "groundtruth" / "V1_01_easy.csv").read_text().splitlines()[:4]
    (state / "data.csv").write_text("\n".join(rows) + "\n")
    shutil.copytree(euroc_dir / "groundtruth", root / "groundtruth")
    assert find_groundtruth(root) == state / "data.csv"
    seq = load_euroc(root)
    assert seq.cam1 is None
    assert seq.groundtruth.stamps_ns.size == 3
