"""Joint optimisation of two keyframes' depth codes and their relative pose.

The objective is ``E(x) = 0.5 * |r(x)|^2`` with ``x = (code_a, code_b, xi)``: the photometric
residuals of A warped into B and of B warped into A (each divided by sqrt of the pixel
count, so E is half a mean squared intensity error), plus the code prior sqrt(w) * code.
``xi = (rho, phi)`` is a left increment on the initial pose T_b_a (see
``photometric.apply_increment``). Jacobians are analytic, block by block
(``TwoViewProblem._blocks``); the solvers take the normal equations built from those blocks,
and ``linearize_autograd`` (forward-mode autograd, ``torch.func.jacfwd``) is the tests'
reference. Gauss-Newton and
Levenberg-Marquardt are written here (pypose's solvers are not used: they expect a module
with parameters, whereas this problem is a plain residual function of one vector).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import jacfwd

from meetup_ros.slam import SlamError
from meetup_ros.slam.depth_code import logit_to_depth
from meetup_ros.slam.photometric import (
    apply_increment,
    prepare_image,
    so3_exp,
    so3_right_jacobian,
    warp_residual,
    warp_with_gradient,
)


@dataclass
class ViewTerms:
    """One view at the optimisation resolution."""

    image: torch.Tensor  # (H, W) normalised (photometric.prepare_image)
    K: torch.Tensor  # (3, 3)
    prior_logit: torch.Tensor  # (H*W,)
    basis: torch.Tensor  # (code_dim, H*W)
    log_b: torch.Tensor | None = None  # (H*W,) log Laplace scale of the proximity error

    def downsampled(self, factor: int, blur_sigma_px: float = 0.8) -> ViewTerms:
        """The view one pyramid level up: ``factor`` x ``factor`` pixels averaged.

        The decoder is linear in the code, so averaging the prior logit and the basis gives
        the coarse pixels' logit exactly (in logit, not depth); the image is averaged, blurred
        again and renormalised (``prepare_image``), as a coarse level of a direct method's
        pyramid is. Intrinsics follow pixel centres: u' = (u + 0.5) / f - 0.5.
        """
        h, w = self.image.shape
        if factor < 1 or h % factor or w % factor:
            raise SlamError(f"pyramid factor {factor} does not divide the view's {h}x{w}")

        def pool(t: torch.Tensor) -> torch.Tensor:  # (C, H*W) -> (C, H*W / f^2)
            return F.avg_pool2d(t.reshape(-1, 1, h, w), factor).reshape(t.shape[0], -1)

        K = self.K.clone()
        K[:2, :2] /= factor
        K[:2, 2] = (K[:2, 2] + 0.5) / factor - 0.5
        return ViewTerms(
            image=prepare_image(pool(self.image.reshape(1, -1)).reshape(h // factor, w // factor),
                                blur_sigma_px),
            K=K,
            prior_logit=pool(self.prior_logit[None])[0],
            basis=pool(self.basis),
            log_b=None if self.log_b is None else pool(self.log_b[None])[0],
        )


@dataclass
class _Blocks:
    """The nonzero blocks of the scaled photometric Jacobian (``TwoViewProblem._blocks``):
    rows of A's pixels warped into B (``*_a``) and of B's into A (``*_b``)."""

    r_a: torch.Tensor  # (n,) scaled residuals
    r_b: torch.Tensor
    code_a: torch.Tensor  # (n,): d r_a / d code_a = code_a[:, None] * basis_a.T
    code_b: torch.Tensor
    pose_a: torch.Tensor | None  # (n, 6) d r_a / d xi; None: the pose is held fixed
    pose_b: torch.Tensor | None
    x_code_a: torch.Tensor  # x's parts, for the priors' rows
    x_code_b: torch.Tensor
    xi: torch.Tensor


@dataclass
class NormalEquations:
    """Gauss-Newton's normal equations at a point: H = J^T J, g = J^T r, E = |r|^2 / 2."""

    H: torch.Tensor  # (dim, dim)
    g: torch.Tensor  # (dim,)
    error: float

    def gn_step(self) -> torch.Tensor:
        """Gauss-Newton's step from these equations (:func:`gn_solve`)."""
        return gn_solve(self.H, self.g)


