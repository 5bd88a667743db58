"""Two-view photometric residuals: warp view A into view B through A's depth and the pose.

Conventions: ``T_b_a`` (4, 4) maps points in A's camera frame into B's. Images are (H, W)
float tensors, already normalised (see :func:`prepare_image`); intrinsics are 3x3 for that
resolution. Bilinear sampling is written with gathers (not ``grid_sample``) so that
``torch.func.jacfwd`` can differentiate it in forward mode.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def prepare_image(image: np.ndarray | torch.Tensor, blur_sigma_px: float = 0.8) -> torch.Tensor:
    """(H, W) image -> float32 tensor, lightly blurred, zero mean and unit spread.

    The normalisation removes the exposure/gain difference between the two cameras; the blur
    widens the basin of convergence of the photometric error.
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float32)
    if blur_sigma_px > 0:
        arr = cv2.GaussianBlur(arr, (0, 0), blur_sigma_px)
    arr = (arr - arr.mean()) / max(float(arr.std()), 1e-6)
    return torch.from_numpy(np.ascontiguousarray(arr))


def pixel_grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Column and row coordinates (H*W,) of every pixel centre, float32."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                          torch.arange(width, dtype=torch.float32), indexing="ij")
    return u.reshape(-1), v.reshape(-1)


def bilinear_sample(image: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Sample image (H, W) at pixel coordinates u, v (N,) bilinearly; edge values outside."""
    h, w = image.shape
    # A diverged solver can hand NaN coordinates (NaN depth); they sample pixel (0, 0) and the
    # callers' masks, false for NaN, drop them, instead of indexing out of range.
    u = torch.nan_to_num(u, nan=0.0).clamp(0.0, w - 1.001)
    v = torch.nan_to_num(v, nan=0.0).clamp(0.0, h - 1.001)
    u0 = torch.floor(u.detach())
    v0 = torch.floor(v.detach())
    du, dv = u - u0, v - v0
    i0 = v0.long() * w + u0.long()
    flat = image.reshape(-1)
    p00 = flat[i0]
    p01 = flat[i0 + 1]
    p10 = flat[i0 + w]
    p11 = flat[i0 + w + 1]
    return (p00 * (1 - du) * (1 - dv) + p01 * du * (1 - dv) + p10 * (1 - du) * dv
            + p11 * du * dv)


def so3_exp(phi: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (3, 3) of a rotation vector (3,) (Rodrigues; smooth at zero)."""
    theta2 = (phi * phi).sum()
    theta = torch.sqrt(theta2 + 1e-12)
    zero = torch.zeros((), dtype=phi.dtype)
    k = torch.stack([
        torch.stack([zero, -phi[2], phi[1]]),
        torch.stack([phi[2], zero, -phi[0]]),
        torch.stack([-phi[1], phi[0], zero]),
    ])
    # Series below 1e-4 rad keep the derivatives finite at the identity.
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta2 + 1e-12))
    return torch.eye(3, dtype=phi.dtype) + a * k + b * (k @ k)


def apply_increment(xi: torch.Tensor, T0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, t) of exp(xi) * T0 with xi = (rho, phi): rotation left-multiplied, rho added to t."""
    R_inc = so3_exp(xi[3:])
    return R_inc @ T0[:3, :3], R_inc @ T0[:3, 3] + xi[:3]


def warp_residual(
    image_a: torch.Tensor, image_b: torch.Tensor, depth_a_m: torch.Tensor,
    K_a: torch.Tensor, K_b: torch.Tensor, R_b_a: torch.Tensor, t_b_a: torch.Tensor,
    border_px: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Photometric residual I_b(warp(u)) - I_a(u) for every pixel u of A, and its mask.

    Args:
        image_a, image_b: (H, W) normalised images; depth_a_m: (H*W,) depth of A's pixels.
        K_a, K_b: (3, 3) intrinsics; R_b_a (3, 3), t_b_a (3,): pose of A in B.
    Returns:
        residual (H*W,) (zero where masked), mask (H*W,) float: the warped pixel lands inside
        B (with ``border_px`` margin) in front of the camera.
    """
    h, w = image_a.shape
    u, v = pixel_grid(h, w)
    x = (u - K_a[0, 2]) / K_a[0, 0]
    y = (v - K_a[1, 2]) / K_a[1, 1]
    p_a = torch.stack([x * depth_a_m, y * depth_a_m, depth_a_m], 0)  # (3, N)
    p_b = R_b_a @ p_a + t_b_a[:, None]
    z = p_b[2]
    z_safe = torch.where(z > 1e-3, z, torch.ones_like(z))
    u_b = K_b[0, 0] * p_b[0] / z_safe + K_b[0, 2]
    v_b = K_b[1, 1] * p_b[1] / z_safe + K_b[1, 2]
    with torch.no_grad():
        mask = ((z > 1e-3) & (u_b >= border_px) & (u_b <= w - 1 - border_px)
                & (v_b >= border_px) & (v_b <= h - 1 - border_px)).float()
    sampled = bilinear_sample(image_b, u_b, v_b)
    residual = (sampled - image_a.reshape(-1)) * mask
    return residual, mask


