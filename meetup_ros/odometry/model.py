"""The multi-rate LSTM visual-inertial odometry network and its Lie-group helpers (pypose).

Per camera frame interval k (from frame k to frame k+1):

1. IMU LSTM: runs over every IMU sample of the interval; per-sample input (7,) =
   ``gyro_radps`` (3), ``accel_mps2 / g`` (3), ``dt_s / 0.005 - 1`` (1). Its last output is
   the interval's inertial feature.
2. Image branch: a small CNN over the frame pair at ``image_hw`` (channels: frame k, frame
   k+1 and their difference). Where the camera is missing its feature is zeroed and a mask
   input says so (the inertial-only mode).
3. Physics features from pypose's IMU preintegrator: the gyro rotation vector of the interval,
   the gravity-compensated velocity change in the start body frame, the up direction in the
   start body frame and the interval length.
4. Core LSTM over frames (hidden state carried from interval to interval) -> head: a body
   velocity measurement with its variance, a rotation residual and the increment's
   log-variances. A velocity filter in the recurrence (see :class:`VioNet`) turns them into
   the se(3) increment ``xi = [rho (3), phi (3)]`` of ``T_k^-1 T_k+1`` (pypose tangent order,
   body frame of frame k). The rotation part is the gyro rotation vector (less a learned bias)
   plus a learned residual, so an untrained head already rotates like the gyro.

Poses compose with the exponential map: ``T_k+1 = T_k Exp(xi)`` (pypose SE3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np
import pypose as pp
import torch
from torch import nn

from meetup_ros.odometry.windowing import OdometryError

GRAVITY_MPS2 = 9.81007  # pypose's default; EuRoC's world frame has z up
NOMINAL_IMU_DT_S = 0.005
IMU_FEATURES = 7
AUX_FEATURES = 13  # up_body (3), duration (1), phi_gyro (3), dv_body (3), dp_body (3)
MODEL_NAME = "vio_multirate_lstm"
# Output scales: the head's unit outputs map to these increments per interval.
VELOCITY_SCALE_MPS = 1.0
VELOCITY_MEAS_STD_MPS = 0.3
ROTATION_RESIDUAL_SCALE_RAD = 0.01


@dataclass(frozen=True)
class VioNetConfig:
    """Sizes of the network (stored in the weights' metadata to rebuild it)."""

    imu_hidden: int = 32
    core_hidden: int = 64
    image_height: int = 40
    image_width: int = 64
    image_channels: int = 16
    head_hidden: int = 64

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VioNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise OdometryError(f"model config has unknown key(s) {unknown!r}; known {known!r}")
        try:
            config = cls(**{k: int(v) for k, v in values.items()})
        except (TypeError, ValueError) as exc:
            raise OdometryError(f"model config {values!r} is malformed: {exc}") from None
        for name, value in asdict(config).items():
            if value <= 0:
                raise OdometryError(f"model config {name} = {value!r}, expected > 0")
        return config


class ImageBranch(nn.Module):
    """CNN over a frame pair (B, 3, H, W) -> (B, C) feature."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.out_features = 2 * c

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)


VioState = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""Recurrent state: core LSTM (h, c) each (1, B, H), body velocity (B, 3) m/s and its
variance (B, 3) (m/s)^2, the velocity in the body frame at the current frame."""


class VioNet(nn.Module):
    """IMU LSTM per sample + image branch per frame pair + core LSTM per frame.

    The translation is not regressed blindly: a velocity filter inside the recurrence carries
    the body velocity from frame to frame with the preintegrated (gravity-compensated) IMU
    increments, and the core LSTM's velocity measurement corrects it with a Kalman gain from
    the learned measurement variance. The translation of the increment is
    ``v_k dt + Dp`` (start body frame); the rotation the gyro's plus a learned residual.
    Learned constant IMU bias corrections absorb the sensor's biases.
    """

    def __init__(self, config: VioNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or VioNetConfig()
        cfg = self.config
        self.imu_lstm = nn.LSTM(IMU_FEATURES, cfg.imu_hidden, batch_first=True)
        self.image = ImageBranch(cfg.image_channels)
        core_in = cfg.imu_hidden + self.image.out_features + 1 + AUX_FEATURES
        self.core_lstm = nn.LSTM(core_in, cfg.core_hidden, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(cfg.core_hidden + AUX_FEATURES, cfg.head_hidden), nn.ReLU(),
        )
        out_layer = nn.Linear(cfg.head_hidden, 15)
        # start from "at rest, gyro only" with prior variances
        nn.init.zeros_(out_layer.weight)
        nn.init.zeros_(out_layer.bias)
        self.head.append(out_layer)
        self.bias_accel_mps2 = nn.Parameter(torch.zeros(3))
        self.bias_gyro_radps = nn.Parameter(torch.zeros(3))
        # velocity random walk of the filter, log (m/s)^2 per s
        self.log_q_velocity = nn.Parameter(torch.full((3,), math.log(0.05)))

    def initial_state(self, batch: int, v_body_mps: torch.Tensor | None = None,
                      var_v: float = 1e-4) -> VioState:
        """Fresh state: LSTM zeros, velocity ``v_body_mps`` (B, 3) or at rest."""
        h = torch.zeros(1, batch, self.config.core_hidden)
        v = torch.zeros(batch, 3) if v_body_mps is None else v_body_mps.float()
        return h, h.clone(), v, torch.full((batch, 3), var_v)

    def forward(
        self,
        imu: torch.Tensor,
        imu_count: torch.Tensor,
        pair: torch.Tensor,
        image_mask: torch.Tensor,
        aux: torch.Tensor,
        state: VioState | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, VioState, torch.Tensor]:
        """Run T intervals of B sequences.

        Args:
            imu: (B, T, L, 7) per-sample features, zero-padded past ``imu_count``.
            imu_count: (B, T) int, samples in each interval (0 allowed).
            pair: (B, T, 3, H, W) image-pair tensors (ignored where ``image_mask`` is 0).
            image_mask: (B, T) 1 where both frames exist, 0 for inertial-only intervals.
            aux: (B, T, 13) physics features (see :func:`window_features`).
            state: see ``VioState``; None starts at rest.

        Returns:
            xi (B, T, 6) se(3) increments [rho, phi], logvar (B, T, 6), the new state, and the
            filtered body velocity at each interval's end (B, T, 3).
        """
        b, t, length, _ = imu.shape
        if state is None:
            state = self.initial_state(b)
        flat = imu.reshape(b * t, length, IMU_FEATURES)
        out, _ = self.imu_lstm(flat)
        count = imu_count.reshape(b * t).long()
        last = (count - 1).clamp(min=0)
        imu_feat = out[torch.arange(b * t), last] * (count > 0).unsqueeze(1).to(out.dtype)
        imu_feat = imu_feat.reshape(b, t, -1)
        mask = image_mask.to(imu.dtype).reshape(b, t, 1)
        if bool(mask.any()):
            img_feat = self.image(pair.reshape(b * t, *pair.shape[2:])).reshape(b, t, -1)
            img_feat = img_feat * mask
        else:
            img_feat = imu.new_zeros(b, t, self.image.out_features)
        core_in = torch.cat([imu_feat, img_feat, mask, aux], dim=-1)
        core_out, (h, c) = self.core_lstm(core_in, (state[0], state[1]))
        raw = self.head(torch.cat([core_out, aux], dim=-1))
        duration_s = aux[..., 3:4] * 0.05
        phi = (aux[..., 4:7] - self.bias_gyro_radps * duration_s
               + raw[..., 3:6] * ROTATION_RESIDUAL_SCALE_RAD)
        dv = aux[..., 7:10] - self.bias_accel_mps2 * duration_s
        dp = aux[..., 10:13] - 0.5 * self.bias_accel_mps2 * duration_s**2
        v_meas = raw[..., 0:3] * VELOCITY_SCALE_MPS
        var_meas = torch.exp(raw[..., 12:15] + math.log(VELOCITY_MEAS_STD_MPS**2))
        q = torch.exp(self.log_q_velocity)
        rot_inv = pp.so3(phi).Exp().Inv()
        v, var_v = state[2], state[3]
        rhos, velocities = [], []
        # -- the velocity filter, one interval at a time ---------------------------------------
        for k in range(t):
            rhos.append(v * duration_s[:, k] + dp[:, k])
            v = rot_inv[:, k].Act(v + dv[:, k])
            var_v = var_v + q * duration_s[:, k]
            gain = var_v / (var_v + var_meas[:, k])
            v = v + gain * (v_meas[:, k] - v)
            var_v = (1.0 - gain) * var_v
            velocities.append(v)
        rho = torch.stack(rhos, dim=1)
        logvar = raw[..., 6:12] + imu.new_tensor([math.log(0.02**2)] * 3
                                                 + [math.log(0.0087**2)] * 3)
        return (torch.cat([rho, phi], dim=-1), logvar, (h, c, v, var_v),
                torch.stack(velocities, dim=1))


# -- features shared by the estimator and the trainer -------------------------------------------
def imu_sample_features(
    gyro_radps: np.ndarray, accel_mps2: np.ndarray, dt_s: np.ndarray
) -> np.ndarray:
    """Per-sample IMU LSTM input (n, 7) from gyro (n, 3), accel (n, 3), dt (n,)."""
    return np.concatenate(
        [gyro_radps, accel_mps2 / GRAVITY_MPS2, (dt_s / NOMINAL_IMU_DT_S - 1.0)[:, None]],
        axis=1,
    ).astype(np.float32)


_PREINTEGRATOR: pp.module.IMUPreintegrator | None = None


def _preintegrator() -> pp.module.IMUPreintegrator:
    global _PREINTEGRATOR
    if _PREINTEGRATOR is None:
        _PREINTEGRATOR = pp.module.IMUPreintegrator(
            gravity=GRAVITY_MPS2, prop_cov=False, reset=True
        ).double()
    return _PREINTEGRATOR


def window_features(
    gyro_radps: torch.Tensor, accel_mps2: torch.Tensor, dt_s: torch.Tensor,
    q_world_body_xyzw: torch.Tensor,
) -> torch.Tensor:
    """Physics features of B intervals (B, 10) through pypose's IMU preintegrator.

    Args:
        gyro_radps, accel_mps2: (B, L, 3) bias-corrected samples, zero-padded.
        dt_s: (B, L) sample periods, 0 on padding (padding then integrates to nothing).
        q_world_body_xyzw: (B, 4) attitude at the interval start (gravity compensation).

    Returns:
        (B, 13): up direction in the start body frame (3), interval length / 0.05 s (1), the
        gyro rotation vector (3, rad), gravity-compensated velocity and position changes in
        the start body frame (3, m/s; 3, m; the position change without initial velocity).
    """
    b = gyro_radps.shape[0]
    dt = dt_s.double().unsqueeze(-1)
    if gyro_radps.shape[1] == 0:
        dt = torch.zeros(b, 1, 1, dtype=torch.float64)
        gyro_radps = torch.zeros(b, 1, 3, dtype=torch.float64)
        accel_mps2 = torch.zeros(b, 1, 3, dtype=torch.float64)
    rot = pp.SO3(q_world_body_xyzw.double()).unsqueeze(1)
    integ = _preintegrator().integrate(dt, gyro_radps.double(), accel_mps2.double(),
                                       init_rot=rot)
    phi_gyro = integ["Dr"][:, -1].Log().tensor()  # (B, 3)
    # Dv is in the start body frame with gravity removed along the integrated attitude
    dv_body = integ["Dv"][:, -1]
    dp_body = integ["Dp"][:, -1]
    # pad samples with dt = 0 still remove gravity * 0; a padded accel of 0 contributes nothing
    up_body = pp.SO3(q_world_body_xyzw.double()).Inv().Act(
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(b, 3))
    duration = dt.sum(dim=(1, 2)).unsqueeze(-1) / 0.05
    return torch.cat([up_body, duration, phi_gyro, dv_body, dp_body], dim=-1).float()


def image_pair_tensor(
    image0: np.ndarray, image1: np.ndarray, height: int, width: int
) -> np.ndarray:
    """(3, H, W) float32: both frames resized (area) to H x W in [-0.5, 0.5] and their diff."""
    a = resize_image(image0, height, width)
    b = resize_image(image1, height, width)
    return np.stack([a, b, b - a]).astype(np.float32)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H0, W0) -> float32 (height, width) in [-0.5, 0.5]."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise OdometryError(
            f"image has dtype {image.dtype} and shape {image.shape!r}, expected uint8 (H, W)"
        )
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0 - 0.5