@dataclass
class TwoViewProblem:
    """Photometric two-view problem; ``T_b_a0`` (4, 4) is the initial pose of A in B."""

    view_a: ViewTerms
    view_b: ViewTerms
    T_b_a0: torch.Tensor
    average_depth_m: float
    code_prior_weight: float = 1e-3
    optimize_pose: bool = True
    pose_prior_weight: float = 0.0  # on xi: the initial pose (calibration, odometry) as a prior

    @property
    def code_dim(self) -> int:
        return int(self.view_a.basis.shape[0])

    @property
    def dim(self) -> int:
        return 2 * self.code_dim + 6

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = self.code_dim
        xi = x[2 * k:] if self.optimize_pose else x[2 * k:].detach() * 0.0
        return x[:k], x[k:2 * k], xi

    def depth(self, view: ViewTerms, code: torch.Tensor) -> torch.Tensor:
        """Depth (H*W,) metres of a view for a code."""
        return logit_to_depth(view.prior_logit + code @ view.basis, self.average_depth_m)

    def pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R_b_a, t_b_a) at x."""
        return apply_increment(self.split(x)[2], self.T_b_a0)

    def _parts(
        self, depth_a: torch.Tensor, depth_b: torch.Tensor, xi: torch.Tensor
    ) -> torch.Tensor:
        """Scaled photometric residuals [r_ab; r_ba] (2 H W,) for given depths and increment."""
        R, t = apply_increment(xi, self.T_b_a0)
        a, b = self.view_a, self.view_b
        r_ab, _ = warp_residual(a.image, b.image, depth_a, a.K, b.K, R, t)
        r_ba, _ = warp_residual(b.image, a.image, depth_b, b.K, a.K, R.T, -(R.T @ t))
        return torch.cat([r_ab, r_ba]) * (2.0 * a.image.numel()) ** -0.5

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        code_a, code_b, xi = self.split(x)
        photo = self._parts(self.depth(self.view_a, code_a), self.depth(self.view_b, code_b), xi)
        prior = self.code_prior_weight ** 0.5
        return torch.cat([photo, prior * code_a, prior * code_b,
                          self.pose_prior_weight ** 0.5 * xi])

    def error(self, x: torch.Tensor) -> float:
        with torch.no_grad():
            r = self.residual(x)
        return float(0.5 * (r * r).sum())

    def _blocks(self, x: torch.Tensor) -> _Blocks:
        """The nonzero blocks of the photometric Jacobian at x (analytic).

        Each residual depends on its own pixel's depth (chain rule through the linear
        decoder: d depth_u / d code = -depth_u * basis[:, u]) and on the pose through the
        warped point (exact SO(3) right Jacobian for the rotation increment).
        """
        x = x.detach()
        code_a, code_b, xi = self.split(x)
        a, b = self.view_a, self.view_b
        with torch.no_grad():
            depth_a = self.depth(a, code_a)
            depth_b = self.depth(b, code_b)
            rho, phi = xi[:3], xi[3:]
            R, t = apply_increment(xi, self.T_b_a0)
            n = depth_a.numel()
            scale = (2.0 * n) ** -0.5
            r_ab, m_ab, q_b, g_b = warp_with_gradient(a.image, b.image, depth_a, a.K, b.K, R, t)
            R_inv = R.T
            r_ba, m_ba, q_a, g_a = warp_with_gradient(b.image, a.image, depth_b, b.K, a.K,
                                                      R_inv, -(R_inv @ t))
            # Codes: d p / d depth = p / depth (the ray scaled).
            dr_dd_a = (g_b * ((q_b - t) / depth_a[:, None])).sum(1)
            dr_dd_b = (g_a * ((q_a + R_inv @ t) / depth_b[:, None])).sum(1)
            pose_a = pose_b = None
            if self.optimize_pose:
                # r_ab: q = exp(phi) w + rho, w = R0 p_a + t0.
                E = so3_exp(phi)
                w_ab = (q_b - rho) @ E  # = E^T (q - rho)
                h_ab = g_b @ E  # rows E^T g
                Jr = so3_right_jacobian(phi)
                pose_a = torch.cat([g_b, torch.cross(w_ab, h_ab, dim=1) @ Jr], 1) * scale
                # r_ba: q' = R^T (p_b - t) = R0^T (exp(phi)^T (p_b - rho) - t0), so
                # dq'/dphi = R0^T [exp(phi)^T (p_b - rho)]x J_r(phi).
                p_b = q_a @ R_inv + t  # rows (R q' + t)^T: B's points in its own frame
                Rg = g_a @ R_inv  # rows (R g')^T
                pose_b = torch.cat([-Rg, torch.cross(Rg @ E, (p_b - rho) @ E, dim=1) @ Jr],
                                   1) * scale
            # A masked pixel's row is zero by definition; where its depth is not finite (a
            # network's NaN), the products above are NaN, and one such row made H and g NaN:
            # every solver stopped at its start point without a word (a tester's).
            jc_a = torch.where(m_ab > 0, (dr_dd_a * -depth_a) * scale, 0.0)
            jc_b = torch.where(m_ba > 0, (dr_dd_b * -depth_b) * scale, 0.0)
            if pose_a is not None and pose_b is not None:
                pose_a = torch.where(m_ab[:, None] > 0, pose_a, 0.0)
                pose_b = torch.where(m_ba[:, None] > 0, pose_b, 0.0)
        return _Blocks(r_a=r_ab * scale, r_b=r_ba * scale, code_a=jc_a, code_b=jc_b,
                       pose_a=pose_a, pose_b=pose_b, x_code_a=code_a, x_code_b=code_b, xi=xi)

    def linearize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r (M,), J (M, dim)) at x, with analytic Jacobians (:meth:`_blocks`), J dense.

        The solvers use :meth:`normal_equations`, which never forms J; this is the reference
        the tests hold it to, and ``linearize_autograd`` (``torch.func.jacfwd``) gives the
        same matrix.
        """
        B = self._blocks(x)
        n, k = B.r_a.numel(), self.code_dim
        dtype = B.r_a.dtype
        J = torch.zeros(2 * n + 2 * k + 6, self.dim, dtype=dtype)
        J[:n, :k] = B.code_a[:, None] * self.view_a.basis.T
        J[n:2 * n, k:2 * k] = B.code_b[:, None] * self.view_b.basis.T
        if B.pose_a is not None and B.pose_b is not None:
            J[:n, 2 * k:] = B.pose_a
            J[n:2 * n, 2 * k:] = B.pose_b
            J[2 * n + 2 * k:, 2 * k:] = self.pose_prior_weight ** 0.5 * torch.eye(6, dtype=dtype)
        prior = self.code_prior_weight ** 0.5
        J[2 * n:2 * n + 2 * k, : 2 * k] = prior * torch.eye(2 * k, dtype=dtype)
        r = torch.cat([B.r_a, B.r_b, prior * B.x_code_a, prior * B.x_code_b,
                       self.pose_prior_weight ** 0.5 * B.xi])
        return r, J

    def normal_equations(self, x: torch.Tensor) -> NormalEquations:
        """J^T J, J^T r and E = |r|^2 / 2 at x, from the Jacobian's blocks.

        J is mostly zeros (a pixel of A sees A's code and the pose, never B's code) and tall
        (2 H W rows): forming it and multiplying it out was a third of a stereo keyframe's
        time. The blocks give the same matrices (to float rounding, tested against
        ``linearize``); a keyframe of the bundled bag took 50-53 ms instead of 58-64 (5 learned
        iterations, one thread; `benchmark.frontend_depth`, the two versions alternated 3 times).
        """
        B = self._blocks(x)
        k = self.code_dim
        dtype, f64 = B.r_a.dtype, torch.float64
        # Per view, its rows' Jacobian transposed, compact: (k [+ 6], n), its own code's
        # columns and the pose's. Summed in float64: over 2 x 6144 pixels float32's rounding
        # moved the learned step's path enough to miss GN's error on a held-out pair.
        H = torch.zeros(self.dim, self.dim, dtype=f64)
        g = torch.zeros(self.dim, dtype=f64)
        with torch.no_grad():
            sides = ((self.view_a.basis, B.code_a, B.pose_a, B.r_a),
                     (self.view_b.basis, B.code_b, B.pose_b, B.r_b))
            for i, (basis, c, jp, r) in enumerate(sides):
                Jt = basis * c
                if jp is not None:
                    Jt = torch.cat([Jt, jp.T])
                Jt, r64 = Jt.to(f64), r.to(f64)
                Hv, gv = Jt @ Jt.T, Jt @ r64
                own = slice(i * k, (i + 1) * k)
                H[own, own] = Hv[:k, :k]
                g[own] = gv[:k]
                if jp is not None:
                    H[own, 2 * k:] = Hv[:k, k:]
                    H[2 * k:, own] = Hv[k:, :k]
                    H[2 * k:, 2 * k:] += Hv[k:, k:]
                    g[2 * k:] += gv[k:]
            w_code, w_pose = self.code_prior_weight, self.pose_prior_weight
            codes = torch.cat([B.x_code_a, B.x_code_b]).to(f64)
            H[:2 * k, :2 * k] += w_code * torch.eye(2 * k, dtype=f64)
            g[:2 * k] += w_code * codes
            if B.pose_a is not None:
                H[2 * k:, 2 * k:] += w_pose * torch.eye(6, dtype=f64)
                g[2 * k:] += w_pose * B.xi.to(f64)
            error = 0.5 * float(B.r_a.to(f64).square().sum() + B.r_b.to(f64).square().sum()
                                + w_code * codes.square().sum()
                                + w_pose * B.xi.to(f64).square().sum())
        H, g = H.to(dtype), g.to(dtype)
        return NormalEquations(H, g, error)

    def linearize_autograd(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, J) by forward-mode autograd over the whole residual (slow; the reference)."""
        x = x.detach()
        J = jacfwd(self.residual)(x)
        with torch.no_grad():
            r = self.residual(x)
        return r, J

    def zero(self) -> torch.Tensor:
        return torch.zeros(self.dim, dtype=self.view_a.image.dtype)

    def two_view_support(self, x: torch.Tensor, inside_a: torch.Tensor | None = None,
                         inside_b: torch.Tensor | None = None) -> tuple[float, float, float]:
        """How much of A's photometric disagreement with B the depth at x explains:
        ``(1 - e_x / e_inf, e_x, e_inf)``, with e the mean squared residual of A's pixels
        warped into B (normalised intensities), e_x at x's depth and pose, and e_inf with
        every point at infinity on the initial pose (calibration or odometry): the same two
        views with no depth in them. Real pairs explain 0.65-0.88 (frontend.FrontendConfig);
        a dead, black or unrelated second camera, or noise, 0.06-0.18; untextured images and
        views without baseline have e_inf ~ 0: nothing to explain.

        ``inside_a`` (H*W,) and ``inside_b`` (H, W) are 1 where a view's pixel shows its
        sensor: the black border that rectification or undistortion leaves has an edge that a
        uniform scene's depth "explains" (a flat grey pair scored 0.98 with it); only A's
        pixels inside A that land inside B count.
        """
        with torch.no_grad():
            code_a = self.split(x)[0]
            a, b = self.view_a, self.view_b
            depth = self.depth(a, code_a)
            R, t = self.pose(x)
            R0, t0 = self.T_b_a0[:3, :3], self.T_b_a0[:3, 3]
            far = torch.full_like(depth, 1e9)
            r_x, m_x = warp_residual(a.image, b.image, depth, a.K, b.K, R, t)
            r_inf, m_inf = warp_residual(a.image, b.image, far, a.K, b.K, R0, t0)
            if inside_a is not None:
                m_x, m_inf = m_x * inside_a, m_inf * inside_a
            if inside_b is not None:  # B's mask where A's pixels land (sampled minus 0)
                zero = torch.zeros_like(a.image)
                land_x, _ = warp_residual(zero, inside_b, depth, a.K, b.K, R, t)
                land_inf, _ = warp_residual(zero, inside_b, far, a.K, b.K, R0, t0)
                m_x, m_inf = m_x * (land_x > 0.99), m_inf * (land_inf > 0.99)
        e_x = float((r_x * r_x * m_x).sum() / m_x.sum().clamp_min(1.0))
        e_inf = float((r_inf * r_inf * m_inf).sum() / m_inf.sum().clamp_min(1.0))
        return 1.0 - e_x / max(e_inf, 1e-12), e_x, e_inf

    def coarse(self, factor: int = 2, blur_sigma_px: float = 0.8) -> TwoViewProblem:
        """The same problem (same x: codes and pose increment) on a pyramid level up.

        Its linearisation costs about 1/factor^2 of this one's, and its Gauss-Newton step sees
        farther: the photometric linearisation holds for about a pixel, and a coarse pixel is
        ``factor`` fine ones. The learned step uses that step as a feature
        (``LearnedStepConfig.pyramid``).
        """
        return TwoViewProblem(self.view_a.downsampled(factor, blur_sigma_px),
                              self.view_b.downsampled(factor, blur_sigma_px),
                              self.T_b_a0, self.average_depth_m, self.code_prior_weight,
                              self.optimize_pose, self.pose_prior_weight)


@dataclass
class SolverResult:
    """x after each iteration; errors[0] is the initial error, errors[i] after iteration i."""

    x: torch.Tensor
    errors: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)  # cumulative wall time after each
    name: str = ""

    @property
    def iterations(self) -> int:
        return len(self.errors) - 1


def gn_solve(H: torch.Tensor, g: torch.Tensor, damping: float = 1e-6) -> torch.Tensor:
    """The Gauss-Newton step -(H + damping I)^-1 g from the normal equations' H = J^T J and
    g = J^T r."""
    return -torch.linalg.solve(H + damping * torch.eye(H.shape[0], dtype=H.dtype), g)


def _run(
    problem: TwoViewProblem, x0: torch.Tensor | None, iterations: int, name: str,
    step: Callable[[torch.Tensor], torch.Tensor], tol: float, keep_best: bool = False,
) -> SolverResult:
    x = problem.zero() if x0 is None else x0.detach().clone()
    start = time.perf_counter()
    result = SolverResult(x, [problem.error(x)], [0.0], name)
    for _ in range(iterations):
        x_new = step(x)
        err = problem.error(x_new)
        prev = result.errors[-1]
        result.times_s.append(time.perf_counter() - start)
        if keep_best and not err <= prev:  # a rise, or a NaN from a singular step
            result.errors.append(prev)
            break
        x = x_new
        result.errors.append(err)
        result.x = x
        if abs(prev - err) <= tol * max(prev, 1e-12):
            break
    return result


def gauss_newton(
    problem: TwoViewProblem, x0: torch.Tensor | None = None, iterations: int = 20,
    tol: float = 1e-4,
) -> SolverResult:
    """Plain Gauss-Newton (no line search, no damping).

    Stops when E changes by less than ``tol`` relative, or when a step raises E or makes it
    non-finite (that step is undone and still counted): plain GN on photometric error can
    wander away from its best point, and the best point is what a user of GN keeps.
    """

    def step(x: torch.Tensor) -> torch.Tensor:
        return x + problem.normal_equations(x).gn_step()

    return _run(problem, x0, iterations, "gauss_newton", step, tol, keep_best=True)


def coarse_to_fine_gauss_newton(
    problem: TwoViewProblem, x0: torch.Tensor | None = None, iterations: int = 20,
    tol: float = 1e-4, blur_sigma_px: float = 3.0, switch_tol: float = 1e-2,
) -> SolverResult:
    """Gauss-Newton on the coarse level (``problem.coarse(2, blur_sigma_px)``) while its own
    error falls by more than ``switch_tol`` relative, then :func:`gauss_newton`'s rule on
    the fine level.

    The classical remedy for the narrow basin of a photometric error (direct methods run
    image pyramids), here as a baseline for the learned step, which reads the same coarse
    level. ``errors`` are the fine level's, after every iteration of either level (a coarse
    one costs about a quarter of a fine one); a coarse step that raises the coarse error is
    undone, counted, and ends the coarse phase.
    """
    coarse = problem.coarse(2, blur_sigma_px)
    x = problem.zero() if x0 is None else x0.detach().clone()
    start = time.perf_counter()
    result = SolverResult(x, [problem.error(x)], [0.0], "coarse_to_fine_gauss_newton")
    e_coarse = coarse.error(x)
    while result.iterations < iterations:
        x_new = x + coarse.normal_equations(x).gn_step()
        e_new = coarse.error(x_new)
        coarse_pays = e_new < e_coarse * (1.0 - switch_tol)
        if e_new < e_coarse:
            x, e_coarse = x_new, e_new
        result.errors.append(problem.error(x))
        result.times_s.append(time.perf_counter() - start)
        result.x = x
        if not coarse_pays:
            break
    left = iterations - result.iterations
    if left > 0:  # the fine level, by gauss_newton's own rule
        fine = gauss_newton(problem, x, left, tol)
        offset = result.times_s[-1]
        result.errors += fine.errors[1:]
        result.times_s += [offset + t for t in fine.times_s[1:]]
        result.x = fine.x
    return result


def levenberg_marquardt(
    problem: TwoViewProblem, x0: torch.Tensor | None = None, iterations: int = 20,
    tol: float = 1e-4, lambda0: float = 1e-2,
) -> SolverResult:
    """LM with diagonal (Marquardt) damping; a rejected step raises lambda x10 and counts."""
    lam = [lambda0]

    def step(x: torch.Tensor) -> torch.Tensor:
        eq = problem.normal_equations(x)
        H, g, e0 = eq.H, eq.g, eq.error
        for _ in range(6):
            D = torch.diag(torch.diagonal(H).clamp_min(1e-9))
            dx = -torch.linalg.solve(H + lam[0] * D, g)
            x_new = x + dx
            if problem.error(x_new) < e0:
                lam[0] = max(lam[0] / 10.0, 1e-7)
                return x_new
            lam[0] *= 10.0
        return x

    return _run(problem, x0, iterations, "levenberg_marquardt", step, tol)


def make_view(net: Any, image_u8: np.ndarray, K: np.ndarray) -> ViewTerms:
    """ViewTerms of a uint8 (H, W) image at the depth network's resolution (no gradients).

    Raises:
        SlamError: the image is not at the network's (height, width).
    """
    cfg = net.cfg
    if image_u8.shape != (cfg.height, cfg.width):
        raise SlamError(
            f"image shape {image_u8.shape!r}, expected the network's {(cfg.height, cfg.width)!r}"
        )
    img = torch.from_numpy(image_u8.astype(np.float32) / 255.0)[None, None]
    with torch.no_grad():
        prior, log_b, basis = net.image_terms(img)
    return ViewTerms(
        image=prepare_image(image_u8),
        K=torch.as_tensor(K, dtype=torch.float32),
        prior_logit=prior.reshape(-1),
        basis=basis.reshape(basis.shape[1], -1),
        log_b=log_b.reshape(-1),
    )


def make_problem(
    net: Any, image_a: np.ndarray, image_b: np.ndarray, K: np.ndarray, T_b_a0: np.ndarray,
    code_prior_weight: float = 1e-3, optimize_pose: bool = True, pose_prior_weight: float = 0.0,
    K_b: np.ndarray | None = None,
) -> TwoViewProblem:
    """Two-view problem from images at the network's resolution and an initial pose of A in B.

    ``K`` is A's intrinsics and B's too unless ``K_b`` is given.
    """
    return TwoViewProblem(
        make_view(net, image_a, K), make_view(net, image_b, K if K_b is None else K_b),
        torch.as_tensor(T_b_a0, dtype=torch.float32), float(net.cfg.average_depth_m),
        code_prior_weight, optimize_pose, pose_prior_weight,
    )
