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

With ``pyramid`` the state also holds the Gauss-Newton step of the same problem one pyramid
level up (``TwoViewProblem.coarse``: half the resolution, a quarter of the cost), and the
update gains a fourth term, delta_i * dx_coarse_i. The fine step alone cannot do better than
GN's direction, and GN's direction is what limits it: on the monocular pairs 4-7 GN with the
best of 7 step lengths per iteration still needs 0.44 of plain GN's iterations, the best of
the fine and the coarse step 0.34, and on pairs 0-3, with the coarse level blurred 3 px, 0.14
(``scripts/slam_direction_ceiling.py``). A photometric linearisation holds for about a pixel;
a blurred coarse pixel is several. The coarse level is read only for problems without a pose
prior (``coarse_problem``). A second level (a quarter of the resolution, blurred 2 px) was
tried and dropped: with it the oracle needed 0.16 of GN's iterations on the training pairs
8-19 (0.22 with one level), but the step trained on it the same way gave 0.19 on pairs 0-3
(0.20), 0.86 on stereo (0.90), 0.30 on KITTI 35-49 (0.29) and 0.52 on pairs 4-7 (0.47), with
three TUM pairs not reached (2026-12-05; the oracle's second level and the step were code
that was reverted, so these figures are a record, not a command to re-run). Also tried and
dropped (2026-12-05, code reverted): two trust-region features from the fine quadratic model
(rho of the last update, and the model's decrease for the coarse step over GN's), trained as
the pyramid step was: pairs 0-3 39 of GN's 192 iterations (38 without), the TUM training
pairs 54 of 143 (53), the stereo pairs 50 of 29 (26): no gain where it was needed, and a
loss on stereo.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from meetup_ros.slam import SlamError
from meetup_ros.slam.solvers import NormalEquations, SolverResult, TwoViewProblem

if TYPE_CHECKING:
    from meetup_ros.slam.depth_code import DepthCodeModel

logger = logging.getLogger(__name__)

N_FEATURES = 11


def _squash(v: torch.Tensor, gain: float) -> torch.Tensor:
    """sign(v) log(1 + gain |v|) / 10: steps and gradients span decades; the LSTM sees O(1)."""
    return torch.sign(v) * torch.log1p(v.abs() * gain) / 10.0


@dataclass(frozen=True)
class LearnedStepConfig:
    hidden: int = 16
    momentum: bool = True
    pyramid: bool = False  # False in weights written before it existed
    # Blur of the coarse level, in its pixels: chosen on monocular pairs 0-3 with
    # scripts/slam_direction_ceiling.py (0.8 -> 3.0 took the oracle from 0.33 to 0.14 of GN's
    # iterations there): the wider the blur, the farther its GN step sees.
    pyramid_blur_px: float = 3.0

    @property
    def n_features(self) -> int:
        return N_FEATURES + 3 * int(self.pyramid)

    @property
    def n_outputs(self) -> int:
        return 2 + int(self.momentum) + int(self.pyramid)


