"""The Planet LP relaxation (triangle ReLU relaxation over CROWN pre-activation bounds)."""

from __future__ import annotations

import numpy as np

from meetup_ros.verification.encoding import EncodingOutcome, solve_encoding
from meetup_ros.verification.network import Network


def lp_lower_bound(
    network: Network,
    coeffs: np.ndarray,
    rhs: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    time_limit_s: float = 30.0,
    splits: list[np.ndarray] | None = None,
    exact: bool = False,
) -> EncodingOutcome:
    """Lower bound of ``min_x max_j margin_j`` from the LP; ``.dual_bound`` is the bound.

    For a single row (``k = 1``) and ``coeffs = I``-style specs this bounds each output row
    when called per row. Returns ``dual_bound = -inf`` if HiGHS does not finish. ``exact``
    as in :func:`encoding.solve_encoding`.
    """
    return solve_encoding(network, coeffs, rhs, lower, upper, integer=False,
                          time_limit_s=time_limit_s, splits=splits, exact=exact)
