"""The exact big-M MIP (HiGHS): the oracle for tests and the last resort of branch and bound."""

from __future__ import annotations

import numpy as np

from meetup_ros.verification.encoding import EncodingOutcome, solve_encoding
from meetup_ros.verification.network import Network
from meetup_ros.verification.spec import Property


def solve_min_max_margin(
    network: Network,
    coeffs: np.ndarray,
    rhs: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    time_limit_s: float = 60.0,
    splits: list[np.ndarray] | None = None,
    exact: bool = False,
) -> EncodingOutcome:
    """``min over the box of max_j (coeffs @ f(x) - rhs)_j`` exactly (up to HiGHS tolerances)
    over every evaluation within the network's rounding, or of the network in exact
    arithmetic with ``exact`` (an oracle for tests)."""
    return solve_encoding(network, coeffs, rhs, lower, upper, integer=True,
                          time_limit_s=time_limit_s, splits=splits, exact=exact)


def mip_verify(network: Network, prop: Property, time_limit_s: float = 60.0) -> str:
    """Decide a property with the MIP only: "unsat", "sat" (confirmed) or "timeout"."""
    from meetup_ros.verification.falsify import confirm

    undecided = False
    for d in prop.disjuncts:
        if np.any(d.lower > d.upper):
            continue
        out = solve_min_max_margin(network, d.coeffs, d.rhs, d.lower, d.upper, time_limit_s)
        if out.status == "unsat":
            continue
        if out.status == "sat" and out.x is not None and confirm(
                network, d.coeffs, d.rhs, d.lower, d.upper, out.x, d.exact) is not None:
            return "sat"
        undecided = True
    return "timeout" if undecided else "unsat"
