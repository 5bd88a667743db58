r"""Deep Frank-Wolfe (Berrada, Zisserman and Kumar, ICLR 2019) as a ``torch.optim.Optimizer``.

The maths, derived for this implementation. At the iterate :math:`w_t` with mini-batch loss
:math:`\ell = L_j(w_t) \ge 0`, its gradient :math:`g`, and the regulariser
:math:`\rho(w) = \frac{\lambda}{2}\|w\|^2`, DFW solves the proximal problem

.. math::
    \min_w \frac{1}{2\eta}\|w - w_t\|^2 + T\rho(w) + T L_j(w)

where both :math:`\rho` and the network are linearised at :math:`w_t` while the piecewise-linear
loss keeps its max structure (the loss-preserving linearisation). Its dual is a concave
quadratic over a simplex whose "zero-loss" vertex maps to the primal step
:math:`r = -\eta\lambda w_t` and whose loss-maximising vertex maps to
:math:`s = -\eta(\lambda w_t + g)`. One Frank-Wolfe step from the zero-loss vertex towards the
other, with an exact line search on the dual

.. math::
    D(\gamma) = -\frac{1}{2\eta}\|r + \gamma(s - r)\|^2 + \gamma\,\ell,

gives the closed form

.. math::
    \gamma = \operatorname{clip}_{[0, 1]}
      \frac{\ell - \eta\lambda\langle w_t, g\rangle}{\eta\|g\|^2},
    \qquad w_{t+1} = w_t - \eta(\lambda w_t + \gamma g).

So DFW keeps SGD's direction; :math:`\eta` is the largest step (taken when :math:`\gamma = 1`)
and :math:`\gamma` shrinks it when the linearised loss would be driven below zero. With several
parameter groups the proximal weights differ per group, and the same line search gives one
:math:`\gamma` for all of them:
:math:`\gamma = (\ell - \sum_k \eta_k\lambda_k\langle w_k, g_k\rangle) /
(\sum_k \eta_k\|g_k\|^2)`. ``eps`` is added to that denominator so that a zero gradient gives
:math:`\gamma = 1` (a plain weight-decay step) instead of a division by zero.

Momentum is applied, as in the paper, in Nesterov form to the update direction
:math:`u_t = \lambda w_t + \gamma g`: :math:`z_t = \mu z_{t-1} + u_t`,
:math:`w_{t+1} = w_t - \eta(u_t + \mu z_t)`; the buffer starts at :math:`z_0 = u_0`.

Layers (as in ``torch.optim``): :class:`DFW` holds state and checks hyper-parameters,
:func:`dfw` is the pure functional step, and ``_multi_tensor_dfw`` / ``_single_tensor_dfw``
do the tensor work (``torch._foreach_*`` kernels by default). On an accelerator ``gamma``
stays a device tensor and the step never synchronises with the host; where the loss lives in
host memory (CPU) reading ``gamma`` is free, and it is used as a Python scalar, which lets
the update fold the weight decay into one buffer and skip an allocation (``host_gamma``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["DFW", "dfw"]


def _check_hyper_parameters(eta: float, momentum: float, weight_decay: float,
                            eps: float) -> None:
    """Raise ``ValueError`` naming the bad hyper-parameter and its value."""
    if not isinstance(eta, float | int) or isinstance(eta, bool) or not eta > 0.0:
        raise ValueError(f"DFW: eta (maximal step) must be a positive number, got {eta!r}")
    if not isinstance(momentum, float | int) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"DFW: momentum must be in [0, 1), got {momentum!r}")
    if not isinstance(weight_decay, float | int) or not weight_decay >= 0.0:
        raise ValueError(f"DFW: weight_decay must be >= 0, got {weight_decay!r}")
    if not isinstance(eps, float | int) or not eps > 0.0:
        raise ValueError(f"DFW: eps must be positive, got {eps!r}")
    for name, value in (("eta", eta), ("momentum", momentum),
                        ("weight_decay", weight_decay), ("eps", eps)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"DFW: {name} must be finite, got {value!r}")


class DFW(Optimizer):
    """Deep Frank-Wolfe: SGD's direction with a closed-form step ``eta * gamma``.

    Args:
        params: parameters or parameter groups (each group may set its own ``eta``,
            ``momentum``, ``weight_decay``); one ``gamma`` is shared by all groups.
        eta: the maximal step (the proximal weight); needs no schedule.
        momentum: Nesterov momentum on the update direction, in [0, 1).
        weight_decay: ``lambda`` of the regulariser ``lambda / 2 * ||w||^2``.
        eps: added to the denominator of ``gamma`` (guards a zero gradient).
        foreach: use the ``torch._foreach_*`` multi-tensor kernels (default) or a per-tensor loop.
        host_gamma: use ``gamma`` as a Python number (``None``: when the loss is on the CPU,
            where that costs no synchronisation) or keep it a tensor (``False``).

    ``step(closure)`` requires the closure: it must zero the gradients, compute the
    (non-negative, mini-batch mean) loss, call ``backward()`` and return the loss tensor.
    After a step, ``last_gamma`` holds ``gamma`` as a 0-dim tensor on the loss's device.

    Raises:
        ValueError: a hyper-parameter is out of range (the message shows the value).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], eta: float,
                 momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-5,
                 *, foreach: bool = True, host_gamma: bool | None = None) -> None:
        _check_hyper_parameters(eta, momentum, weight_decay, eps)
        defaults = {"eta": eta, "momentum": momentum, "weight_decay": weight_decay,
                    "eps": eps, "foreach": foreach, "host_gamma": host_gamma}
        super().__init__(params, defaults)
        self.last_gamma: Tensor | None = None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_hyper_parameters(group["eta"], group["momentum"], group["weight_decay"],
                                group["eps"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Evaluate ``closure`` (loss and gradients) and take one DFW step; returns the loss."""
        if closure is None:
            raise ValueError("DFW.step needs a closure that returns the loss value, got None")
        with torch.enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor):
            loss = torch.as_tensor(float(loss))
        groups = []
        for group in self.param_groups:
            params, grads, bufs = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError(f"DFW does not support sparse gradients (parameter of "
                                     f"shape {tuple(p.shape)!r})")
                params.append(p)
                grads.append(p.grad)
                bufs.append(self.state[p].get("momentum_buffer"))
            groups.append((group, params, grads, bufs))
        if not any(params for _, params, _, _ in groups):
            return loss
        gamma = dfw(
            [g[1] for g in groups], [g[2] for g in groups], [g[3] for g in groups],
            loss.detach(),
            etas=[g[0]["eta"] for g in groups],
            momenta=[g[0]["momentum"] for g in groups],
            weight_decays=[g[0]["weight_decay"] for g in groups],
            eps=min(g[0]["eps"] for g in groups),
            foreach=all(g[0]["foreach"] for g in groups),
            host_gamma=groups[0][0].get("host_gamma"),
        )
        for group, params, _, bufs in groups:
            if group["momentum"] == 0.0:
                continue
            for p, buf in zip(params, bufs, strict=True):
                self.state[p]["momentum_buffer"] = buf
        self.last_gamma = gamma
        return loss


def dfw(params: list[list[Tensor]], grads: list[list[Tensor]],
        momentum_buffers: list[list[Tensor | None]], loss: Tensor, *, etas: list[float],
        momenta: list[float], weight_decays: list[float], eps: float = 1e-5,
        foreach: bool = True, host_gamma: bool | None = None) -> Tensor:
    """Functional DFW step over parameter groups; updates ``params`` in place.

    Args:
        params, grads, momentum_buffers: one list per group; a ``None`` buffer is created
            (the lists are updated in place with the new buffers).
        loss: 0-dim tensor, the mini-batch loss at the current parameters.
        etas, momenta, weight_decays: one value per group.
        foreach: multi-tensor kernels, else a per-tensor loop.
        host_gamma: see :class:`DFW`.

    Returns:
        ``gamma``, a 0-dim tensor on ``loss``'s device.
    """
    step_impl = _multi_tensor_dfw if foreach else _single_tensor_dfw
    # phase 1: the two scalars of the line search, summed over groups and devices
    numerator = loss if loss.is_floating_point() else loss.to(torch.float32)
    denominator: Tensor | None = None
    for g_params, g_grads, eta, wd in zip(params, grads, etas, weight_decays, strict=True):
        if not g_params:
            continue
        grad_sq, w_dot_g = _group_products(g_params, g_grads, wd != 0.0, foreach)
        if grad_sq.device != numerator.device:
            grad_sq = grad_sq.to(numerator.device)
            w_dot_g = w_dot_g.to(numerator.device) if w_dot_g is not None else None
        term = grad_sq * eta
        denominator = term if denominator is None else denominator + term
        if w_dot_g is not None:
            numerator = numerator - w_dot_g * (eta * wd)
    assert denominator is not None  # the caller passes at least one non-empty group
    gamma = (numerator / (denominator + eps)).clamp_(0.0, 1.0)
    if host_gamma is None:
        host_gamma = gamma.device.type == "cpu"
    gamma_arg: Tensor | float = float(gamma) if host_gamma else gamma
    # phase 2: the update, per group
    for g_params, g_grads, g_bufs, eta, mu, wd in zip(params, grads, momentum_buffers, etas,
                                                      momenta, weight_decays, strict=True):
        if g_params:
            step_impl(g_params, g_grads, g_bufs, gamma_arg, eta=eta, momentum=mu,
                      weight_decay=wd)
    return gamma


def _group_products(params: list[Tensor], grads: list[Tensor], with_dot: bool,
                    foreach: bool) -> tuple[Tensor, Tensor | None]:
    """Return ``(sum ||g||^2, sum <w, g>)`` as 0-dim tensors (the dot only if asked)."""
    device = grads[0].device
    same_device = all(g.device == device for g in grads)
    if foreach and same_device:
        grad_sq = torch.stack(torch._foreach_norm(grads)).square().sum()
    else:
        grad_sq = torch.stack([g.square().sum().to(device) for g in grads]).sum()
    if not with_dot:
        return grad_sq, None
    # a per-tensor dot reads w and g once and allocates nothing (no foreach dot exists)
    dots = [torch.dot(p.reshape(-1), g.reshape(-1)) for p, g in zip(params, grads, strict=True)]
    if not same_device:
        dots = [d.to(device) for d in dots]
    return grad_sq, torch.stack(dots).sum()


def _multi_tensor_dfw(params: list[Tensor], grads: list[Tensor],
                      bufs: list[Tensor | None], gamma: Tensor | float, *, eta: float,
                      momentum: float, weight_decay: float) -> None:
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, bufs], with_indices=True  # type: ignore[list-item]
    )
    for (device, _), ((d_params, d_grads, d_bufs), indices) in grouped.items():
        d_params_t: list[Tensor] = d_params  # type: ignore[assignment]
        d_grads_t: list[Tensor] = d_grads  # type: ignore[assignment]
        # direction d and scale c with u = lambda w + gamma g = c * d
        direction, scale = _direction(d_params_t, d_grads_t, gamma, weight_decay, device)
        if momentum == 0.0:
            _foreach_scaled_add(d_params_t, direction, scale, -eta)
            continue
        if any(b is None for b in d_bufs):
            new_bufs = _foreach_scaled(direction, scale)
            for i, b in zip(indices, new_bufs, strict=True):
                bufs[i] = b
        else:
            new_bufs = d_bufs  # type: ignore[assignment]
            torch._foreach_mul_(new_bufs, momentum)
            _foreach_scaled_add(new_bufs, direction, scale, 1.0)
        # Nesterov: w <- w - eta (u + mu z_new)
        _foreach_scaled_add(d_params_t, direction, scale, -eta)
        torch._foreach_add_(d_params_t, new_bufs, alpha=-eta * momentum)


def _direction(params: list[Tensor], grads: list[Tensor], gamma: Tensor | float,
               weight_decay: float, device: torch.device | None) -> tuple[list[Tensor],
                                                                   Tensor | float]:
    """``(d, c)`` with ``c * d = lambda w + gamma g``, allocating at most one list."""
    if isinstance(gamma, float):
        if weight_decay == 0.0:
            return grads, gamma  # the gradients themselves: no copy
        if gamma == 0.0:
            # u = lambda w: w itself is the direction (each use reads it before it changes)
            return params, weight_decay
        # one fused pass: g + (lambda / gamma) w, scaled by gamma when applied
        return list(torch._foreach_add(grads, params, alpha=weight_decay / gamma)), gamma
    d_gamma = gamma.to(device=device, dtype=grads[0].dtype)
    update = list(torch._foreach_mul(grads, d_gamma))
    if weight_decay != 0.0:
        torch._foreach_add_(update, params, alpha=weight_decay)
    return update, 1.0


def _foreach_scaled(tensors: list[Tensor], scale: Tensor | float) -> list[Tensor]:
    if isinstance(scale, float) and scale == 1.0:
        return [t.clone() for t in tensors]
    return list(torch._foreach_mul(tensors, scale))


def _foreach_scaled_add(out: list[Tensor], tensors: list[Tensor], scale: Tensor | float,
                        alpha: float) -> None:
    """``out += alpha * scale * tensors`` (scale a Python number here: no extra pass)."""
    if isinstance(scale, Tensor):
        torch._foreach_add_(out, torch._foreach_mul(tensors, scale), alpha=alpha)
    else:
        torch._foreach_add_(out, tensors, alpha=alpha * scale)


def _single_tensor_dfw(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor | None],
                       gamma: Tensor | float, *, eta: float, momentum: float,
                       weight_decay: float) -> None:
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if isinstance(gamma, Tensor):
            update = g * gamma.to(device=g.device, dtype=g.dtype)
        else:
            update = g * gamma
        if weight_decay != 0.0:
            update.add_(p, alpha=weight_decay)
        if momentum != 0.0:
            buf = bufs[i]
            if buf is None:
                buf = torch.clone(update).detach()
                bufs[i] = buf
            else:
                buf.mul_(momentum).add_(update)
            update.add_(buf, alpha=momentum)
        p.add_(update, alpha=-eta)