class LearnedStep(nn.Module):
    """Coordinate-wise LSTM mapping (GN step, gradient, error, kind) to an update."""

    WEIGHTS_KIND = "slam_optimizer"
    MAX_STEP_RATIO = 8.0  # |dx| <= this * |GN step| (alpha alone reaches e^2 = 7.4)

    def __init__(self, cfg: LearnedStepConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or LearnedStepConfig()
        # what from_weights read with the weights (the depth network it was trained with)
        self.loaded_metadata: dict[str, Any] = {}
        self.cell = nn.LSTMCell(self.cfg.n_features, self.cfg.hidden)
        self.out = nn.Linear(self.cfg.hidden, self.cfg.n_outputs)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def coarse_problem(self, problem: TwoViewProblem) -> TwoViewProblem | None:
        """The pyramid level this step reads: None without ``pyramid``, and None for a
        problem with a pose prior (calibrated stereo, an odometry prior), whose start is in
        the fine level's basin already; there the coarse minimum, a little off the fine one,
        only slowed the last iterations (a step that read it on stereo pairs trailed GN by
        1.6 % at the frontend's 5 iterations, and took 1.38x GN's iterations to converge)."""
        if not self.cfg.pyramid or problem.pose_prior_weight > 0.0:
            return None
        return problem.coarse(2, self.cfg.pyramid_blur_px)

    def coarse_step(self, coarse: TwoViewProblem | None, x: torch.Tensor) -> torch.Tensor | None:
        """Gauss-Newton step of the coarse level at x: None without ``pyramid``, zero where
        the problem has no coarse level (``coarse_problem``)."""
        if not self.cfg.pyramid:
            return None
        if coarse is None:
            return torch.zeros_like(x)
        return coarse.normal_equations(x).gn_step().detach()

    @staticmethod
    def features(problem: TwoViewProblem, eq: NormalEquations,
                 e0: float, dx_prev: torch.Tensor | None = None, e_prev: float | None = None,
                 dx_coarse: torch.Tensor | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features (dim, n_features), GN step (dim,), Jacobi step (dim,)) at a linearisation
        (its normal equations ``eq``).

        ``dx_prev`` is the previous update and ``e_prev`` the error before it (none at the
        first iteration); with them the LSTM sees whether GN keeps going the way it went
        (extrapolate) and whether the last step paid off (brake). ``dx_coarse``, the coarse
        level's GN step (``pyramid`` only), adds three: per coordinate, the step itself; shared,
        how long it is against the fine step and the cosine between them. Near the fine
        minimum the fine step shrinks while the coarse one still points at the coarse
        minimum, which is not the same point: the ratio says when to stop following it (a
        step trained without these stalled 1.3 % above GN's error on TUM pair 0).
        """
        H, g, e = eq.H, eq.g, eq.error
        dx_gn = eq.gn_step()
        diag = torch.diagonal(H).clamp_min(1e-9)
        dx_jac = -g / diag
        k = problem.code_dim
        kind = torch.zeros(problem.dim, 3)
        kind[: 2 * k, 0] = 1.0
        kind[2 * k: 2 * k + 3, 1] = 1.0
        kind[2 * k + 3:, 2] = 1.0
        g_sq = _squash(g, 1e4)
        gn_sq = _squash(dx_gn, 1e3)
        err = torch.full((problem.dim, 1), float(torch.log(torch.tensor(e / max(e0, 1e-12)))))
        prev = torch.zeros(problem.dim) if dx_prev is None else dx_prev.detach()
        prev_sq = _squash(prev, 1e3)
        progress = 0.0 if e_prev is None else math.log(max(e, 1e-30) / max(e_prev, 1e-30))
        cos = float(torch.nn.functional.cosine_similarity(prev, dx_gn, dim=0, eps=1e-12))
        # The pose prior's weight tells a calibrated stereo pair (GN converges in 2-3
        # iterations: take its step) from a free-pose monocular one (long valleys: run).
        globals_ = torch.tensor([float(torch.log10(torch.tensor(e))),
                                 max(-5.0, min(5.0, progress)), cos,
                                 math.log10(1.0 + problem.pose_prior_weight)])
        parts = [gn_sq[:, None], g_sq[:, None], err, kind, prev_sq[:, None],
                 globals_.expand(problem.dim, 4)]
        if dx_coarse is not None:
            ratio = float(torch.linalg.vector_norm(dx_coarse)
                          / torch.linalg.vector_norm(dx_gn).clamp_min(1e-12))
            agree = float(torch.nn.functional.cosine_similarity(dx_coarse, dx_gn, dim=0,
                                                                eps=1e-12))
            shared = torch.tensor([max(-5.0, min(5.0, math.log(max(ratio, 1e-30)))), agree])
            parts += [_squash(dx_coarse, 1e3)[:, None], shared.expand(problem.dim, 2)]
        feats = torch.cat(parts, 1)
        return feats.detach(), dx_gn.detach(), dx_jac.detach()

    def init_state(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(dim, self.cfg.hidden), torch.zeros(dim, self.cfg.hidden)

    def forward(
        self, feats: torch.Tensor, dx_gn: torch.Tensor, dx_jac: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor], dx_prev: torch.Tensor | None = None,
        dx_coarse: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if self.cfg.pyramid and (dx_coarse is None or feats.shape[1] != self.cfg.n_features):
            raise SlamError("this learned step reads the coarse level's GN step (pyramid): "
                            "pass dx_coarse to features() and to the step")
        # the LSTM's own precision: a float64 problem's features crashed inside it with
        # torch's dtype message (a tester's); dx keeps the problem's precision below
        h, c = self.cell(feats.to(self.out.weight.dtype), state)
        ab = self.out(h)
        alpha = ab[:, 0].clamp(-3.0, 2.0)
        beta = ab[:, 1].clamp(-2.0, 2.0)
        dx = torch.exp(alpha) * dx_gn + beta * dx_jac
        if self.cfg.momentum and dx_prev is not None:
            dx = dx + ab[:, 2].clamp(-1.0, 1.0) * dx_prev.detach()
        reach = torch.linalg.vector_norm(dx_gn)
        if self.cfg.pyramid and dx_coarse is not None:
            dx = dx + ab[:, -1].clamp(-2.0, 4.0) * dx_coarse
            reach = torch.maximum(reach, torch.linalg.vector_norm(dx_coarse))
        # Trust region: the Jacobi step of a coordinate the photometric error hardly sees
        # (diag(J^T J) ~ 0) is huge, and one such step sent depth to NaN during training.
        limit = self.MAX_STEP_RATIO * reach
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
        net.loaded_metadata = dict(meta)
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
        coarse = step.coarse_problem(problem)
        eq = problem.normal_equations(x)
        result = SolverResult(x, [eq.error], [0.0], "learned")
        e0 = best = result.errors[0]
        for it in range(iterations):
            e_prev = result.errors[-2] if len(result.errors) > 1 else None
            dx_coarse = step.coarse_step(coarse, x)
            feats, dx_gn, dx_jac = step.features(problem, eq, e0, dx, e_prev, dx_coarse)
            dx, state = step(feats, dx_gn, dx_jac, state, dx, dx_coarse)
            x = x + dx
            if it == iterations - 1:
                err = problem.error(x)
            else:
                eq = problem.normal_equations(x)
                err = eq.error
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


def depth_network_digest(model: DepthCodeModel) -> str:
    """SHA-256 (hex) over the depth network's tensors, by name (each one's
    ``checkpoint.tensor_digest``): the same for every copy or re-save of the same weights,
    wherever the file lies, and another for any other network."""
    from meetup_ros.training.checkpoint import tensor_digest

    digest = hashlib.sha256()
    for name, tensor in sorted(model.net.state_dict().items()):
        digest.update(f"{name}:{tensor_digest(tensor)}\n".encode())
    return digest.hexdigest()


def check_depth_pairing(depth_model: DepthCodeModel, depth_weights: str | Path,
                        optimizer_weights: str | Path,
                        metadata: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """Whether the learned step in ``optimizer_weights`` was trained with this depth network:
    ``("matches" | "mismatch" | "unknown", what was found)``; a mismatch is also a warning,
    an unknown an info line.

    Nothing compared them: a code_dim 8 network ran with the shipped 32-code step without a
    word (a tester's learned/GN 1.2 on the monocular pairs). Steps trained since record the
    network's ``depth_code_dim`` and ``depth_weights_sha256``
    (:func:`depth_network_digest`); older ones (the shipped models/slam_optimizer.pt) record
    only a path, which says nothing on another machine: "unknown", not a warning, so the
    shipped pair loads quietly. Not a refusal: the step runs on any code size, and a user
    may pair them on purpose.

    ``metadata``: the step's, as :meth:`LearnedStep.from_weights` read it (``.loaded_metadata``);
    None reads it from ``optimizer_weights``.

    Raises:
        SlamError: ``optimizer_weights`` is missing, corrupt or of another kind.
    """
    if metadata is None:
        from meetup_ros.training.checkpoint import CheckpointError, load_weights

        try:
            _, metadata = load_weights(Path(optimizer_weights), kind=LearnedStep.WEIGHTS_KIND)
        except CheckpointError as exc:
            raise SlamError(str(exc)) from exc
    meta = metadata
    code_dim, digest = meta.get("depth_code_dim"), meta.get("depth_weights_sha256")
    if code_dim is None and digest is None:
        text = (f"learned step {str(optimizer_weights)!r} records no digest of the depth "
                "network it was trained with (written before it did): its pairing with "
                f"{str(depth_weights)!r} is not checked")
        logger.info(text)
        return "unknown", text
    here = depth_network_digest(depth_model)
    if code_dim == depth_model.cfg.code_dim and digest == here:
        return "matches", (f"learned step {str(optimizer_weights)!r} was trained with the "
                           f"depth network in {str(depth_weights)!r}")
    what = (f"code_dim {code_dim} there, {depth_model.cfg.code_dim} here"
            if code_dim != depth_model.cfg.code_dim
            else f"other weights of the same code_dim {code_dim}")
    text = (f"learned step {str(optimizer_weights)!r} was trained with another depth network "
            f"than {str(depth_weights)!r} ({what}; SHA-256 {str(digest)[:12]}... there, "
            f"{here[:12]}... here; it was trained with {meta.get('depth_weights')!r}): its "
            "iteration counts hold for that network; expected the depth weights it was "
            "trained with, or a step retrained with `meetup-ros train optimizer --set "
            f"depth_weights={depth_weights}`")
    logger.warning(text)
    return "mismatch", text
