"""VIO network: shapes, Lie maps against independent oracles, gravity init, safe weights."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pypose as pp
import pytest
import torch
from scipy.spatial.transform import Rotation

from meetup_ros.odometry.estimator import VioEstimator
from meetup_ros.odometry.model import (
    AUX_FEATURES,
    MODEL_NAME,
    VioNet,
    VioNetConfig,
    gravity_attitude,
    se3_exp,
    se3_log,
)
from meetup_ros.odometry.windowing import OdometryError
from meetup_ros.training.checkpoint import save_weights


class _Arbitrary:
    """Stands for any object a hostile weights file could ask pickle to build."""


SMALL = VioNetConfig(imu_hidden=8, core_hidden=8, image_channels=4, head_hidden=8)


def test_forward_shapes_with_and_without_images() -> None:
    torch.manual_seed(0)
    model = VioNet(SMALL)
    b, t, length = 2, 3, 12
    imu = torch.randn(b, t, length, 7)
    count = torch.tensor([[10, 9, 0], [11, 12, 10]])
    pair = torch.randn(b, t, 3, SMALL.image_height, SMALL.image_width)
    aux = torch.randn(b, t, AUX_FEATURES)
    for mask in (torch.ones(b, t), torch.zeros(b, t)):
        xi, logvar, state, v = model(imu, count, pair, mask, aux)
        assert xi.shape == (b, t, 6) and logvar.shape == (b, t, 6) and v.shape == (b, t, 3)
        assert state[0].shape == (1, b, SMALL.core_hidden) and state[2].shape == (b, 3)
        assert torch.isfinite(xi).all() and torch.isfinite(logvar).all()
    # the state carries: two halves equal one whole
    xi_all, _, _, _ = model(imu, count, pair, torch.ones(b, t), aux)
    xi_a, _, st, _ = model(imu[:, :2], count[:, :2], pair[:, :2], torch.ones(b, 2), aux[:, :2])
    xi_b, _, _, _ = model(imu[:, 2:], count[:, 2:], pair[:, 2:], torch.ones(b, 1), aux[:, 2:],
                          st)
    torch.testing.assert_close(torch.cat([xi_a, xi_b], 1), xi_all)


def test_image_features_masked_have_no_effect() -> None:
    torch.manual_seed(1)
    model = VioNet(SMALL)
    imu = torch.randn(1, 2, 10, 7)
    count = torch.full((1, 2), 10)
    aux = torch.randn(1, 2, AUX_FEATURES)
    mask = torch.zeros(1, 2)
    a = model(imu, count, torch.randn(1, 2, 3, 40, 64), mask, aux)[0]
    b = model(imu, count, torch.randn(1, 2, 3, 40, 64), mask, aux)[0]
    torch.testing.assert_close(a, b)


def test_exp_against_independent_rotation_and_composition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        phi = rng.normal(0, 0.5, 3)
        T = se3_exp(np.concatenate([np.zeros(3), phi]))
        np.testing.assert_allclose(T[:3, :3], Rotation.from_rotvec(phi).as_matrix(), atol=1e-9)
        rho = rng.normal(0, 1, 3)
        np.testing.assert_allclose(se3_exp(np.concatenate([rho, np.zeros(3)]))[:3, 3], rho,
                                   atol=1e-12)
        xi1, xi2 = rng.normal(0, 0.3, 6), rng.normal(0, 0.3, 6)
        composed = se3_exp(xi1) @ se3_exp(xi2)
        lie = (pp.se3(torch.tensor(xi1)).Exp() * pp.se3(torch.tensor(xi2)).Exp()).matrix()
        np.testing.assert_allclose(composed, lie.numpy(), atol=1e-9)
        np.testing.assert_allclose(se3_log(se3_exp(xi1)), xi1, atol=1e-9)


def test_gravity_initialisation_on_real_euroc(euroc_dir: Path) -> None:
    from meetup_ros.bags.euroc import load_euroc

    seq = load_euroc(euroc_dir)
    assert seq.groundtruth is not None
    q = gravity_attitude(seq.imu.accel_mps2[:20])
    up_est = Rotation.from_quat(q).inv().apply([0, 0, 1])
    i = int(np.searchsorted(seq.groundtruth.stamps_ns, seq.imu.stamps_ns[0]))
    up_gt = Rotation.from_quat(seq.groundtruth.q_world_body_xyzw[i]).inv().apply([0, 0, 1])
    angle_deg = np.degrees(np.arccos(np.clip(up_est @ up_gt, -1, 1)))
    assert angle_deg < 1.0, angle_deg  # accelerometer bias ~0.07 m/s^2 -> ~0.4 deg
    # the free yaw is left out: the rotation is the smallest one that levels the body
    tilt = np.degrees(np.arccos(np.clip(up_est[2], -1, 1)))
    assert np.degrees(Rotation.from_quat(q).magnitude()) == pytest.approx(tilt, abs=1e-6)


def test_gravity_initialisation_rejects_motion() -> None:
    with pytest.raises(OdometryError, match="norm"):
        gravity_attitude(np.array([[0.0, 0.0, 30.0]]))
    with pytest.raises(OdometryError, match="at least one"):
        gravity_attitude(np.zeros((0, 3)))


def _weights(tmp_path: Path, **overrides: object) -> Path:
    model = VioNet(SMALL)
    meta: dict[str, object] = {"model": MODEL_NAME, "config": asdict(SMALL)}
    meta.update(overrides)
    path = tmp_path / "vio.pt"
    save_weights(path, model.state_dict(), **meta)
    return path


def test_weights_round_trip(tmp_path: Path) -> None:
    est = VioEstimator.from_weights(_weights(tmp_path))
    assert est.model.config == SMALL
    stamp = 1_000_000_000
    for i in range(30):
        est.add_imu(stamp + i * 5_000_000, np.zeros(3), np.array([0.0, 0.0, 9.81]))
    first = est.add_frame(stamp + 95_000_000, np.zeros((40, 64), np.uint8))
    second = est.add_frame(stamp + 145_000_000, np.zeros((40, 64), np.uint8))
    assert first is not None and second is not None
    assert second.imu_samples_used == 10
    assert second.pose_covariance.shape == (6, 6) and np.all(np.isfinite(second.T_odom_base))


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (None, "does not exist"),
        (b"not a torch archive", "not a readable"),
        ("truncated", "not a readable"),
        ("pickle", "not a readable"),
        ("wrong_model", "expected 'vio_multirate_lstm'"),
        ("wrong_shape", "does not fit"),
        ("unknown_key", "unknown key"),
    ],
)
def test_bad_weights_give_clear_errors(tmp_path: Path, write: object, match: str) -> None:
    path = tmp_path / "vio.pt"
    if isinstance(write, bytes):
        path.write_bytes(write)
    elif write == "truncated":
        good = _weights(tmp_path).read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif write == "pickle":
        # a plain pickle of an arbitrary object: weights_only loading must refuse it
        torch.save({"state_dict": {}, "metadata": {"obj": _Arbitrary()}}, path)
    elif write == "wrong_model":
        _weights(tmp_path, model="governor")
    elif write == "wrong_shape":
        _weights(tmp_path, config={**asdict(SMALL), "core_hidden": 16})
    elif write == "unknown_key":
        _weights(tmp_path, config={**asdict(SMALL), "layers": 3})
    with pytest.raises(OdometryError, match=match) as info:
        VioEstimator.from_weights(path)
    assert "vio.pt" in str(info.value)


def test_train_vio_through_the_project_loop_exports_loadable_weights(
    repo_root: Path, tmp_path: Path
) -> None:
    """One short DFW epoch on the bundled bag (too short for a held-out split: set to 0)."""
    from meetup_ros.odometry.training import train_vio
    from meetup_ros.training.config import TrainConfig

    torch.set_num_threads(1)
    cfg = TrainConfig(
        bags=(repo_root / "data" / "euroc_v1_01_easy_sample",), out_dir=tmp_path, epochs=1,
        extra={"heldout_s": "0", "val_s": "0", "chunk": "20", "steps_per_epoch": "2",
               "core_hidden": "8", "imu_hidden": "8", "image_channels": "4"},
    )
    metrics = train_vio(cfg)
    assert np.isfinite(metrics["train_loss"]) and metrics["train_loss"] >= 0
    assert (tmp_path / "metrics.csv").is_file() and (tmp_path / "checkpoint.pt").is_file()
    est = VioEstimator.from_weights(tmp_path / "vio.pt")
    assert est.metadata["optimizer"] == "dfw" and "never_trained_on" in est.metadata


def test_train_vio_rejects_unknown_options(repo_root: Path, tmp_path: Path) -> None:
    from meetup_ros.odometry.training import train_vio
    from meetup_ros.training.config import TrainConfig

    cfg = TrainConfig(bags=(repo_root / "data" / "euroc_v1_01_easy_sample",),
                      out_dir=tmp_path, extra={"chunks": "3"})
    with pytest.raises(OdometryError, match="'chunks'"):
        train_vio(cfg)
