"""Branch and bound: prove ``min_x max_j margin_j(x) > 0`` per disjunct, or find ``x`` with
all margins <= 0.

For each disjunct the network's last layer is extended by the margins ``coeffs @ y - rhs``.
A domain (a sub-box, plus ReLU sign splits in ReLU-splitting mode) is closed when some margin
row has a CROWN lower bound above ``proof_margin`` on all of it: the unsafe conjunction needs
every margin <= 0, so one row positive everywhere rules the domain out. Domains are processed
best-first (smallest best-row bound first), a batch at a time; each is split in two along the
input dimension with the largest estimated bound improvement ``|A_i| (u_i - l_i)`` or on the
unstable ReLU with the largest relaxation gap. A sampling + PGD falsifier runs first, the
bound minimisers of each new domain are tried as counterexamples, and every counterexample
is re-checked by :func:`falsify.confirm` (float64 and onnxruntime, and against the property as
written: bounds not rounded, strict ones strict) before "sat". Domains that
can no longer be split usefully go to the exact MIP; while the search goes on, a share of the
time goes to MIP probes on the open domain whose points came closest to a violation (this
finds counterexamples whose margins are ~1e-5, far below what sampling reaches). Out of time
-> "timeout" with the open domains returned so a caller (the runtime monitor) can resume them.

Slope optimisation: the root gets alpha-CROWN; once a search holds ``alpha_min_open`` open
domains (a hard instance), every batch's children get ``alpha_steps`` steps too, started from
their parent's optimised slopes (kept per domain), so a few steps per generation keep the
slopes near their optimum as the boxes shrink. Easy instances never pay for it. This is what
decides ACAS Xu 3_3 and 4_2 with property 2 and 1_1 with property 5 (smallest max-margin
~1e-3 of the outputs' spread; ``scripts/acasxu_margin_probe.py``), which plain CROWN left
open after 116 s with 10^4 domains.

Falsification on wide boxes: ACAS Xu 1_9 with property 7 (the whole input range) is
violated only in a sliver: 20 000 x 200 sign-PGD steps from random starts came no closer than
a max-margin of 5e-4, while the best of 65 536 uniform points lie near it and a few Adam steps
from them reach it. So every ``screen_every_s`` of a long search the falsifier restarts over
the whole box from such screened points (about 0.15 s a round, one in seven finding it); two
benchmark runs found that counterexample in 4 and 39 s, where the bounds could not have
closed a box that wide in 116 s.

Known limits: ReLU splitting has no Lagrangian (beta-CROWN) treatment of the split
constraints, so a domain with every ReLU fixed is still bounded over its whole box; such
leaves are split on the input instead, which is complete but slow for many inputs. Only the
final layer's slopes are optimised; intermediate bounds keep the adaptive slopes.

Soundness and floating point: a proof covers the network as it is deployed, evaluated in
float32 operation by operation (``rounding``; onnxruntime, any summation order): every
pre-activation carries its rounding error as a bounded perturbation through CROWN and the
MIP, and a box on which float32 could overflow is never proven. Before, proofs were about
exact arithmetic only (a tester's network with 1e8 weights was proven and violated in
float32). A candidate counterexample must still be a violation in float64 and onnxruntime,
so a property violated only by float32 rounding ends "timeout" (undecided), not "sat".
The bounds' own float64 arithmetic is not modelled separately: its rounding is 2^29 times
finer than the float32 allowance every bound now carries, plus ``proof_margin`` (1e-9).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from meetup_ros.verification import VerificationInputError
from meetup_ros.verification.bounds.crown import crown_bounds, max_of_rows_lower_bound
from meetup_ros.verification.bounds.interval import interval_bounds
from meetup_ros.verification.falsify import (
    confirm,
    forward_layers,
    pgd_search,
    spec_layers,
    spec_rounding,
)
from meetup_ros.verification.network import Network
from meetup_ros.verification.rounding import FORMATS
from meetup_ros.verification.spec import ExactDisjunct, Property

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BabConfig:
    """Branch-and-bound settings.

    Attributes:
        batch_size: domains bounded together per step (children = 2 x batch).
        split: "input", "relu" or "auto" (input splitting for <= 16 inputs).
        alpha_steps_root: alpha-CROWN steps on the root domain; alpha_steps: on each batch's
            children (warm-started from the parent's slopes) once at least
            ``alpha_min_open`` domains are open.
        falsify_samples/falsify_steps: the falsifier's random starts and PGD steps.
        screen_every_s, screen_samples, screen_steps: during a long search, every
            ``screen_every_s`` of it the falsifier runs again over the whole box: Adam steps
            from the best of ``screen_samples`` fresh uniform points (a violation in a sliver
            of a wide box; 0 = never).
        proof_margin: a row's lower bound must exceed this to close a domain (float64
            rounding guard).
        min_width: input domains narrower than this in every dimension go to the MIP.
        split_candidates: input dimensions tried per split (bound-improvement choice);
            1 = the estimate alone.
        initial_sec_per_domain: a guess of the bounding cost before the first measurement
            (sizes the first batch under a tight deadline); None = no limit at first.
        split_mix: weight of the better child's bound in the split score.
        max_aspect: split the relatively widest dimension once it is this many times wider
            (relative to the root box) than the narrowest, if its estimated influence
            ``|A_i| w_i`` is at least ``aspect_influence`` times the largest.
        max_domains: open domains kept before giving up on splitting (-> MIP / timeout).
        use_mip: allow the exact MIP on leftovers (needs highspy).
        mip_share, mip_probe_s: the share of the run time the MIP may spend on open domains
            while branch and bound goes on (each call at most ``mip_probe_s``): the domain
            whose sampled points came closest to a violation is solved exactly, which finds
            counterexamples with margins far below the falsifier's reach and closes domains
            near a tight spot that linear bounds would split thousands of times. 0 = never.
        mip_probe_rel: a domain is probed only if its points came within this fraction of
            the max-margin's spread over the box (sampled) of a violation; farther away the
            MIP costs time without closing what splitting would not close sooner.
        seed: falsifier seed.
    """

    batch_size: int = 256
    split: str = "auto"
    alpha_steps_root: int = 20
    alpha_steps: int = 2
    alpha_min_open: int = 512
    falsify_samples: int = 512
    falsify_steps: int = 30
    screen_every_s: float = 1.0
    screen_samples: int = 65536
    screen_steps: int = 60
    proof_margin: float = 1e-9
    min_width: float = 1e-7
    split_candidates: int = 3
    initial_sec_per_domain: float | None = None
    max_aspect: float = 8.0
    split_mix: float = 0.5
    aspect_influence: float = 0.25
    max_domains: int = 1_000_000
    use_mip: bool = True
    mip_share: float = 0.2
    mip_probe_s: float = 2.0
    mip_probe_rel: float = 0.01
    seed: int = 0


@dataclass
class Frontier:
    """Open domains of one disjunct: boxes ``(N, n)``, bounds ``(N,)``, optional ReLU splits."""

    lower: torch.Tensor
    upper: torch.Tensor
    bound: torch.Tensor
    splits: list[torch.Tensor] | None = None
    direction: torch.Tensor | None = None  # (N, n) coefficients of the best linear bound
    combo: torch.Tensor | None = None  # (N, k) convex weights over the margin rows
    pre: torch.Tensor | None = None  # (N, 2 H) pre-activation lower then upper bounds
    probe: torch.Tensor | None = None  # (N,) smallest max-margin seen at the domain's points
    slopes: torch.Tensor | None = None  # (N, rows, H) alpha-CROWN slopes (-1: none yet)

    def __len__(self) -> int:
        return int(self.lower.shape[0])

    def restrict(self, lower: np.ndarray, upper: np.ndarray) -> Frontier:
        """Domains intersected with a sub-box; those left empty are dropped.

        Bounds stay valid: a minimum over a subset is at least the minimum over the set.
        """
        lo = torch.maximum(self.lower, torch.as_tensor(lower, dtype=self.lower.dtype))
        up = torch.minimum(self.upper, torch.as_tensor(upper, dtype=self.upper.dtype))
        keep = (lo <= up).all(-1)
        kept = self.select(keep)
        kept.lower, kept.upper = lo[keep], up[keep]
        return kept

    def select(self, index: torch.Tensor) -> Frontier:
        """The domains at ``index``."""
        return Frontier(
            self.lower[index], self.upper[index], self.bound[index],
            None if self.splits is None else [s[index] for s in self.splits],
            None if self.direction is None else self.direction[index],
            None if self.combo is None else self.combo[index],
            None if self.pre is None else self.pre[index],
            None if self.probe is None else self.probe[index],
            None if self.slopes is None else self.slopes[index],
        )

    @staticmethod
    def concat(a: Frontier, b: Frontier) -> Frontier:
        """Domains of both."""
        def cat(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None or y is None else torch.cat([x, y])

        splits = None if a.splits is None or b.splits is None else [
            torch.cat([x, y]) for x, y in zip(a.splits, b.splits, strict=True)]
        return Frontier(torch.cat([a.lower, b.lower]), torch.cat([a.upper, b.upper]),
                        torch.cat([a.bound, b.bound]), splits, cat(a.direction, b.direction),
                        cat(a.combo, b.combo), cat(a.pre, b.pre), cat(a.probe, b.probe),
                        _cat_slopes(a.slopes, len(a), b.slopes, len(b)))


def _cat_slopes(a: torch.Tensor | None, na: int, b: torch.Tensor | None, nb: int
                ) -> torch.Tensor | None:
    """Stack two sets of stored slopes; missing domains or rows are -1 (start afresh)."""
    if a is None and b is None:
        return None
    ref = a if a is not None else b
    assert ref is not None
    rows = max(x.shape[1] for x in (a, b) if x is not None)

    def full(x: torch.Tensor | None, n: int) -> torch.Tensor:
        out = torch.full((n, rows, ref.shape[2]), -1.0, dtype=ref.dtype)
        if x is not None:
            out[:, : x.shape[1]] = x
        return out

    return torch.cat([full(a, na), full(b, nb)])


@dataclass
class DisjunctOutcome:
    """Outcome for one disjunct: "unsat", "sat" (with x, y) or "timeout" (with frontier)."""

    status: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    frontier: Frontier | None = None
    domains: int = 0
    reason: str = ""


@dataclass
class Result:
    """Outcome of :func:`verify`: status "sat" | "unsat" | "timeout" | "error"."""

    status: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    stats: dict[str, float | int | str] = field(default_factory=dict)


def _choose_split_mode(config: BabConfig, n_inputs: int, n_relu_layers: int = 1) -> str:
    if config.split == "auto" or (config.split == "relu" and n_relu_layers == 0):
        # without a ReLU there is nothing but the box to split (a tester's one-Gemm network
        # of 2048 inputs ended in torch.cat of no scores)
        return "input" if n_inputs <= 16 or n_relu_layers == 0 else "relu"
    if config.split not in ("input", "relu"):
        raise VerificationInputError(f"split mode {config.split!r}; expected input, relu or auto")
    return config.split


class _Solver:
    """Branch and bound for one disjunct (margins folded into the network)."""

    def __init__(
        self,
        network: Network,
        coeffs: np.ndarray,
        rhs: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        config: BabConfig,
        deadline: float,
        generator: torch.Generator | None = None,
        exact: ExactDisjunct | None = None,
    ) -> None:
        self.network = network
        self.exact = exact  # the disjunct as written, which a counterexample must meet
        self.coeffs = np.asarray(coeffs, dtype=np.float64)
        self.rhs = np.asarray(rhs, dtype=np.float64)
        self.lower_np = np.asarray(lower, dtype=np.float64)
        self.upper_np = np.asarray(upper, dtype=np.float64)
        self.config = config
        self.deadline = deadline
        self.layers = spec_layers(network, self.coeffs, self.rhs)
        self.rounding = spec_rounding(network, self.coeffs)
        self.margin = config.proof_margin + self._float64_allowance(network)
        self.mode = _choose_split_mode(config, network.n_inputs, len(network.weights) - 1)
        self.domains = 0
        # The caller's generator when it resumes a search over several calls, so that a
        # later round does not redraw the falsifier's points of an earlier one.
        self.generator = generator or torch.Generator().manual_seed(config.seed)
        width = torch.as_tensor(self.upper_np - self.lower_np)
        self.root_width = torch.where(width > 0, width, torch.ones_like(width))
        self.sec_per_domain: float | None = config.initial_sec_per_domain
        # The search's own clock: the time spent inside run(), summed over the calls that
        # resume it. The MIP's share and the screening rounds are paced on it, so a search
        # paused and resumed (verify's rounds over several disjuncts) takes the same path as
        # one run straight through, whatever the other disjuncts did in between.
        self.active_s = 0.0
        self.resumed_at = time.monotonic()
        self.last_screen = 0.0
        self.iteration = 0
        self.mip_s = 0.0  # time spent in MIP probes
        self.scale: float | None = None  # the max-margin's spread over the box, when needed
        # Domains too small to split that the MIP did not settle (or may not run on): still
        # open, so part of every frontier handed back, and never "unsat" while any remain.
        self.stuck: Frontier | None = None
        self.stuck_reason = ""

    # -- helpers ----------------------------------------------------------------------------
    def _time_left(self) -> float:
        return self.deadline - time.monotonic()

    def _elapsed(self) -> float:
        return self.active_s + time.monotonic() - self.resumed_at

    def _bound(self, lower: torch.Tensor, upper: torch.Tensor,
               splits: list[torch.Tensor] | None, alpha_steps: int,
               combo: torch.Tensor | None = None, pre: torch.Tensor | None = None,
               slopes: torch.Tensor | None = None) -> Frontier:
        """Bound domains; returns them as a frontier with bound, direction and weights.

        The bound of a domain is the best of: each margin row's CROWN bound, the CROWN bound
        of the parent's convex combination of the rows (``combo``) and the best convex
        combination of all those linear bounds; each is a lower bound of ``max_j margin_j``.
        """
        self.domains += int(lower.shape[0])
        k = self.coeffs.shape[0]
        use_combo = combo is not None and k > 1
        combos = combo.unsqueeze(1) if combo is not None and use_combo else None
        known = None
        if pre is not None:
            sizes = self.network.hidden_sizes
            lows = torch.split(pre[:, : sum(sizes)], sizes, dim=1)
            ups = torch.split(pre[:, sum(sizes):], sizes, dim=1)
            known = list(zip(lows, ups, strict=True))
        res = crown_bounds(self.layers, lower, upper, splits, alpha_steps=alpha_steps,
                           combos=combos, known=known, alpha_init=slopes,
                           rounding=self.rounding)
        if k > 1:
            best, lam = max_of_rows_lower_bound(res.A, res.c, lower, upper)
            best = torch.maximum(best, res.lower.max(-1).values)
            weights = lam[:, :k]
            if use_combo:
                assert combo is not None
                weights = weights + lam[:, k:] * combo
            direction = (lam.unsqueeze(-1) * res.A).sum(1)
        else:
            best = res.lower[:, 0]
            weights = torch.ones_like(best).unsqueeze(-1)
            direction = res.A[:, 0]
        # A bound that overflowed (inf - inf = nan, or inf) proves nothing: a NaN bound failed
        # the "still open" test and was dropped as proven (a tester's box of +-1e200).
        best = torch.where(torch.isfinite(best), best, torch.full_like(best, -float("inf")))
        best = torch.where(res.infeasible, torch.full_like(best, float("inf")), best)
        new_pre = torch.cat([*res.pre_lower, *res.pre_upper], 1) if res.pre_lower else None
        # Slopes are kept in float32: a warm start needs no more, and a hard instance holds
        # ~10^4 open domains of (rows x hidden) slopes each.
        kept = slopes if res.slopes is None else res.slopes.to(torch.float32)
        return Frontier(lower, upper, best, splits, direction, weights, new_pre, None, kept)

    def _check_domains(self, domains: Frontier) -> DisjunctOutcome | None:
        """Try each open domain's centre and its linear bound's minimising corner.

        Sets ``domains.probe`` to the smaller max-margin of the two (+inf for closed ones).
        """
        live = torch.isfinite(domains.bound)
        domains.probe = torch.full_like(domains.bound, float("inf"))
        if not bool(live.any()):
            return None
        assert domains.direction is not None
        corner = torch.where(domains.direction > 0, domains.lower, domains.upper)
        centre = (domains.lower + domains.upper) / 2
        points = torch.cat([corner[live], centre[live]])
        with torch.no_grad():
            value = forward_layers(self.layers, points).max(-1).values
        m = int(live.sum())
        domains.probe[live] = torch.minimum(value[:m], value[m:])
        return self._confirm_points(points, value)

    def _try_points(self, points: torch.Tensor) -> DisjunctOutcome | None:
        """Check candidate points ``(P, n)``; a confirmed counterexample ends the search."""
        with torch.no_grad():
            value = forward_layers(self.layers, points).max(-1).values
        return self._confirm_points(points, value)

    def _confirm_points(self, points: torch.Tensor, value: torch.Tensor
                        ) -> DisjunctOutcome | None:
        """Re-check the points whose max-margin is <= 0 (at most 8) with :func:`confirm`."""
        for i in torch.nonzero(value <= 0).flatten()[:8].tolist():
            found = confirm(self.network, self.coeffs, self.rhs, self.lower_np, self.upper_np,
                            points[i].numpy(), self.exact)
            if found is not None:
                return DisjunctOutcome("sat", found[0], found[1], domains=self.domains)
        return None

    def _falsify(self, samples: int, steps: int, starts: torch.Tensor | None = None,
                 lower: torch.Tensor | None = None, upper: torch.Tensor | None = None,
                 screen: int = 0) -> DisjunctOutcome | None:
        lo = torch.as_tensor(self.lower_np) if lower is None else lower
        up = torch.as_tensor(self.upper_np) if upper is None else upper
        x, value = pgd_search(self.layers, lo, up, samples, steps, self.generator,
                              self.deadline, starts, screen)
        if value <= 0:
            return self._try_points(x.unsqueeze(0))
        return None

    # -- main loop -----------------------------------------------------------------------------
    def run(self, frontier: Frontier | None = None, pause_at: float | None = None
            ) -> DisjunctOutcome:
        """Search until decided, the deadline, or ``pause_at`` (monotonic): then "timeout"
        with the open domains, which a later call on the same solver resumes."""
        self.resumed_at = time.monotonic()
        try:
            return self._run(frontier, pause_at)
        finally:
            self.active_s += time.monotonic() - self.resumed_at

    def _float64_allowance(self, network: Network) -> float:
        """What the bounds' own float64 arithmetic may be off by, per margin row: 2^-36 of
        the largest term any of it adds (|coeffs| |W_L| ... |W_1| |x| + |b| terms + |rhs|).
        Negligible beside the float32 allowance (2^-24 of every operation) unless a network
        has almost no operation: a tester's y = relu(x) near 2^53 with margin rows of
        integer coefficients near 2^52 was proven with an equality, by a float64 rounding."""
        h = np.maximum(np.abs(self.lower_np), np.abs(self.upper_np))
        for W, b in zip(network.weights, network.biases, strict=True):
            h = np.abs(W) @ h + np.abs(b)
        terms = np.abs(self.coeffs) @ h + np.abs(self.rhs)
        return float(2.0 ** -36 * terms.max()) if terms.size else 0.0

    def _with_stuck(self, frontier: Frontier) -> Frontier:
        """Every open domain: the frontier and the domains set aside as too small to split."""
        if self.stuck is None or len(self.stuck) == 0:
            return frontier
        if len(frontier) == 0:
            return self.stuck
        return Frontier.concat(frontier, self.stuck)

    def _run(self, frontier: Frontier | None, pause_at: float | None) -> DisjunctOutcome:
        cfg = self.config
        margin = self.margin
        # A resumed frontier holds the domains set aside before: they are searched again.
        self.stuck, self.stuck_reason = None, ""
        if frontier is None:
            lo = torch.as_tensor(self.lower_np).unsqueeze(0)
            up = torch.as_tensor(self.upper_np).unsqueeze(0)
            splits = None
            if self.mode == "relu":
                splits = [torch.zeros(1, h, dtype=torch.int8) for h in self.network.hidden_sizes]
            root = self._bound(lo, up, splits, cfg.alpha_steps_root)
            if bool(root.bound[0] > margin):
                return DisjunctOutcome("unsat", domains=self.domains)
            found = self._check_domains(root)
            if found is None and cfg.falsify_samples > 0:
                found = self._falsify(cfg.falsify_samples, cfg.falsify_steps)
            if found is not None:
                return found
            frontier = root
        while len(frontier) > 0:
            if self._time_left() <= 0:
                frontier = self._with_stuck(frontier)
                return DisjunctOutcome("timeout", frontier=frontier, domains=self.domains,
                                       reason=f"deadline with {len(frontier)} open domains")
            if len(frontier) > cfg.max_domains:
                return self._leftover_to_mip(self._with_stuck(frontier),
                                             "too many open domains")
            self.iteration += 1
            # Best-first: the batch with the smallest bounds, sized so that one step (about
            # 2 x split_candidates bounded children per parent) fits in the time left.
            n_pick = min(cfg.batch_size, len(frontier))
            if self.sec_per_domain is not None:
                per_parent = self.sec_per_domain * 2 * max(cfg.split_candidates, 1)
                n_pick = max(1, min(n_pick, int(self._time_left() / per_parent)))
            step_start, step_domains = time.monotonic(), self.domains
            # Slope optimisation pays only once the search is large (a hard instance).
            alpha_steps = cfg.alpha_steps if len(frontier) >= cfg.alpha_min_open else 0
            order = torch.argsort(frontier.bound)
            pick, rest = order[:n_pick], order[n_pick:]
            batch = frontier.select(pick)
            if self.mode == "input":
                children, leftovers = self._split_input(batch, alpha_steps)
            else:
                children, leftovers = self._split_relu(batch, alpha_steps)
            if leftovers is not None and len(leftovers) > 0:
                out = self._leftover_to_mip(leftovers, "domains too small to split")
                if out.status == "sat":
                    return out
                if out.status != "unsat":
                    # Set aside, and the search goes on over the rest (a counterexample may
                    # be there). Handed back before as the whole frontier, these alone were
                    # resumed, the rest lost: a region with a counterexample was "proven".
                    self.stuck = leftovers if self.stuck is None else Frontier.concat(
                        self.stuck, leftovers)
                    self.stuck_reason = out.reason
            new_frontier = frontier.select(rest)
            if children is not None:
                found = self._check_domains(children)
                if found is not None:
                    return found
                kids = children.select(children.bound <= margin)
                if new_frontier.splits is None and kids.splits is not None:
                    new_frontier.splits = [s[:0] for s in kids.splits]
                new_frontier = Frontier.concat(new_frontier, kids)
            frontier = new_frontier
            if self.domains > step_domains:
                rate = (time.monotonic() - step_start) / (self.domains - step_domains)
                self.sec_per_domain = rate if self.sec_per_domain is None else (
                    0.5 * self.sec_per_domain + 0.5 * rate)
            if (cfg.screen_every_s > 0 and cfg.falsify_samples > 0 and len(frontier) > 0
                    and self._elapsed() - self.last_screen >= cfg.screen_every_s):
                # Fresh screened starts over the whole box, a small share of the time.
                found = self._falsify(cfg.falsify_samples, cfg.screen_steps,
                                      screen=cfg.screen_samples)
                self.last_screen = self._elapsed()
                if found is not None:
                    return found
            if self.iteration % 25 == 0 and len(frontier) > 0 and cfg.falsify_samples > 0:
                # A PGD round inside the currently worst domain.
                i = int(torch.argmin(frontier.bound))
                found = self._falsify(64, cfg.falsify_steps, None, frontier.lower[i],
                                      frontier.upper[i])
                if found is not None:
                    return found
            if cfg.use_mip and cfg.mip_share > 0 and len(frontier) > 0:
                found, frontier = self._mip_probe(frontier)
                if found is not None:
                    return found
            # Checked after a step, so every call makes progress.
            if pause_at is not None and len(frontier) > 0 and time.monotonic() >= pause_at:
                frontier = self._with_stuck(frontier)
                return DisjunctOutcome("timeout", frontier=frontier, domains=self.domains,
                                       reason=f"paused with {len(frontier)} open domains")
        if self.stuck is not None and len(self.stuck) > 0:
            return DisjunctOutcome("timeout", frontier=self.stuck, domains=self.domains,
                                   reason=f"{len(self.stuck)} open domains: {self.stuck_reason}")
        return DisjunctOutcome("unsat", domains=self.domains)

    def _spread(self, samples: int = 256) -> float:
        """max - min of the max-margin at random points of the disjunct's box."""
        lower, upper = torch.as_tensor(self.lower_np), torch.as_tensor(self.upper_np)
        x = lower + torch.rand(samples, lower.shape[0], dtype=lower.dtype,
                               generator=self.generator) * (upper - lower)
        with torch.no_grad():
            value = forward_layers(self.layers, x).max(-1).values
        return float(value.max() - value.min())

    def _mip_probe(self, frontier: Frontier) -> tuple[DisjunctOutcome | None, Frontier]:
        """Solve the most suspicious open domain exactly, within the MIP's share of the time.

        Suspicious: the smallest max-margin at its sampled points. "unsat" with a positive
        dual bound closes the domain; a primal point is re-checked like any counterexample;
        otherwise the domain stays open and is not probed again (its children will be).
        """
        cfg = self.config
        budget = cfg.mip_share * self._elapsed() - self.mip_s
        limit = min(cfg.mip_probe_s, budget, self._time_left())
        if limit < 0.1 or frontier.probe is None:
            return None, frontier
        if self.scale is None:  # only runs long enough to probe pay for the sampling
            self.scale = self._spread()
        j = int(torch.argmin(frontier.probe))
        if not bool(frontier.probe[j] <= self.config.mip_probe_rel * self.scale):
            return None, frontier
        from meetup_ros.verification.mip import solve_min_max_margin

        started = time.monotonic()
        splits = None if frontier.splits is None else [s[j].numpy() for s in frontier.splits]
        out = solve_min_max_margin(self.network, self.coeffs, self.rhs,
                                   frontier.lower[j].numpy(), frontier.upper[j].numpy(),
                                   time_limit_s=limit, splits=splits)
        self.mip_s += time.monotonic() - started
        logger.debug("MIP probe on a domain (probe %.3g): %s, dual %.3g",
                     float(frontier.probe[j]), out.status, out.dual_bound)
        if out.status == "unsat" and out.dual_bound > cfg.proof_margin:
            keep = torch.ones(len(frontier), dtype=torch.bool)
            keep[j] = False
            return None, frontier.select(keep)
        if out.x is not None:
            found = self._try_points(torch.as_tensor(out.x).unsqueeze(0))
            if found is not None:
                return found, frontier
        frontier.probe[j] = float("inf")
        return None, frontier

    # -- splitting -------------------------------------------------------------------------------
    def _split_input(self, batch: Frontier, alpha_steps: int):
        """Halve each box along its best dimension; boxes too small go to the leftovers."""
        lo, up = batch.lower, batch.upper
        width = up - lo
        tiny = (width <= self.config.min_width).all(-1)
        leftovers = None
        if bool(tiny.any()):
            leftovers = batch.select(tiny)
            lo, up, width = lo[~tiny], up[~tiny], width[~tiny]
        if lo.shape[0] == 0:
            return None, leftovers
        # Candidate dimensions: the two with the largest estimated improvement of the best
        # row's linear bound (halving dimension i halves its box term |A_i| r_i) and the
        # widest relative to the root box (the relaxation error the estimate cannot see).
        # Each candidate split is bounded and the one whose worse child is best is kept.
        assert batch.direction is not None
        A = batch.direction[~tiny]
        splittable = width > self.config.min_width
        smear = torch.where(splittable, A.abs() * width + 1e-12 * width,
                            torch.full_like(width, -1.0))
        relative = torch.where(splittable, width / self.root_width, torch.full_like(width, -1.0))
        n_smear = min(max(self.config.split_candidates - 1, 1), lo.shape[1])
        cands = torch.cat([torch.topk(smear, n_smear, dim=-1).indices,
                           relative.argmax(-1, keepdim=True)], -1)
        if self.config.split_candidates <= 1:
            cands = cands[:, :1]
        P, c = cands.shape
        mid = (lo + up) / 2
        lo_c = lo.unsqueeze(1).expand(P, c, -1)
        up_c = up.unsqueeze(1).expand(P, c, -1)
        onehot = torch.nn.functional.one_hot(cands, lo.shape[1]).bool()
        mid_c = mid.unsqueeze(1).expand(P, c, -1)
        left_up = torch.where(onehot, mid_c, up_c)
        right_lo = torch.where(onehot, mid_c, lo_c)
        c_lo = torch.stack([lo_c, right_lo], 2).reshape(P * c * 2, -1)
        c_up = torch.stack([left_up, up_c], 2).reshape(P * c * 2, -1)
        combo = None
        if batch.combo is not None:
            combo = batch.combo[~tiny].unsqueeze(1).expand(P, c * 2, -1).reshape(P * c * 2, -1)
        splits = None
        if batch.splits is not None:
            splits = [s[~tiny].unsqueeze(1).expand(P, c * 2, -1).reshape(P * c * 2, -1)
                      for s in batch.splits]
        pre = None
        if batch.pre is not None:
            pre = batch.pre[~tiny].unsqueeze(1).expand(P, c * 2, -1).reshape(P * c * 2, -1)
        slopes = None
        if batch.slopes is not None:
            sl = batch.slopes[~tiny]
            slopes = sl.unsqueeze(1).expand(P, c * 2, *sl.shape[1:]).reshape(
                P * c * 2, *sl.shape[1:])
        kids = self._bound(c_lo, c_up, splits, alpha_steps, combo, pre, slopes)
        if c == 1:
            return kids, leftovers
        pair = kids.bound.view(P, c, 2).clamp(max=self.config.proof_margin)
        # The worse child's bound, plus a little of the better one's (a split that settles
        # half the box is progress too) and of relative width (breaks near-ties toward the
        # dimension split least so far).
        w = self.config.split_mix
        score = pair.min(-1).values + w * pair.max(-1).values
        rel_c = relative.gather(1, cands)
        score = score + 1e-3 * score.abs().clamp(min=1e-12) * rel_c
        choice = score.argmax(-1)
        # Greedy choice can starve a dimension whose split pays off only later; once the box
        # is much thinner in some dimension than in the widest (relative to the root box)
        # and the widest still matters to the bound, split the widest (the last candidate).
        rel_min = torch.where(splittable, relative, torch.full_like(relative, float("inf")))
        widest = cands[:, -1:]
        influence = smear.gather(1, widest)[:, 0]
        matters = influence >= self.config.aspect_influence * smear.max(-1).values
        lopsided = matters & (
            relative.max(-1).values > self.config.max_aspect * rel_min.min(-1).values)
        choice = torch.where(lopsided, torch.full_like(choice, c - 1), choice)
        base = (torch.arange(P) * c + choice) * 2
        return kids.select(torch.cat([base, base + 1])), leftovers

    def _split_relu(self, batch: Frontier, alpha_steps: int):
        """Split each domain on its unstable ReLU with the largest triangle height."""
        lo, up, splits = batch.lower, batch.upper, batch.splits
        assert splits is not None
        res = crown_bounds(self.layers, lo, up, splits, rounding=self.rounding)
        self.domains += int(lo.shape[0])
        scores = []
        for layer, (pl, pu) in enumerate(zip(res.pre_lower, res.pre_upper, strict=True)):
            unstable = (pl < 0) & (pu > 0) & (splits[layer] == 0)
            gap = torch.where(unstable, -pl * pu / (pu - pl).clamp(min=1e-30),
                              torch.full_like(pl, -1.0))
            scores.append(gap)
        flat = torch.cat(scores, -1)
        best_score, best_idx = flat.max(-1)
        leaf = (best_score < 0) & ~res.infeasible
        # With every ReLU fixed the network is affine on the domain, but CROWN still
        # minimises over the whole box (not box and sign constraints): split the box of such
        # leaves instead; sub-boxes outside the sign region are found empty (l > u).
        leaf_kids, leftovers = (self._split_input(batch.select(leaf), alpha_steps)
                                if bool(leaf.any()) else (None, None))
        keep = ~leaf & ~res.infeasible
        if not bool(keep.any()):
            return leaf_kids, leftovers
        lo, up, best_idx = lo[keep], up[keep], best_idx[keep]
        splits = [s[keep] for s in splits]
        pos_splits, neg_splits = [], []
        offset = 0
        rows = torch.arange(lo.shape[0])
        for s in splits:
            h = s.shape[1]
            here = (best_idx >= offset) & (best_idx < offset + h)
            col = (best_idx - offset).clamp(0, h - 1)
            sp, sn = s.clone(), s.clone()
            sp[rows[here], col[here]] = 1
            sn[rows[here], col[here]] = -1
            pos_splits.append(sp)
            neg_splits.append(sn)
            offset += h
        combo = None if batch.combo is None else batch.combo[keep].repeat(2, 1)
        # The parent's pre-activation bounds from this call hold for both children.
        pre = torch.cat([*(p[keep] for p in res.pre_lower), *(p[keep] for p in res.pre_upper)],
                        1).repeat(2, 1)
        child_splits = [torch.cat([a, b]) for a, b in zip(pos_splits, neg_splits, strict=True)]
        slopes = None if batch.slopes is None else batch.slopes[keep].repeat(2, 1, 1)
        kids = self._bound(torch.cat([lo, lo]), torch.cat([up, up]), child_splits,
                           alpha_steps, combo, pre, slopes)
        if leaf_kids is not None:
            kids = Frontier.concat(kids, leaf_kids)
        return kids, leftovers

    def _leftover_to_mip(self, frontier: Frontier, why: str) -> DisjunctOutcome:
        """Settle open domains exactly with the MIP (or report "timeout" without it)."""
        if not self.config.use_mip:
            return DisjunctOutcome("timeout", frontier=frontier, domains=self.domains,
                                   reason=f"{why}; MIP disabled")
        from meetup_ros.verification.mip import solve_min_max_margin

        logger.debug("%s: %d domains to the MIP", why, len(frontier))
        for i in range(len(frontier)):
            left = self._time_left()
            if left <= 0:
                return DisjunctOutcome("timeout", frontier=frontier, domains=self.domains,
                                       reason=f"deadline in the MIP ({why})")
            splits = None if frontier.splits is None else [s[i].numpy() for s in frontier.splits]
            out = solve_min_max_margin(
                self.network, self.coeffs, self.rhs, frontier.lower[i].numpy(),
                frontier.upper[i].numpy(), time_limit_s=left, splits=splits,
            )
            if out.status == "unsat" and out.dual_bound > self.config.proof_margin:
                continue
            if out.x is not None:
                found = self._try_points(torch.as_tensor(out.x).unsqueeze(0))
                if found is not None:
                    return found
            return DisjunctOutcome("timeout", frontier=frontier, domains=self.domains,
                                   reason=f"MIP inconclusive ({out.status}) on a leftover domain")
        return DisjunctOutcome("unsat", domains=self.domains)


