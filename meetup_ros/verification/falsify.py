"""Counterexample search: uniform sampling then projected (sign-)gradient descent.

The objective for one disjunct is ``max_j margin_j(x)`` (``margin = coeffs @ f(x) - rhs``);
any box point with objective <= 0 is a counterexample candidate. Candidates are only
proposals: :func:`confirm` re-checks them in float64 and with onnxruntime, and against the
property as written in exact arithmetic, before anyone says "sat"/"violated".
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from functools import lru_cache

import numpy as np
import torch

from meetup_ros.verification.adam import adam_direction
from meetup_ros.verification.network import Network
from meetup_ros.verification.spec import ExactDisjunct

logger = logging.getLogger(__name__)


def spec_layers(
    network: Network, coeffs: np.ndarray, rhs: np.ndarray, dtype: torch.dtype = torch.float64
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Network layers with the margins ``coeffs @ y - rhs`` folded into the last layer."""
    layers = network.torch_layers(dtype)
    W, b = layers[-1]
    C = torch.as_tensor(coeffs, dtype=dtype)
    d = torch.as_tensor(rhs, dtype=dtype)
    return [*layers[:-1], (C @ W, C @ b - d)]


def spec_rounding(
    network: Network, coeffs: np.ndarray, dtype: torch.dtype = torch.float64
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The rounding ``(G, g)`` of :func:`spec_layers`' layers: the network's, with the last
    layer's seen through the margins (``|coeffs| G``, ``|coeffs| g``; the margins themselves
    are exact statements about the float outputs)."""
    rounding = network.torch_rounding(dtype)
    G, g = rounding[-1]
    C = torch.as_tensor(coeffs, dtype=dtype).abs()
    return [*rounding[:-1], (C @ G, C @ g)]


def forward_layers(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor
                   ) -> torch.Tensor:
    """Forward through ``[(W, b)]`` with ReLU between: ``(B, n)`` -> ``(B, k)``."""
    h = x
    for i, (W, b) in enumerate(layers):
        h = h @ W.T + b
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


def _adam_descent(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
                  lower: torch.Tensor, upper: torch.Tensor, steps: int,
                  deadline: float | None, lr: float = 1e-3
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on ``max_j margin_j`` from starts ``x (P, n)``, in [0, 1]-scaled box coordinates."""
    width = torch.where(upper > lower, upper - lower, torch.ones_like(upper))
    u = ((x - lower) / width).clamp(0, 1)
    m1, m2 = torch.zeros_like(u), torch.zeros_like(u)
    best_x, best_v = x[0].clone(), torch.tensor(float("inf"), dtype=x.dtype)
    for it in range(1, steps + 2):
        u = u.detach().requires_grad_(True)
        point = lower + u * width
        value = forward_layers(layers, point).max(-1).values
        i = int(torch.argmin(value))
        if value[i] < best_v:
            best_v, best_x = value[i].detach().clone(), point[i].detach().clone()
        if best_v <= 0 or it == steps + 1 or (deadline is not None
                                              and time.monotonic() > deadline):
            break
        (grad,) = torch.autograd.grad(value.sum(), u)
        with torch.no_grad():
            u = (u - lr * adam_direction(m1, m2, grad, it)).clamp(0, 1)
    return best_x, best_v


