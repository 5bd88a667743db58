"""The per-tick safety certificate: branch and bound over the current region under a deadline.

``RuntimeMonitor.certify(lower, upper)`` intersects each unsafe disjunct's input box with the
region. An empty intersection needs no proof; otherwise the disjunct is decided by
:func:`bab.solve_disjunct` before the deadline. "verified" only when every non-empty
intersection is proven safe; "violated" only with a counterexample confirmed in float64 and
(for ONNX) onnxruntime, against the property as written; anything else, including any
exception, is "unknown".

Work is reused between ticks: regions inside a box already certified are verified at once,
the latest counterexample is re-tried first, and after a timeout the open branch-and-bound
domains are kept and resumed when the next region lies inside the previous one.

A region that needs a proof is first proven with a margin (``region_margin`` of its width on
each side, within the property's box), with part of the time left: a state at rest whose sigma
moves from tick to tick then stays inside one certified box instead of asking for a proof
every few ticks, each of which can miss the deadline on a busy CPU. The wider box is a
superset of the region, so its proof is one for the region. When it fails, the region itself
is searched: from the wide search's open domains restricted to it after a timeout (every open
domain is in them, so what lies outside the region is all that is dropped), afresh after a
counterexample that lies only in the margin (a real one, re-tried first when a later region
reaches it). A failure costs a second root bound, so after one the next regions of that
disjunct go without a margin for a while (1, 2, 4, ... 32 of them).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from meetup_ros.verification import VerificationInputError
from meetup_ros.verification.bab import BabConfig, DisjunctOutcome, Frontier, solve_disjunct
from meetup_ros.verification.falsify import confirm
from meetup_ros.verification.network import Network, load_network
from meetup_ros.verification.spec import Property, load_property

logger = logging.getLogger(__name__)

# No slope optimisation at all: within a 50 ms tick plain CROWN closes more domains (alpha
# pays only on searches of thousands of domains, which a tick never reaches). No screened
# falsifier restarts either: one round (~0.15 s) would overrun the tick.
RUNTIME_CONFIG = BabConfig(
    batch_size=128, alpha_steps_root=0, alpha_steps=0, falsify_samples=64, falsify_steps=10,
    screen_every_s=0.0, use_mip=False, initial_sec_per_domain=2e-3,
)

# The share of a tick's remaining time the proof with a margin may take before the region
# itself is searched.
MARGIN_SHARE = 0.5
# After failed proofs with a margin, up to 2**5 = 32 regions that need a proof go without one.
MARGIN_MAX_BACKOFF = 5


@dataclass(frozen=True)
class Certificate:
    """One tick's answer: status "verified" | "violated" | "unknown".

    Attributes:
        counterexample_x/_y: ``(n,)``/``(m,)`` float64 for "violated", else None.
        elapsed_s: wall time spent in ``certify``.
        domains: branch-and-bound domains bounded this tick.
        reason: why (cache hit, empty intersection, deadline, error text, ...).
    """

    status: str
    counterexample_x: np.ndarray | None
    counterexample_y: np.ndarray | None
    elapsed_s: float
    domains: int
    reason: str


def _inside(inner_lo: np.ndarray, inner_up: np.ndarray, outer_lo: np.ndarray,
            outer_up: np.ndarray) -> bool:
    return bool(np.all(inner_lo >= outer_lo) and np.all(inner_up <= outer_up))


class RuntimeMonitor:
    """Certifies that no input in a region reaches the property's unsafe set.

    Args:
        network_path: ``.onnx`` or ``.nnet`` file (or an already loaded :class:`Network`).
        prop: a :class:`Property` or a ``.yaml``/``.vnnlib`` path.
        deadline_s: time budget per ``certify`` call.
        config: branch-and-bound settings (``RUNTIME_CONFIG`` by default).
        cache_size: certified boxes remembered per disjunct.
        region_margin: a region that needs a proof is first proven widened by this fraction
            of its width on each side (0: never; see the module's docstring).
    Raises:
        VerificationInputError: unreadable network/property, or sizes that do not match.
    """

    def __init__(
        self,
        network_path: str | Path | Network,
        prop: Property | str | Path,
        deadline_s: float = 0.05,
        config: BabConfig | None = None,
        cache_size: int = 16,
        region_margin: float = 0.1,
    ) -> None:
        if not deadline_s > 0:
            raise VerificationInputError(f"deadline_s {deadline_s!r}; expected > 0")
        if not (isinstance(region_margin, float | int) and math.isfinite(region_margin)
                and 0.0 <= region_margin <= 1.0):
            raise VerificationInputError(f"region_margin {region_margin!r}; expected 0 to 1 "
                                         "(a fraction of the region's width)")
        self.region_margin = float(region_margin)
        self.network = (network_path if isinstance(network_path, Network)
                        else load_network(network_path))
        self.prop = prop if isinstance(prop, Property) else load_property(prop)
        self.prop.check_network(self.network.n_inputs, self.network.n_outputs,
                                self.network.source)
        self.deadline_s = float(deadline_s)
        self.config = config or RUNTIME_CONFIG
        self.cache_size = int(cache_size)
        n = len(self.prop.disjuncts)
        self._certified: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(n)]
        self._open: list[tuple[np.ndarray, np.ndarray, Frontier] | None] = [None] * n
        self._last_cex: list[np.ndarray | None] = [None] * n
        # One falsifier random source per disjunct for the whole run: a tick that resumes
        # an open search tries new points, not the last tick's again.
        self._generators = [torch.Generator().manual_seed(self.config.seed) for _ in range(n)]
        self._margin_wait = [0] * n  # regions left to certify without a margin
        self._margin_backoff = [0] * n  # log2 of the next wait
        self.stats = {"calls": 0, "cache_hits": 0, "resumed": 0, "proven_with_margin": 0,
                      "margin_failed": 0, "verified": 0, "violated": 0, "unknown": 0}
        # Warm up torch kernels and the onnxruntime session outside the first deadline.
        self.network.torch_layers()
        if self.network.source_kind == "onnx":
            from meetup_ros.verification.falsify import onnxruntime_forward

            try:
                onnxruntime_forward(self.network.source, np.zeros(self.network.n_inputs))
            except Exception as exc:  # onnxruntime's own error types
                raise VerificationInputError(
                    f"network {self.network.source!r} does not run in onnxruntime: {exc}"
                ) from exc

    def reset(self) -> None:
        """Forget cached certificates and open domains."""
        n = len(self.prop.disjuncts)
        self._certified = [[] for _ in range(n)]
        self._open = [None] * n
        self._last_cex = [None] * n
        self._margin_wait = [0] * n
        self._margin_backoff = [0] * n

    def certify(self, lower: np.ndarray, upper: np.ndarray,
                deadline_s: float | None = None) -> Certificate:
        """Certify the region ``lower <= x <= upper`` (each ``(n,)``) within the deadline."""
        start = time.monotonic()
        self.stats["calls"] += 1
        budget = self.deadline_s if deadline_s is None else deadline_s
        try:
            if not (math.isfinite(budget) and budget > 0):
                raise VerificationInputError(
                    f"deadline {budget!r} s; expected a finite number of seconds > 0")
            cert = self._certify(lower, upper, start, start + budget)
        except VerificationInputError as exc:  # bad input: named, no traceback
            logger.warning("certify refused its input: %s", exc)
            cert = Certificate("unknown", None, None, time.monotonic() - start, 0,
                               f"error: {exc}")
        except Exception as exc:  # the gate stays closed whatever went wrong
            logger.warning("certify failed: %s", exc, exc_info=True)
            cert = Certificate("unknown", None, None, time.monotonic() - start, 0,
                               f"error: {type(exc).__name__}: {exc}")
        self.stats[cert.status] += 1
        return cert

    def _region(self, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` as float64 ``(n,)``; refused unless finite and ordered."""
        n = self.network.n_inputs
        lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        upper = np.asarray(upper, dtype=np.float64).reshape(-1)
        if lower.shape != (n,) or upper.shape != (n,):
            raise VerificationInputError(
                f"region shapes {lower.shape!r}, {upper.shape!r}; expected ({n},)")
        if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
            raise VerificationInputError(
                f"region lower {lower.tolist()!r} upper {upper.tolist()!r} is not finite")
        if np.any(lower > upper):
            raise VerificationInputError(
                f"region lower {lower.tolist()!r} exceeds upper {upper.tolist()!r}")
        return lower, upper

    def _widened(self, i: int, lo: np.ndarray, up: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray] | None:
        """``lo``/``up`` widened by ``region_margin`` of their width on each side, within
        disjunct ``i``'s box; None when that adds nothing or is not finite (a region ~1e308
        wide). ``lo - pad <= lo`` in floating point since ``pad >= 0``: it holds the region."""
        d = self.prop.disjuncts[i]
        with np.errstate(over="ignore", invalid="ignore"):  # checked for finiteness below
            pad = self.region_margin * (up - lo)
            w_lo = np.maximum(lo - pad, d.lower)
            w_up = np.minimum(up + pad, d.upper)
        if self.region_margin == 0.0 or (np.array_equal(w_lo, lo) and np.array_equal(w_up, up)):
            return None
        if not (np.isfinite(w_lo).all() and np.isfinite(w_up).all()):
            return None
        return w_lo, w_up

    def _certify(self, lower: np.ndarray, upper: np.ndarray, start: float,
                 deadline: float) -> Certificate:
        lower, upper = self._region(lower, upper)
        domains = 0
        reasons: list[str] = []
        for i, d in enumerate(self.prop.disjuncts):
            lo = np.maximum(lower, d.lower)
            up = np.minimum(upper, d.upper)
            if np.any(lo > up):
                reasons.append(f"disjunct {i}: outside the property's domain")
                continue
            if any(_inside(lo, up, c_lo, c_up) for c_lo, c_up in self._certified[i]):
                self.stats["cache_hits"] += 1
                reasons.append(f"disjunct {i}: inside a certified region")
                continue
            cex = self._last_cex[i]
            if cex is not None and np.all(cex >= lo) and np.all(cex <= up):
                found = confirm(self.network, d.coeffs, d.rhs, lo, up, cex, d.exact)
                if found is not None:
                    return Certificate("violated", found[0], found[1], time.monotonic() - start,
                                       domains, f"disjunct {i}: previous counterexample")
            frontier = None
            previous = self._open[i]
            if previous is not None and _inside(lo, up, previous[0], previous[1]):
                frontier = previous[2].restrict(lo, up)
                self.stats["resumed"] += 1
            elif self._margin_wait[i] > 0:
                self._margin_wait[i] -= 1
            else:
                wide = self._prove_with_margin(i, lo, up, deadline)
                domains += wide.domains
                if wide.status == "unsat":
                    reasons.append(
                        f"disjunct {i}: proven with a margin of {self.region_margin:g}")
                    continue
                if wide.status == "sat" and wide.x is not None and wide.y is not None and (
                        np.all(wide.x >= lo) and np.all(wide.x <= up)):
                    return Certificate("violated", wide.x, wide.y, time.monotonic() - start,
                                       domains, f"disjunct {i}: counterexample confirmed")
                if wide.frontier is not None and wide.status != "sat":
                    frontier = wide.frontier.restrict(lo, up)
            if frontier is not None and len(frontier) == 0:
                # Nothing open in the region would prove it without a search: sound only if
                # the frontier held every open domain, which bab guarantees; a frontier that
                # lost some (fixed, after a tester's wrong "verified") would be believed here,
                # so the region is searched afresh instead, at the cost of its root bound.
                frontier = None
            out = solve_disjunct(self.network, d.coeffs, d.rhs, lo, up, deadline, self.config,
                                 frontier, self._generators[i], d.exact)
            domains += out.domains
            if out.status == "sat":
                assert out.x is not None and out.y is not None
                self._last_cex[i] = out.x
                return Certificate("violated", out.x, out.y, time.monotonic() - start, domains,
                                   f"disjunct {i}: counterexample confirmed")
            if out.status == "unsat":
                self._remember(i, lo, up)
                self._open[i] = None
                reasons.append(f"disjunct {i}: proven" + (" (resumed)" if frontier else ""))
                continue
            self._open[i] = (lo, up, out.frontier) if out.frontier is not None else None
            return Certificate("unknown", None, None, time.monotonic() - start, domains,
                               f"disjunct {i}: {out.reason or out.status}")
        return Certificate("verified", None, None, time.monotonic() - start, domains,
                           "; ".join(reasons))

    def prove_ahead(self, lower: np.ndarray, upper: np.ndarray, budget_s: float) -> str:
        """Prove a region before any tick, with a budget of its own, widened by the margin.

        At start-up, over the start state's region: a robot that starts at rest then finds its
        first regions inside a certified box instead of proving them against the first
        ticks' deadline (the pipeline's clearance proof took 58-175 ms on a loaded 2-core
        machine, against 50 ms). A proof is one whenever it was made, so what is proven is
        remembered like a tick's; a counterexample is kept to be re-tried first, as a tick's
        is. Returns "verified" (every disjunct proven), "violated" or "unknown"; counts in no
        statistics.
        """
        if not (isinstance(budget_s, float | int) and math.isfinite(budget_s)
                and budget_s > 0):
            raise VerificationInputError(
                f"budget_s {budget_s!r}; expected a finite number of seconds > 0")
        lower, upper = self._region(lower, upper)
        deadline = time.monotonic() + float(budget_s)
        status = "verified"
        for i, d in enumerate(self.prop.disjuncts):
            lo, up = np.maximum(lower, d.lower), np.minimum(upper, d.upper)
            if np.any(lo > up):
                continue
            lo, up = self._widened(i, lo, up) or (lo, up)
            out = solve_disjunct(self.network, d.coeffs, d.rhs, lo, up, deadline, self.config,
                                 None, self._generators[i], d.exact)
            if out.status == "unsat":
                self._remember(i, lo, up)
            elif out.status == "sat":
                self._last_cex[i] = out.x
                status = "violated"
            elif status == "verified":
                status = "unknown"
        return status

    def _prove_with_margin(self, i: int, lo: np.ndarray, up: np.ndarray,
                           deadline: float) -> DisjunctOutcome:
        """Branch and bound on the region widened by ``region_margin`` (within the disjunct's
        box), for ``MARGIN_SHARE`` of the time left; proven, the wide box is remembered.

        A counterexample it finds is a real one of the network, so it is kept to be re-tried
        first, but it violates the region only if it lies in it (the caller checks).
        """
        d = self.prop.disjuncts[i]
        wide = self._widened(i, lo, up)
        if wide is None:
            return DisjunctOutcome("timeout", domains=0, reason="no margin")
        w_lo, w_up = wide
        now = time.monotonic()
        out = solve_disjunct(self.network, d.coeffs, d.rhs, w_lo, w_up,
                             now + MARGIN_SHARE * max(deadline - now, 0.0), self.config, None,
                             self._generators[i], d.exact)
        if out.status == "unsat":
            self._remember(i, w_lo, w_up)
            self._open[i] = None
            self.stats["proven_with_margin"] += 1
            self._margin_backoff[i] = 0
            return out
        if out.status == "sat":
            self._last_cex[i] = out.x
        # Failed, it cost a root bound and a falsifier round on top of the region's own
        # (a tester's large network: 26 -> 52 ms a tick): the next 1, 2, 4, ... 32 regions
        # of this disjunct that need a proof skip the margin, until one succeeds.
        self.stats["margin_failed"] += 1
        self._margin_wait[i] = 2 ** self._margin_backoff[i]
        self._margin_backoff[i] = min(self._margin_backoff[i] + 1, MARGIN_MAX_BACKOFF)
        return out

    def _remember(self, i: int, lo: np.ndarray, up: np.ndarray) -> None:
        boxes = [(a, b) for a, b in self._certified[i] if not _inside(a, b, lo, up)]
        boxes.insert(0, (lo.copy(), up.copy()))
        self._certified[i] = boxes[: self.cache_size]
