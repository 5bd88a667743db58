"""CROWN / DeepPoly linear relaxation with optimisable lower ReLU slopes, batched over boxes.

Each hidden ReLU with pre-activation bounds ``l < 0 < u`` is bounded by
``alpha z <= relu(z) <= u (z - l) / (u - l)`` with any ``alpha`` in [0, 1]; a back-substitution
from the objective to the input gives ``objective >= A x + c`` on the box, minimised in closed
form. Intermediate bounds use the adaptive slope (alpha = 1 if u >= -l else 0) and are
intersected with interval bounds; the final objective's slopes can be optimised by projected
gradient ascent (alpha-CROWN). Any alpha in [0, 1] gives a sound bound, so the best bound seen
over the iterations is kept.

ReLU splits restrict a domain to ``z >= 0`` (+1) or ``z <= 0`` (-1) for a neuron; the bounds
are intersected with the split, a domain whose bounds cross (``l > u``) is empty and gets a
lower bound of +inf.

With ``rounding`` (:mod:`verification.rounding`), every pre-activation carries an additive
error ``|e_i| <= G_i |h_(i-1)| + g_i`` (the deployed float evaluation), with ``|h|`` bounded by
the previous layer's bounds, which already include theirs: intervals widen by it, and each
back-substitution through layer ``i`` pays ``|Lambda_i| E_i`` where it adds ``Lambda_i b_i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from meetup_ros.verification.adam import adam_direction


@dataclass
class CrownResult:
    """Bounds for a batch of ``B`` domains and ``k`` objective rows.

    Attributes:
        lower: ``(B, k)`` lower bounds of the objective (``+inf`` for empty domains).
        A, c: ``(B, k, n)``, ``(B, k)``: ``objective >= A x + c`` over the domain.
        pre_lower, pre_upper: per hidden layer ``(B, h_i)`` pre-activation bounds.
        infeasible: ``(B,)`` bool, the domain's splits contradict its bounds.
        slopes: ``(B, rows, sum h_i)`` the optimised lower slopes (alpha-CROWN only), to
            warm-start a sub-domain's optimisation.
    """

    lower: torch.Tensor
    A: torch.Tensor
    c: torch.Tensor
    pre_lower: list[torch.Tensor]
    pre_upper: list[torch.Tensor]
    infeasible: torch.Tensor
    slopes: torch.Tensor | None = None


def _relax(lo: torch.Tensor, u: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adaptive lower slope, upper slope and upper intercept for bounds ``(B, h)``."""
    l = lo  # noqa: E741 - the relaxation's usual name
    active = l >= 0
    inactive = u <= 0
    unstable = ~(active | inactive)
    denom = torch.where(unstable, u - l, torch.ones_like(u))
    up_slope = torch.where(unstable, u / denom, active.to(u.dtype))
    up_icpt = torch.where(unstable, -u * l / denom, torch.zeros_like(u))
    lo_slope = torch.where(unstable, (u >= -l).to(u.dtype), active.to(u.dtype))
    return lo_slope, up_slope, up_icpt