def gravity_attitude(accel_mps2: np.ndarray) -> np.ndarray:
    """Attitude q_world_body (xyzw, (4,)) with yaw 0 from accelerometer samples at rest.

    At rest the accelerometer measures the specific force ``R_world_body^T [0, 0, g]``, so the
    mean sample is the up direction in the body frame; the minimal rotation taking it to the
    world's z axis gives roll and pitch.

    Raises:
        OdometryError: no samples, or a mean far from g (the body is not at rest).
    """
    accel = np.asarray(accel_mps2, dtype=np.float64).reshape(-1, 3)
    if accel.shape[0] == 0:
        raise OdometryError("gravity initialisation needs at least one IMU sample, got 0")
    mean = accel.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if not 0.5 * GRAVITY_MPS2 < norm < 1.5 * GRAVITY_MPS2:
        raise OdometryError(
            f"mean accelerometer reading {mean.tolist()!r} has norm {norm:.3f} m/s^2, "
            f"expected about {GRAVITY_MPS2} (body at rest) for gravity initialisation"
        )
    up_body = mean / norm
    axis = np.cross(up_body, [0.0, 0.0, 1.0])
    sin_angle = float(np.linalg.norm(axis))
    angle = math.atan2(sin_angle, float(up_body[2]))
    rotvec = axis / sin_angle * angle if sin_angle > 1e-12 else np.zeros(3)
    q = pp.so3(torch.tensor(rotvec, dtype=torch.float64)).Exp().tensor().numpy()
    return np.asarray(q, dtype=np.float64)


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """4x4 matrix of Exp(xi) for xi = [rho, phi] (pypose se3)."""
    return np.asarray(
        pp.se3(torch.as_tensor(np.asarray(xi, dtype=np.float64))).Exp().matrix().numpy()
    )


def se3_log(T: np.ndarray) -> np.ndarray:
    """se(3) vector [rho, phi] (..., 6) of 4x4 transforms (..., 4, 4) (pypose)."""
    return np.asarray(
        pp.mat2SE3(torch.as_tensor(np.asarray(T, dtype=np.float64)), check=False)
        .Log().tensor().numpy()
    )
