"""A learned update step: a coordinate-wise LSTM over the residual state of the solver.

At each iteration every coordinate i of x = (code_a, code_b, xi) gets the features
(Gauss-Newton step dx_gn_i, squashed gradient g_i, previous update dx_prev_i, its kind: code /
translation / rotation; and, shared by all coordinates, the error relative to the start and
to the previous iteration, the cosine between dx_prev and the GN step, and the pose prior's
weight) and the LSTM (weights shared across coordinates, state per coordinate) outputs two
numbers (alpha_i, beta_i), and with ``momentum`` a third, gamma_i. The update is

    dx_i = exp(alpha_i) * dx_gn_i + beta_i * dx_jacobi_i + gamma_i * dx_prev_i,
    dx_jacobi = -g / diag(J^T J)

so the untrained network (zero output layer) is exactly Gauss-Newton, and training learns when
to lengthen, shorten or bend the GN step. The momentum term is what lets it run along the
long, flat valleys of monocular pairs (depth scale against translation length), where GN
creeps for tens of iterations. Trained by unrolling on training pairs (see
``slam.training.train_optimizer``), with truncated derivatives: the features are treated as
constants and the loss differentiates through the accumulated updates only.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from meetup_ros.slam import SlamError
from meetup_ros.slam.solvers import SolverResult, TwoViewProblem, gn_solve

N_FEATURES = 11


@dataclass(frozen=True)
class LearnedStepConfig:
    hidden: int = 16
    momentum: bool = True


class LearnedStep(nn.Module):
    """Coordinate-wise LSTM mapping (GN step, gradient, error, kind) to an update."""

    WEIGHTS_KIND = "slam_optimizer"
    MAX_STEP_RATIO = 8.0  # |dx| <= this * |GN step| (alpha alone reaches e^2 = 7.4)

    def __init__(self, cfg: LearnedStepConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LearnedStepConfig()
        self.cell = nn.LSTMCell(N_FEATURES, self.cfg.hidden)
        self.out = nn.Linear(self.cfg.hidden, 3 if self.cfg.momentum else 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def features(problem: TwoViewProblem, r: torch.Tensor, J: torch.Tensor,
                 e0: float, dx_prev: torch.Tensor | None = None, e_prev: float | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features (dim, N_FEATURES), GN step (dim,), Jacobi step (dim,)) at a linearisation.

        ``dx_prev`` is the previous update and ``e_prev`` the error before it (none at the
        first iteration); with them the LSTM sees whether GN keeps going the way it went
        (extrapolate) and whether the last step paid off (brake).
        """
        # one pass over J for H and g: this is most of an iteration's cost beside linearize
        H = J.T @ J
        g = J.T @ r
        dx_gn = gn_solve(H, g)
        diag = torch.diagonal(H).clamp_min(1e-9)
        dx_jac = -g / diag
        e = float(0.5 * (r * r).sum())
        k = problem.code_dim
        kind = torch.zeros(problem.dim, 3)
        kind[: 2 * k, 0] = 1.0
        kind[2 * k: 2 * k + 3, 1] = 1.0
        kind[2 * k + 3:, 2] = 1.0
        g_sq = torch.sign(g) * torch.log1p(g.abs() * 1e4) / 10.0
        gn_sq = torch.sign(dx_gn) * torch.log1p(dx_gn.abs() * 1e3) / 10.0
        err = torch.full((problem.dim, 1), float(torch.log(torch.tensor(e / max(e0, 1e-12)))))
        prev = torch.zeros(problem.dim) if dx_prev is None else dx_prev.detach()
        prev_sq = torch.sign(prev) * torch.log1p(prev.abs() * 1e3) / 10.0
        progress = 0.0 if e_prev is None else math.log(max(e, 1e-30) / max(e_prev, 1e-30))
        cos = float(torch.nn.functional.cosine_similarity(prev, dx_gn, dim=0, eps=1e-12))
        # The pose prior's weight tells a calibrated stereo pair (GN converges in 2-3
        # iterations: take its step) from a free-pose monocular one (long valleys: run).
        globals_ = torch.tensor([float(torch.log10(torch.tensor(e))),
                                 max(-5.0, min(5.0, progress)), cos,
                                 math.log10(1.0 + problem.pose_prior_weight)])
        feats = torch.cat([gn_sq[:, None], g_sq[:, None], err, kind, prev_sq[:, None],
                           globals_.expand(problem.dim, 4)], 1)
        return feats.detach(), dx_gn.detach(), dx_jac.detach()

    def init_state(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(dim, self.cfg.hidden), torch.zeros(dim, self.cfg.hidden)

    def forward(
        self, feats: torch.Tensor, dx_gn: torch.Tensor, dx_jac: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor], dx_prev: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = self.cell(feats, state)
        ab = self.out(h)
        alpha = ab[:, 0].clamp(-3.0, 2.0)
        beta = ab[:, 1].clamp(-2.0, 2.0)
        dx = torch.exp(alpha) * dx_gn + beta * dx_jac
        if self.cfg.momentum and dx_prev is not None:
            dx = dx + ab[:, 2].clamp(-1.0, 1.0) * dx_prev.detach()
        # Trust region: the Jacobi step of a coordinate the photometric error hardly sees
        # (diag(J^T J) ~ 0) is huge, and one such step sent depth to NaN during training.
        limit = self.MAX_STEP_RATIO * torch.linalg.vector_norm(dx_gn)
        norm = torch.linalg.vector_norm(dx)
        dx = dx * torch.clamp(limit / norm.clamp_min(1e-12), max=1.0)
        return dx, (h, c)

    def metadata(self, **extra: Any) -> dict[str, Any]:
        return {"kind": self.WEIGHTS_KIND, "config": asdict(self.cfg), **extra}

    @classmethod
    def from_weights(cls, path: str | Path) -> LearnedStep:
        """Load models/slam_optimizer.pt.

        Raises:
            SlamError: missing, corrupt, of another kind, or not matching the network.
        """
        from meetup_ros.training.checkpoint import CheckpointError, load_weights

        try:
            state, meta = load_weights(Path(path), kind=cls.WEIGHTS_KIND)
        except CheckpointError as exc:
            raise SlamError(str(exc)) from exc
        try:
            net = cls(LearnedStepConfig(**dict(meta["config"])))
            net.load_state_dict(state)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise SlamError(
                f"weights file {str(path)!r} does not match the learned step: {exc}"
            ) from exc
        return net.eval()


def learned_solve(
    step: LearnedStep, problem: TwoViewProblem, x0: torch.Tensor | None = None,
    iterations: int = 5, tol: float = 1e-4,
) -> SolverResult:
    """Run the learned update for up to ``iterations`` steps (no gradients).

    The linearisation at the new point gives its error too (E = |r|^2 / 2), so each
    iteration costs one linearisation; only the last point is evaluated on its own.
    ``errors`` are the errors of the iterates as they come (with momentum they need not fall
    every time); ``x`` is the best iterate. A non-finite error ends the run (counted, like a
    rejected Gauss-Newton step). (Following a rising step with GN's step from the best point
    was measured and dropped: 0.41 instead of 0.36 of GN's iterations on the monocular pairs;
    on KITTI 06 pair 2 it stops in a basin GN's own step cannot leave, which the unguarded
    step crosses on its way to a lower minimum.)
    """
    x = problem.zero() if x0 is None else x0.detach().clone()
    start = time.perf_counter()
    state = step.init_state(problem.dim)
    dx: torch.Tensor | None = None
    with torch.no_grad():
        r, J = problem.linearize(x)
        result = SolverResult(x, [float(0.5 * (r * r).sum())], [0.0], "learned")
        e0 = best = result.errors[0]
        for it in range(iterations):
            e_prev = result.errors[-2] if len(result.errors) > 1 else None
            feats, dx_gn, dx_jac = step.features(problem, r, J, e0, dx, e_prev)
            dx, state = step(feats, dx_gn, dx_jac, state, dx)
            x = x + dx
            if it == iterations - 1:
                err = problem.error(x)
            else:
                r, J = problem.linearize(x)
                err = float(0.5 * (r * r).sum())
            result.times_s.append(time.perf_counter() - start)
            prev = result.errors[-1]
            if not math.isfinite(err):
                result.errors.append(prev)
                break
            result.errors.append(err)
            if err < best:
                best, result.x = err, x
            if abs(prev - err) <= tol * max(prev, 1e-12):
                break
    return result