# Interval bounds of every layer must stay below this: far beyond any physical input, and
# far below where float64 sums of products lose every digit (overflow near 1e308).
MAX_BOUND_MAGNITUDE = 1e30


def _overflows(network: Network, lower: np.ndarray, upper: np.ndarray) -> str:
    """Why this box is too large to bound reliably in float64, or "" (interval bounds)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is what this looks for
        return _overflow_reason(network, lower, upper)


def _overflow_reason(network: Network, lower: np.ndarray, upper: np.ndarray) -> str:
    hidden, out = interval_bounds(network.torch_layers(torch.float64, "cpu"),
                                  torch.as_tensor(lower).unsqueeze(0),
                                  torch.as_tensor(upper).unsqueeze(0))
    for i, (lo, up) in enumerate([*hidden, out]):
        peak = float(torch.maximum(lo.abs(), up.abs()).max())
        if not peak <= MAX_BOUND_MAGNITUDE:  # also NaN
            return (f"layer {i} bounds reach {peak:.3g} over the box (input widths up to "
                    f"{float(np.max(upper - lower)):.3g}): beyond {MAX_BOUND_MAGNITUDE:g}, "
                    "floating point cannot bound it")
    # The deployed evaluation must not overflow either (inf, then NaN, proves nothing):
    # every value computed inside a block stays below a quarter of the format's largest.
    assert network.rounding is not None
    largest = FORMATS[network.precision].largest
    h_abs = np.maximum(np.abs(lower), np.abs(upper))
    for i, r in enumerate(network.rounding):
        peak = r.peak(h_abs)
        if not peak <= largest / 4:
            return (f"layer {i} of the {network.precision} evaluation may reach {peak:.3g} over "
                    f"the box: it can overflow {network.precision}, so no proof covers it")
        if i < len(hidden):
            h_abs = hidden[i][1][0].clamp(min=0).numpy() * (1 + 1e-6) + r.error(h_abs)
    return ""


def solve_disjunct(
    network: Network,
    coeffs: np.ndarray,
    rhs: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    deadline: float,
    config: BabConfig | None = None,
    frontier: Frontier | None = None,
    generator: torch.Generator | None = None,
    exact: ExactDisjunct | None = None,
) -> DisjunctOutcome:
    """Branch and bound on one box and one unsafe conjunction until ``deadline`` (monotonic).

    Args:
        coeffs, rhs: the conjunction ``coeffs @ y <= rhs`` (``(k, m)``, ``(k,)``).
        lower, upper: ``(n,)`` finite box.
        frontier: open domains from an earlier run to resume (inside the box).
        generator: the falsifier's random source; pass the same one to every call that
            resumes a search (else each call starts from ``config.seed`` again).
        exact: the disjunct as written (:attr:`Disjunct.exact`), which a counterexample must
            meet; None: ``coeffs, rhs, lower, upper`` are the property itself.
    """
    solver = _solver_for(network, coeffs, rhs, lower, upper, deadline, config, generator,
                         exact)
    if isinstance(solver, DisjunctOutcome):
        return solver
    return solver.run(frontier)


def _solver_for(
    network: Network, coeffs: np.ndarray, rhs: np.ndarray, lower: np.ndarray,
    upper: np.ndarray, deadline: float, config: BabConfig | None,
    generator: torch.Generator | None = None, exact: ExactDisjunct | None = None,
) -> _Solver | DisjunctOutcome:
    """A solver for one disjunct's box, or its outcome when the box alone decides it."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        raise VerificationInputError(
            f"input box lower {lower.tolist()!r} upper {upper.tolist()!r} is not finite"
        )
    if np.any(lower > upper):
        return DisjunctOutcome("unsat", reason="empty input box")
    overflow = _overflows(network, lower, upper)
    if overflow:
        # No bound over such a box means anything in float64, and the exact MIP's big-M
        # constants would be as wrong: undecided, never proven.
        return DisjunctOutcome("timeout", reason=overflow)
    return _Solver(network, coeffs, rhs, lower, upper, config or BabConfig(), deadline,
                   generator, exact)