def skew(w: torch.Tensor) -> torch.Tensor:
    """[w]x for w (3,)."""
    zero = torch.zeros((), dtype=w.dtype)
    return torch.stack([
        torch.stack([zero, -w[2], w[1]]),
        torch.stack([w[2], zero, -w[0]]),
        torch.stack([-w[1], w[0], zero]),
    ])


def so3_right_jacobian(phi: torch.Tensor) -> torch.Tensor:
    """J_r(phi) (3, 3): exp(phi + d) = exp(phi) exp(J_r(phi) d) to first order."""
    theta2 = float((phi * phi).sum())
    k = skew(phi)
    if theta2 < 1e-10:
        return torch.eye(3, dtype=phi.dtype) - 0.5 * k
    theta = theta2 ** 0.5
    a = (1.0 - float(np.cos(theta))) / theta2
    b = (theta - float(np.sin(theta))) / (theta2 * theta)
    return torch.eye(3, dtype=phi.dtype) - a * k + b * (k @ k)


def warp_with_gradient(
    image_a: torch.Tensor, image_b: torch.Tensor, depth_a_m: torch.Tensor,
    K_a: torch.Tensor, K_b: torch.Tensor, R_b_a: torch.Tensor, t_b_a: torch.Tensor,
    border_px: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """As :func:`warp_residual`, plus the analytic derivatives the solvers need.

    Returns:
        residual (N,), mask (N,), point p_b = R p_a + t in B (N, 3), and
        dr/dp_b (N, 3) = grad I_b (bilinear) times the projection Jacobian (zero where masked).
    """
    h, w = image_a.shape
    u, v = pixel_grid(h, w)
    x = (u - K_a[0, 2]) / K_a[0, 0]
    y = (v - K_a[1, 2]) / K_a[1, 1]
    p_a = torch.stack([x * depth_a_m, y * depth_a_m, depth_a_m], 1)  # (N, 3)
    p_b = p_a @ R_b_a.T + t_b_a
    z = p_b[:, 2]
    z_safe = torch.where(z > 1e-3, z, torch.ones_like(z))
    fx, fy = K_b[0, 0], K_b[1, 1]
    u_b = fx * p_b[:, 0] / z_safe + K_b[0, 2]
    v_b = fy * p_b[:, 1] / z_safe + K_b[1, 2]
    mask = ((z > 1e-3) & (u_b >= border_px) & (u_b <= w - 1 - border_px)
            & (v_b >= border_px) & (v_b <= h - 1 - border_px)).float()
    # Bilinear sample and its exact derivative in u, v.
    uc = torch.nan_to_num(u_b, nan=0.0).clamp(0.0, w - 1.001)  # NaN: see bilinear_sample
    vc = torch.nan_to_num(v_b, nan=0.0).clamp(0.0, h - 1.001)
    u0, v0 = torch.floor(uc), torch.floor(vc)
    du, dv = uc - u0, vc - v0
    i0 = v0.long() * w + u0.long()
    flat = image_b.reshape(-1)
    p00, p01, p10, p11 = flat[i0], flat[i0 + 1], flat[i0 + w], flat[i0 + w + 1]
    sampled = (p00 * (1 - du) * (1 - dv) + p01 * du * (1 - dv) + p10 * (1 - du) * dv
               + p11 * du * dv)
    gu = (p01 - p00) * (1 - dv) + (p11 - p10) * dv
    gv = (p10 - p00) * (1 - du) + (p11 - p01) * du
    residual = (sampled - image_a.reshape(-1)) * mask
    inv_z = 1.0 / z_safe
    d_dq = torch.stack([
        gu * fx * inv_z,
        gv * fy * inv_z,
        -(gu * fx * p_b[:, 0] + gv * fy * p_b[:, 1]) * inv_z * inv_z,
    ], 1) * mask[:, None]
    return residual, mask, p_b, d_dq