def _backsub(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    A: torch.Tensor,
    const: torch.Tensor,
    top: int,
    lo_slopes: list[torch.Tensor],
    up_slopes: list[torch.Tensor],
    up_icpts: list[torch.Tensor],
    errors: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``A h_top + const`` (A ``(B, r, h_top)`` on relu outputs of layer ``top``) to x.

    ``lo_slopes[j]`` is ``(B, h_j)`` or ``(B, r, h_j)`` (per-row optimisable slopes);
    ``errors[j]`` ``(B, h_j)`` bounds layer ``j``'s rounding (None: exact arithmetic).
    """
    for j in range(top, -1, -1):
        lo = lo_slopes[j] if lo_slopes[j].dim() == 3 else lo_slopes[j].unsqueeze(1)
        const = const + (A.clamp(max=0) @ up_icpts[j].unsqueeze(-1)).squeeze(-1)
        A = A * torch.where(A >= 0, lo, up_slopes[j].unsqueeze(1))
        W, b = layers[j]
        const = const + A @ b
        if errors is not None:
            const = const - (A.abs() @ errors[j].unsqueeze(-1)).squeeze(-1)
        A = A @ W
    return A, const


def _tighten_unstable(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    i: int,
    zl: torch.Tensor,
    zu: torch.Tensor,
    splits: list[torch.Tensor] | None,
    lo_slopes: list[torch.Tensor],
    up_slopes: list[torch.Tensor],
    up_icpts: list[torch.Tensor],
    center: torch.Tensor,
    radius: torch.Tensor,
    errors: list[torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CROWN bounds of layer ``i`` only for the neurons each domain still has unstable.

    Rows are gathered per domain and padded to the batch maximum; padded rows are
    neutralised before the results are merged back (max for lower, min for upper).
    """
    unstable = (zl < 0) & (zu > 0)
    if splits is not None:
        unstable &= splits[i] == 0
    count = int(unstable.sum(-1).max()) if unstable.numel() else 0
    if count == 0:
        return zl, zu
    W, b = layers[i]
    # Indices of unstable neurons first (stable sort keeps the order deterministic).
    idx = torch.argsort((~unstable).to(torch.int8), dim=-1, stable=True)[:, :count]
    valid = torch.gather(unstable, 1, idx)
    Wg = W[idx]  # (B, r, in)
    bg = b[idx]  # (B, r)
    A0 = torch.cat([Wg, -Wg], 1)
    if errors is not None:
        eg = torch.gather(errors[i], 1, idx)
        c0 = torch.cat([bg - eg, -bg - eg], 1)
    else:
        c0 = torch.cat([bg, -bg], 1)
    A, c = _backsub(layers, A0, c0, i - 1, lo_slopes, up_slopes, up_icpts, errors)
    bnd = _minimise(A, c, center, radius)
    low = torch.where(valid, bnd[:, :count], torch.full_like(bnd[:, :count], -float("inf")))
    upp = torch.where(valid, -bnd[:, count:], torch.full_like(bnd[:, :count], float("inf")))
    zl = zl.scatter_reduce(1, idx, low, reduce="amax")
    zu = zu.scatter_reduce(1, idx, upp, reduce="amin")
    return zl, zu


def _minimise(A: torch.Tensor, c: torch.Tensor, center: torch.Tensor, radius: torch.Tensor
              ) -> torch.Tensor:
    """min over the box of ``A x + c``: ``(B, r)``."""
    mid = (A @ center.unsqueeze(-1)).squeeze(-1)
    return mid - (A.abs() @ radius.unsqueeze(-1)).squeeze(-1) + c


def crown_bounds(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    lower: torch.Tensor,
    upper: torch.Tensor,
    splits: list[torch.Tensor] | None = None,
    alpha_steps: int = 0,
    alpha_lr: float = 0.2,
    intermediate: str = "auto",
    combos: torch.Tensor | None = None,
    known: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    alpha_init: torch.Tensor | None = None,
    rounding: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> CrownResult:
    """CROWN lower bounds of the last layer's outputs over boxes.

    Args:
        layers: ``[(W (out, in), b (out,))]`` float64, ReLU after all but the last; the last
            layer is the objective (e.g. a property's margins folded in).
        lower, upper: ``(B, n)`` boxes.
        splits: per hidden layer ``(B, h_i)`` int8 in {-1, 0, +1} or None.
        alpha_steps: gradient steps on the final lower slopes (0 = plain CROWN).
        intermediate: "backward" (full CROWN per layer), "forward" (symbolic linear bounds
            carried forward in terms of x: far cheaper for few inputs, looser), "hybrid"
            (forward first, then CROWN only for the neurons still unstable, per domain), or
            "auto" (= hybrid).
        combos: ``(B, r, k)`` convex weights over the k objective rows; r extra rows
            ``sum_j combos_j * objective_j`` are bounded too (appended after the k rows).
            Each lower-bounds ``max_j objective_j``, which is what a property's margins need.
        known: per hidden layer ``(lower, upper)`` ``(B, h_i)`` pre-activation bounds already
            valid on each box (e.g. the parent domain's, since a child box lies inside its
            parent's); intersected in, so stable neurons need no back-substitution.
        alpha_init: ``(B, rows', sum h_i)`` lower slopes to start alpha-CROWN from (e.g. the
            parent domain's optimised ``slopes``); the first ``min(rows', rows)`` rows are
            used, the others start from the adaptive slopes.
        rounding: per layer ``(G (out, in), g (out,))``: the bounds hold for every
            evaluation whose pre-activations are off by at most ``G |h| + g`` (the deployed
            float rounding, :func:`falsify.spec_rounding`); None: exact arithmetic.
    """
    if intermediate == "auto":
        intermediate = "hybrid"
    if intermediate not in ("forward", "backward", "hybrid"):
        raise ValueError(
            f"intermediate {intermediate!r}; expected forward, backward, hybrid or auto")
    use_forward = intermediate in ("forward", "hybrid")
    center, radius = (lower + upper) / 2, (upper - lower) / 2
    batch = lower.shape[0]
    dtype = lower.dtype
    infeasible = torch.zeros(batch, dtype=torch.bool, device=lower.device)
    pre_lower: list[torch.Tensor] = []
    pre_upper: list[torch.Tensor] = []
    lo_slopes: list[torch.Tensor] = []
    up_slopes: list[torch.Tensor] = []
    up_icpts: list[torch.Tensor] = []
    errors: list[torch.Tensor] | None = [] if rounding is not None else None
    n_hidden = len(layers) - 1

    def rounding_error(i: int) -> torch.Tensor:
        """``(B, out_i)``: layer i's rounding over the box, from its input's bounds."""
        assert rounding is not None
        G, g = rounding[i]
        h_abs = torch.maximum(lower.abs(), upper.abs()) if i == 0 else \
            pre_upper[i - 1].clamp(min=0)
        # an infinite bound times a zero entry of G is NaN; infinite is what it means
        return torch.nan_to_num(h_abs @ G.T + g, nan=float("inf"))
    # Forward symbolic bounds: L_lo x + c_lo <= h <= L_up x + c_up on the box.
    eye = torch.eye(lower.shape[1], dtype=dtype, device=lower.device)
    f_lo_A = eye.unsqueeze(0).expand(batch, -1, -1)
    f_lo_c = torch.zeros(batch, lower.shape[1], dtype=dtype, device=lower.device)
    f_up_A, f_up_c = f_lo_A, f_lo_c
    # -- intermediate bounds, layer by layer --------------------------------------------------
    for i in range(n_hidden):
        W, b = layers[i]
        # Interval step from the previous (already tightened) bounds.
        if i == 0:
            prev_lo, prev_up = lower, upper
        else:
            prev_lo, prev_up = pre_lower[-1].clamp(min=0), pre_upper[-1].clamp(min=0)
        mid = ((prev_lo + prev_up) / 2) @ W.T + b
        rad = ((prev_up - prev_lo) / 2) @ W.abs().T
        err = torch.zeros_like(mid)
        if errors is not None:
            err = rounding_error(i)
            errors.append(err)
            rad = rad + err
        zl, zu = mid - rad, mid + rad
        if use_forward:
            Wp, Wn = W.clamp(min=0), W.clamp(max=0)
            z_lo_A = Wp @ f_lo_A + Wn @ f_up_A
            z_lo_c = f_lo_c @ Wp.T + f_up_c @ Wn.T + b - err
            z_up_A = Wp @ f_up_A + Wn @ f_lo_A
            z_up_c = f_up_c @ Wp.T + f_lo_c @ Wn.T + b + err
            zl = torch.maximum(zl, _minimise(z_lo_A, z_lo_c, center, radius))
            zu = torch.minimum(zu, -_minimise(-z_up_A, -z_up_c, center, radius))
        if i > 0 and intermediate == "backward":
            h = W.shape[0]
            A0 = torch.cat([W, -W], 0).unsqueeze(0).expand(batch, 2 * h, W.shape[1])
            c0 = torch.cat([b - err, -b - err], 1) if errors is not None else \
                torch.cat([b, -b], 0).unsqueeze(0).expand(batch, 2 * h)
            A, c = _backsub(layers, A0, c0, i - 1, lo_slopes, up_slopes, up_icpts, errors)
            bnd = _minimise(A, c, center, radius)
            zl = torch.maximum(zl, bnd[:, :h])
            zu = torch.minimum(zu, -bnd[:, h:])
        if known is not None:
            zl = torch.maximum(zl, known[i][0])
            zu = torch.minimum(zu, known[i][1])
        if i > 0 and intermediate == "hybrid":
            zl, zu = _tighten_unstable(layers, i, zl, zu, splits, lo_slopes, up_slopes,
                                       up_icpts, center, radius, errors)
        if splits is not None:
            s = splits[i]
            zl = torch.where(s > 0, zl.clamp(min=0), zl)
            zu = torch.where(s < 0, zu.clamp(max=0), zu)
        # Bounds that cross by more than float64 rounding mean an empty domain (splits that
        # contradict each other); a rounding-level crossing is not trusted to close a domain.
        infeasible |= (zl > zu + 1e-9 * (1 + zl.abs() + zu.abs())).any(-1)
        # Empty domains get harmless bounds so that later layers stay finite.
        zu = torch.maximum(zu, zl)
        pre_lower.append(zl)
        pre_upper.append(zu)
        lo, up, icpt = _relax(zl, zu)
        lo_slopes.append(lo)
        up_slopes.append(up)
        up_icpts.append(icpt)
        if use_forward:
            # Slopes are >= 0, so the relaxations compose with the symbolic bounds directly.
            f_lo_A = lo.unsqueeze(-1) * z_lo_A
            f_lo_c = lo * z_lo_c
            f_up_A = up.unsqueeze(-1) * z_up_A
            f_up_c = up * z_up_c + icpt
    # -- final objective ------------------------------------------------------------------------
    W, b = layers[-1]
    A0 = W.unsqueeze(0).expand(batch, W.shape[0], W.shape[1])
    c0 = b.unsqueeze(0).expand(batch, W.shape[0])
    if errors is not None:
        c0 = c0 - rounding_error(n_hidden)  # the objective rows' own rounding
    if combos is not None:
        A0 = torch.cat([A0, combos @ W], 1)
        c0 = torch.cat([c0, (combos @ c0.unsqueeze(-1)).squeeze(-1)], 1)
    if n_hidden == 0:
        A, c = A0, c0
        best = _minimise(A, c, center, radius)
    else:
        A, c = _backsub(layers, A0, c0, n_hidden - 1, lo_slopes, up_slopes, up_icpts, errors)
        best = _minimise(A, c, center, radius)
    slopes = None
    if alpha_steps > 0 and n_hidden > 0:
        best, A, c, slopes = _optimise_alpha(
            layers, A0, c0, n_hidden, lo_slopes, up_slopes, up_icpts, pre_lower, pre_upper,
            center, radius, best, A, c, alpha_steps, alpha_lr, alpha_init, errors,
        )
    lower_bound = torch.where(infeasible.unsqueeze(-1), torch.full_like(best, float("inf")), best)
    return CrownResult(lower_bound, A, c, pre_lower, pre_upper, infeasible, slopes)


def _optimise_alpha(
    layers, A0, c0, n_hidden, lo_slopes, up_slopes, up_icpts, pre_lower, pre_upper,
    center, radius, best, best_A, best_c, steps, lr, init=None, errors=None,
):
    """Projected Adam ascent on per-row lower slopes of unstable neurons; keeps the best.

    Returns the best bound, its ``A, c`` and the slopes it ended with ``(B, k, sum h)``.
    """
    k = A0.shape[1]
    unstable = [(pl < 0) & (pu > 0) for pl, pu in zip(pre_lower, pre_upper, strict=True)]
    start = torch.cat([s.unsqueeze(1).expand(-1, k, -1) for s in lo_slopes], -1).clone()
    if init is not None:
        rows = min(k, init.shape[1])
        given = init[:, :rows].to(start.dtype)
        start[:, :rows] = torch.where(given >= 0, given, start[:, :rows])  # -1: none stored
    sizes = [s.shape[-1] for s in lo_slopes]
    params = [p.clone().requires_grad_(True) for p in torch.split(start, sizes, -1)]
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    best, best_A, best_c = best.clone(), best_A.clone(), best_c.clone()
    for step in range(1, steps + 1):
        slopes = [
            torch.where(u.unsqueeze(1), p.clamp(0, 1), s.unsqueeze(1))
            for p, s, u in zip(params, lo_slopes, unstable, strict=True)
        ]
        A, c = _backsub(layers, A0, c0, n_hidden - 1, slopes, up_slopes, up_icpts, errors)
        bound = _minimise(A, c, center, radius)
        with torch.no_grad():
            better = bound > best
            best = torch.where(better, bound, best)
            best_A = torch.where(better.unsqueeze(-1), A, best_A)
            best_c = torch.where(better, c, best_c)
        grads = torch.autograd.grad(bound.sum(), params)
        with torch.no_grad():
            for p, g, a1, a2 in zip(params, grads, m1, m2, strict=True):
                p.add_(adam_direction(a1, a2, g, step), alpha=lr).clamp_(0, 1)  # ascent
    tuned = torch.cat([p.detach() for p in params], -1)
    return best.detach(), best_A.detach(), best_c.detach(), tuned


def max_of_rows_lower_bound(
    A: torch.Tensor,
    c: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    steps: int = 30,
    lr: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower bound of ``min_x max_j (A_j x + c_j)`` over each box: ``(B,)``.

    For any weights ``lam`` in the simplex, ``max_j L_j(x) >= sum_j lam_j L_j(x)``, whose
    minimum over the box is closed-form; the bound is maximised over ``lam`` by exponentiated
    (mirror) ascent on the concave dual and the best value seen is returned, so it is sound
    whatever the optimisation reaches. With linear lower bounds ``L_j`` of margins ``m_j``
    this proves ``max_j m_j > 0`` on domains where no single row is positive everywhere.

    Args:
        A: ``(B, k, n)``; c: ``(B, k)``; lower, upper: ``(B, n)``.
    Returns:
        ``(bound (B,), lam (B, k))``: the best bound and the weights that gave it (one-hot on
        the best row when no combination beats it).
    """
    center, radius = (lower + upper) / 2, (upper - lower) / 2
    k = A.shape[1]
    row_value = _minimise(A, c, center, radius)
    best, row = row_value.max(-1)
    best_lam = torch.nn.functional.one_hot(row, k).to(c.dtype)
    if k == 1 or steps <= 0:
        return best, best_lam
    logits = torch.zeros_like(c)
    for _ in range(steps):
        lam = torch.softmax(logits, -1)
        lam = lam / lam.sum(-1, keepdim=True)
        combined_A = (lam.unsqueeze(-1) * A).sum(1)  # (B, n)
        value = (lam * c).sum(-1) + (combined_A * center).sum(-1) \
            - (combined_A.abs() * radius).sum(-1)
        better = value > best
        best = torch.where(better, value, best)
        best_lam = torch.where(better.unsqueeze(-1), lam, best_lam)
        # Supergradient w.r.t. lam_j: L_j at the box corner minimising the combination.
        corner = center - torch.sign(combined_A) * radius
        grad = (A @ corner.unsqueeze(-1)).squeeze(-1) + c
        scale = grad.abs().amax(-1, keepdim=True).clamp(min=1e-12)
        logits = logits + lr * grad / scale
    return best, best_lam