def verify(network: Network, prop: Property, timeout_s: float,
           config: BabConfig | None = None) -> Result:
    """Decide a property: "unsat" (safe), "sat" (with a checked counterexample), "timeout".

    Raises:
        VerificationInputError: the property does not fit the network or has an unbounded box.
    """
    start = time.monotonic()
    deadline = start + float(timeout_s)
    prop.check_network(network.n_inputs, network.n_outputs, network.source)
    for i, d in enumerate(prop.disjuncts):
        open_dims = np.flatnonzero(~(np.isfinite(d.lower) & np.isfinite(d.upper))).tolist()
        if open_dims:
            raise VerificationInputError(
                f"property {prop.source!r} disjunct {i}: inputs {open_dims!r} are unbounded; "
                "offline verification needs a bounded input box (a property whose box the "
                "runtime monitor fills from the state has no box of its own)")
    config = config or BabConfig()
    # Every disjunct gets its root bound and falsifier first (a counterexample in the last
    # one must not wait for a long proof of the first), then the open ones share the time
    # in rounds. Each keeps its solver between rounds (its frontier, its own clock), so its
    # search takes the path it would take alone: the time to a proof does not depend on
    # where the rounds happened to end.
    solvers: dict[int, _Solver] = {}
    open_: dict[int, Frontier | None] = {}
    undecided: list[str] = []
    for i, d in enumerate(prop.disjuncts):
        made = _solver_for(network, d.coeffs, d.rhs, d.lower, d.upper, deadline, config,
                           exact=d.exact)
        if isinstance(made, _Solver):
            solvers[i], open_[i] = made, None
        elif made.status != "unsat":  # a box too large to bound
            undecided.append(f"disjunct {i}: {made.reason}")
    k = max(len(solvers), 1)
    slice_s = float(timeout_s) if k == 1 else min(1.0, float(timeout_s) / (2 * k))
    while open_:
        for i in list(open_):
            out = solvers[i].run(open_[i], pause_at=time.monotonic() + slice_s)
            logger.debug("disjunct %d: %s (%d domains)", i, out.status, out.domains)
            if out.status == "sat":
                return Result("sat", out.x, out.y, {
                    "time_s": time.monotonic() - start,
                    "domains": sum(s.domains for s in solvers.values()), "disjunct": i})
            if out.status == "unsat":
                del open_[i]
            elif out.frontier is None:  # gave up without open domains (e.g. MIP undecided)
                undecided.append(f"disjunct {i}: {out.reason}")
                del open_[i]
            else:
                open_[i] = out.frontier
        if not open_ or time.monotonic() >= deadline:
            break
        # Rounds grow so that per-call overhead stays small against the work.
        slice_s = max(0.25, 2 * slice_s, (deadline - time.monotonic()) / (4 * len(open_)))
    domains = sum(s.domains for s in solvers.values())
    pending = undecided + [f"disjunct {i}: deadline with {len(f) if f is not None else 0} "
                           "open domains" for i, f in open_.items()]
    status = "timeout" if pending else "unsat"
    return Result(status, None, None, {
        "time_s": time.monotonic() - start, "domains": domains, "reason": "; ".join(pending)})

