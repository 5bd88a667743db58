"""A learned update step: a coordinate-wise LSTM over the residual state of the solver.

At each iteration every coordinate i of x = (code_a, code_b, xi) gets the features
(Gauss-Newton step dx_gn_i, squashed gradient g_i, log error, its kind: code / translation /
rotation) and the LSTM (weights shared across coordinates, state per coordinate) outputs two
numbers (alpha_i, beta_i). The update is

    dx_i = exp(alpha_i) * dx_gn_i + beta_i * dx_jacobi_i,   dx_jacobi = -g / diag(J^T J)

so the untrained network (zero output layer) is exactly Gauss-Newton, and training learns when
to lengthen, shorten or bend the GN step. Trained by unrolling on training pairs (see
``slam.training.train_optimizer``), with truncated derivatives: the features are treated as
constants and the loss differentiates through the accumulated updates only.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from meetup_ros.slam import SlamError
from meetup_ros.slam.solvers import SolverResult, TwoViewProblem, gn_solve

N_FEATURES = 8


@dataclass(frozen=True)
class LearnedStepConfig:
    hidden: int = 16


class LearnedStep(nn.Module):
    """Coordinate-wise LSTM mapping (GN step, gradient, error, kind) to an update."""

    WEIGHTS_KIND = "slam_optimizer"

    def __init__(self, cfg: LearnedStepConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LearnedStepConfig()
        self.cell = nn.LSTMCell(N_FEATURES, self.cfg.hidden)
        self.out = nn.Linear(self.cfg.hidden, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def features(problem: TwoViewProblem, r: torch.Tensor, J: torch.Tensor,
                 e0: float, dx_prev: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features (dim, N_FEATURES), GN step (dim,), Jacobi step (dim,)) at a linearisation.

        ``dx_prev`` is the previous update (zeros at the first iteration); with it the LSTM
        can extrapolate along a direction GN keeps taking.
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
        feats = torch.cat([gn_sq[:, None], g_sq[:, None], err, kind,
                           torch.full((problem.dim, 1), float(torch.log10(torch.tensor(e)))),
                           prev_sq[:, None]], 1)
        return feats.detach(), dx_gn.detach(), dx_jac.detach()

    def init_state(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(dim, self.cfg.hidden), torch.zeros(dim, self.cfg.hidden)

    def forward(
        self, feats: torch.Tensor, dx_gn: torch.Tensor, dx_jac: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = self.cell(feats, state)
        ab = self.out(h)
        alpha = ab[:, 0].clamp(-3.0, 2.0)
        beta = ab[:, 1].clamp(-2.0, 2.0)
        return torch.exp(alpha) * dx_gn + beta * dx_jac, (h, c)

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
    """
    x = problem.zero() if x0 is None else x0.detach().clone()
    start = time.perf_counter()
    state = step.init_state(problem.dim)
    dx: torch.Tensor | None = None
    with torch.no_grad():
        r, J = problem.linearize(x)
        result = SolverResult(x, [float(0.5 * (r * r).sum())], [0.0], "learned")
        e0 = result.errors[0]
        for it in range(iterations):
            feats, dx_gn, dx_jac = step.features(problem, r, J, e0, dx)
            dx, state = step(feats, dx_gn, dx_jac, state)
            x = x + dx
            if it == iterations - 1:
                err = problem.error(x)
            else:
                r, J = problem.linearize(x)
                err = float(0.5 * (r * r).sum())
            result.errors.append(err)
            result.times_s.append(time.perf_counter() - start)
            result.x = x
            prev = result.errors[-2]
            if abs(prev - err) <= tol * max(prev, 1e-12):
                break
    return result