def pgd_search(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    lower: torch.Tensor,
    upper: torch.Tensor,
    n_samples: int = 256,
    steps: int = 30,
    generator: torch.Generator | None = None,
    deadline: float | None = None,
    starts: torch.Tensor | None = None,
    screen: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``max_j margin_j`` over the box ``lower, upper`` (each ``(n,)``).

    ``screen`` > ``n_samples``: evaluate that many uniform points first (forward passes only)
    and take Adam steps from the ``n_samples`` best (``starts`` unused). On a wide box a
    violation can occupy a sliver that few random starts come near (ACAS Xu 1_9 with property
    7: 20 000 sign-PGD starts never found one; Adam from the best of 65 536 screened points
    reaches it in about one round of seven). Otherwise sign-PGD from random starts, the box
    centre and ``starts``.

    Returns:
        ``(x (n,), objective scalar)`` of the best point found (float64, inside the box).
    """
    n = lower.shape[0]
    width = upper - lower
    if screen > n_samples:
        pool, values = [], []
        with torch.no_grad():
            for chunk in range(0, screen, 16384):
                p = lower + torch.rand(min(16384, screen - chunk), n, dtype=lower.dtype,
                                       generator=generator) * width
                pool.append(p)
                values.append(forward_layers(layers, p).max(-1).values)
        x = torch.cat(pool)[torch.argsort(torch.cat(values))[:n_samples]].clone()
        # Screened starts are already close: small Adam steps in box-relative coordinates
        # follow a narrow valley that fixed-size sign steps jump across.
        return _adam_descent(layers, x, lower, upper, steps, deadline)
    x = lower + torch.rand(n_samples, n, dtype=lower.dtype, generator=generator) * width
    x[0] = (lower + upper) / 2
    if starts is not None and starts.numel():
        m = min(starts.shape[0], n_samples - 1)
        x[1:1 + m] = torch.clamp(starts[:m], lower, upper)
    best_x, best_v = x[0].clone(), torch.tensor(float("inf"), dtype=lower.dtype)
    step = width / 8
    for it in range(steps + 1):
        x = x.detach().requires_grad_(True)
        value = forward_layers(layers, x).max(-1).values
        i = int(torch.argmin(value))
        if value[i] < best_v:
            best_v, best_x = value[i].detach().clone(), x[i].detach().clone()
        if best_v <= 0 or it == steps or (deadline is not None and time.monotonic() > deadline):
            break
        (grad,) = torch.autograd.grad(value.sum(), x)
        with torch.no_grad():
            x = torch.clamp(x - step * grad.sign(), lower, upper)
        if it % 10 == 9:
            step = step / 2
    return best_x, best_v


def ort_session_options():
    """onnxruntime session options for running a verified network: one thread, and graph
    optimisation at the basic level only.

    The proofs cover the graph's own operations, each rounded in float32
    (:mod:`rounding`). onnxruntime's extended level rewrites it: FusedMatMul folds scalar
    Mul/Div around a MatMul into one factor, so other values are rounded and can overflow
    (a tester's (x * 1e-30) @ 1e30 is inf there, x in the file's graph). The basic level
    only folds constants and fuses MatMul + Add into Gemm, which the model covers.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return options


@lru_cache(maxsize=8)
def _ort_session(path: str):
    import onnxruntime as ort

    return ort.InferenceSession(path, sess_options=ort_session_options(),
                                providers=["CPUExecutionProvider"])


def onnxruntime_forward(path: str, x: np.ndarray) -> np.ndarray:
    """Evaluate the ONNX file at one input ``(n,)`` (float32 as the file says) -> ``(m,)``."""
    session = _ort_session(path)
    graph_input = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in graph_input.shape]
    feed = np.asarray(x, dtype=np.float32).reshape(shape)
    (out,) = session.run(None, {graph_input.name: feed})[:1]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def to_float32_inside(x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
    """Round ``x`` to float32 values still inside ``[lower, upper]`` (float64 result)."""
    x32 = np.asarray(x, dtype=np.float32).copy()
    for i in range(x32.size):
        for _ in range(4):
            if x32[i] < lower[i]:
                x32[i] = np.nextafter(x32[i], np.float32(np.inf))
            elif x32[i] > upper[i]:
                x32[i] = np.nextafter(x32[i], np.float32(-np.inf))
            else:
                break
        if not lower[i] <= float(x32[i]) <= upper[i]:
            return None  # the box is narrower than a float32 step here
    return x32.astype(np.float64)


def confirm(
    network: Network,
    coeffs: np.ndarray,
    rhs: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    x: np.ndarray,
    exact: ExactDisjunct | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Re-check a candidate: returns ``(x, y)`` iff it is a genuine counterexample, ``y``
    onnxruntime's output for ONNX sources (else the float64 forward pass).

    ``x`` is moved to float32-representable values inside the box ``lower, upper`` and inside
    ``exact``'s input bounds; the float64 forward pass and, for ONNX sources, onnxruntime must
    both put ``y`` in the unsafe conjunction. ``exact`` is the disjunct as written (default:
    ``coeffs, rhs, lower, upper`` themselves): the rows read are rounded outward and strict
    ones read as non-strict, so a point that meets them can miss the property as written (a
    tester's Y_0 <= 0.99999999999999999999 was "sat" at 1.0). The input and the output that
    decides are checked against it in exact rational arithmetic.
    """
    if exact is None:
        exact = ExactDisjunct.from_floats(lower, upper, coeffs, rhs)
    x_checked = to_float32_inside(np.asarray(x, dtype=np.float64), lower, upper)
    if x_checked is None:
        return None
    x_checked = _into_written_box(x_checked, exact)
    if not (np.all(x_checked >= lower) and np.all(x_checked <= upper)
            and exact.contains_input(x_checked)):
        logger.debug("candidate %s outside the input box as written", x_checked)
        return None
    y = network.forward(x_checked)
    if not np.all(y @ coeffs.T - rhs <= 0.0):
        return None
    y_deployed = y
    if network.source_kind == "onnx":
        y_deployed = onnxruntime_forward(network.source, x_checked)
        if y_deployed.shape != y.shape or not np.all(y_deployed @ coeffs.T - rhs <= 0.0):
            logger.debug("candidate %s unsafe in float64 but not in onnxruntime", x_checked)
            return None
    if not exact.unsafe_output(y_deployed):
        logger.debug("candidate %s unsafe only as the property was read (float64 rounding)",
                     x_checked)
        return None
    # the deployed runtime's output, the one checked exactly: a printed float64 y can miss
    # the property as written where onnxruntime's meets it (a tester's 1.0000000298 vs 1.0)
    return x_checked, y_deployed


def _into_written_box(x: np.ndarray, exact: ExactDisjunct) -> np.ndarray:
    """Step each input that misses a bound as written up to 4 float32 steps towards it.

    The box read is rounded outward, so its edge, where a search ends, can be a float32
    value just outside the written one (X_0 >= 0.50000000000000000001 reads as >= 0.5)."""
    x32 = np.asarray(x, dtype=np.float32).copy()
    for row in exact.inputs:
        if len(row.terms) != 1:
            continue  # VNN-LIB input rows bound one input each; others are only checked
        ((i, c),) = row.terms
        toward = np.float32(-np.inf if c > 0 else np.inf)
        for _ in range(4):
            if row.holds({i: Fraction(float(x32[i]))}):
                break
            x32[i] = np.nextafter(x32[i], toward)
    return x32.astype(np.float64)
