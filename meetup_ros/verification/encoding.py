"""Linear encodings of ``min_x max_j margin_j(x)`` in HiGHS: the Planet LP and the big-M MIP.

Variables: the inputs ``x`` (box bounds), one post-activation ``h`` per hidden neuron, one
binary ``a`` per unstable neuron (MIP only) and ``t >= margin_j`` for every row; the objective
is ``min t``. Pre-activation bounds ``l, u`` come from CROWN (sound), so ``h = relu(z)`` is
``h >= 0, h >= z, h <= z - l (1 - a), h <= u a`` exactly (MIP) or relaxed to the triangle
``h <= u (z - l) / (u - l)`` (Planet LP). ReLU splits add ``z >= 0`` / ``z <= 0``.

The deployed evaluation's rounding (:mod:`verification.rounding`) makes each pre-activation
``z = W h + b + e`` with ``|e| <= E``, ``E = G |h| + g`` over the domain's bounds: every row
that holds ``z`` takes the side of ``[W h + b - E, W h + b + E]`` that admits the most. Per
neuron this is exact for the perturbed network (``h = relu(W h' + b + e)`` for some ``e`` in
range), so "unsat" covers every evaluation within the rounding, and a "sat" point is only a
candidate until :func:`falsify.confirm` runs the network on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from meetup_ros.verification.bounds.crown import crown_bounds
from meetup_ros.verification.falsify import spec_layers, spec_rounding
from meetup_ros.verification.network import Network

logger = logging.getLogger(__name__)


@dataclass
class EncodingOutcome:
    """HiGHS result: status "unsat" (dual bound > 0 or infeasible), "sat" (primal objective
    <= 0 at ``x``, still to be confirmed), "timeout" or "error".

    ``dual_bound`` is a valid lower bound on ``min max margin`` (already reduced by the
    solver's tolerance); ``objective`` the best primal value (``inf`` if none).
    """

    status: str
    dual_bound: float
    objective: float
    x: np.ndarray | None
    message: str = ""


def _highs(time_limit_s: float):
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("time_limit", float(max(time_limit_s, 1e-3)))
    return h


def solve_encoding(
    network: Network,
    coeffs: np.ndarray,
    rhs: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    integer: bool,
    time_limit_s: float = 60.0,
    splits: list[np.ndarray] | None = None,
    pre_bounds: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
    tolerance: float = 1e-6,
    exact: bool = False,
) -> EncodingOutcome:
    """Solve the MIP (``integer=True``) or the Planet LP over ``lower <= x <= upper``.

    Args:
        coeffs, rhs: the unsafe conjunction ``coeffs @ y <= rhs``: ``(k, m)``, ``(k,)``.
        splits: per hidden layer ``(h_i,)`` in {-1, 0, +1}.
        pre_bounds: per hidden layer pre-activation (lower, upper); computed with CROWN if None.
        tolerance: subtracted from the solver's bound (feasibility/optimality tolerances).
        exact: encode the network in exact arithmetic, without its rounding: the oracle for
            bounds computed without it (tests), never for a proof about the deployed network.
    """
    import highspy

    layers = spec_layers(network, coeffs, rhs)
    rounding = None if exact else spec_rounding(network, coeffs)
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if pre_bounds is None:
        split_t = None if splits is None else [
            torch.as_tensor(s, dtype=torch.int8).unsqueeze(0) for s in splits]
        res = crown_bounds(layers, torch.as_tensor(lower).unsqueeze(0),
                           torch.as_tensor(upper).unsqueeze(0), split_t, rounding=rounding)
        if bool(res.infeasible[0]):
            return EncodingOutcome("unsat", float("inf"), float("inf"), None, "splits infeasible")
        pre_lo = [p[0].numpy() for p in res.pre_lower]
        pre_up = [p[0].numpy() for p in res.pre_upper]
    else:
        pre_lo, pre_up = pre_bounds
    h = _highs(time_limit_s)
    inf = highspy.kHighsInf
    n = lower.size
    # Columns: x, then per layer h, then binaries, then t.
    col_lo: list[float] = list(lower)
    col_up: list[float] = list(upper)
    integrality: list[int] = [0] * n
    prev = list(range(n))  # column indices of the previous layer's outputs
    rows: list[tuple[float, float, list[int], list[float]]] = []
    h_abs = np.maximum(np.abs(lower), np.abs(upper))  # |input| of the layer being encoded

    def rounding_error(li: int) -> np.ndarray:
        if rounding is None:
            return np.zeros(layers[li][0].shape[0])
        G, g = (t.numpy() for t in rounding[li])
        return np.nan_to_num(h_abs @ G.T + g, nan=np.inf)

    for li, (W_t, b_t) in enumerate(layers[:-1]):
        W, b = W_t.numpy(), b_t.numpy()
        lo, up = pre_lo[li], pre_up[li]
        E = rounding_error(li)
        h_abs = np.maximum(up, 0.0)
        sp = None if splits is None else np.asarray(splits[li])
        cols = []
        for j in range(W.shape[0]):
            l_j, u_j = float(lo[j]), float(up[j])
            col = len(col_lo)
            cols.append(col)
            col_lo.append(0.0)
            col_up.append(max(u_j, 0.0))
            integrality.append(0)
            w = W[j]
            nz = np.flatnonzero(w)
            idx = [prev[k] for k in nz]
            vals = list(w[nz])
            e = float(E[j])  # z lies in [W h + b - e, W h + b + e]
            if sp is not None and sp[j] > 0:  # z >= 0
                rows.append((-b[j] - e, inf, idx, vals))
            if sp is not None and sp[j] < 0:  # z <= 0
                rows.append((-inf, -b[j] + e, idx, vals))
            if u_j <= 0:
                col_up[col] = 0.0
            elif l_j >= 0:  # h = z
                rows.append((b[j] - e, b[j] + e, [col, *idx], [1.0, *(-v for v in vals)]))
            else:
                rows.append((b[j] - e, inf, [col, *idx], [1.0, *(-v for v in vals)]))  # h >= z
                if integer:
                    a = len(col_lo)
                    col_lo.append(0.0)
                    col_up.append(1.0)
                    integrality.append(1)
                    # h - z - l a <= -l ; h - u a <= 0
                    rows.append((-inf, b[j] + e - l_j, [col, *idx, a],
                                 [1.0, *(-v for v in vals), -l_j]))
                    rows.append((-inf, 0.0, [col, a], [1.0, -u_j]))
                else:
                    s = u_j / (u_j - l_j)
                    rows.append((-inf, s * (b[j] + e - l_j), [col, *idx],
                                 [1.0, *(-s * v for v in vals)]))
        prev = cols
    W, b = (t.numpy() for t in layers[-1])
    E = rounding_error(len(layers) - 1)
    t_col = len(col_lo)
    col_lo.append(-inf)
    col_up.append(inf)
    integrality.append(0)
    for k in range(W.shape[0]):
        nz = np.flatnonzero(W[k])  # t >= margin_k >= W h + b - E
        rows.append((b[k] - E[k], inf, [t_col, *(prev[i] for i in nz)], [1.0, *(-W[k][nz])]))
    # -- build and solve ----------------------------------------------------------------
    n_cols = len(col_lo)
    cost = np.zeros(n_cols)
    cost[t_col] = 1.0
    h.addCols(n_cols, cost, np.array(col_lo), np.array(col_up), 0,
              np.array([], dtype=np.int32), np.array([], dtype=np.int32), np.array([]))
    is_mip = integer and any(integrality)
    if is_mip:
        h.changeColsIntegrality(n_cols, np.arange(n_cols, dtype=np.int32),
                                np.array(integrality, dtype=np.uint8))
    starts: list[int] = []
    indices: list[int] = []
    values: list[float] = []
    for _, _, idx, vals in rows:
        starts.append(len(indices))
        indices.extend(idx)
        values.extend(vals)
    h.addRows(len(rows), np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
              len(indices), np.array(starts, dtype=np.int32), np.array(indices, dtype=np.int32),
              np.array(values, dtype=np.float64))
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    if status == highspy.HighsModelStatus.kInfeasible:
        return EncodingOutcome("unsat", float("inf"), float("inf"), None, "infeasible")
    has_primal = info.primal_solution_status == 2  # kSolutionStatusFeasible
    objective = float(info.objective_function_value) if has_primal else float("inf")
    x = np.array(h.getSolution().col_value[:n]) if has_primal else None
    if status == highspy.HighsModelStatus.kOptimal:
        # Without binaries HiGHS solves an LP and reports no MIP dual bound.
        optimum = float(info.mip_dual_bound) if is_mip else objective
        dual = optimum - tolerance * (1.0 + abs(optimum))
    elif is_mip and status == highspy.HighsModelStatus.kTimeLimit:
        dual = float(info.mip_dual_bound) - tolerance * (1.0 + abs(float(info.mip_dual_bound)))
    else:
        dual = -float("inf")
    if dual > 0:
        return EncodingOutcome("unsat", dual, objective, x)
    if objective <= 0 and x is not None:
        return EncodingOutcome("sat", dual, objective, x)
    if status == highspy.HighsModelStatus.kOptimal:
        # Optimal but inside the tolerance band around 0: undecided.
        return EncodingOutcome("timeout", dual, objective, x, "optimum within tolerance of 0")
    return EncodingOutcome("timeout", dual, objective, x, h.modelStatusToString(status))
