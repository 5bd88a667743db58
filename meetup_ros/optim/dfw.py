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
do the tensor work (``torch._foreach_*`` kernels by default). ``gamma`` stays a device tensor:
the step never synchronises with the host.
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

    ``step(closure)`` requires the closure: it must zero the gradients, compute the
    (non-negative, mini-batch mean) loss, call ``backward()`` and return the loss tensor.
    After a step, ``last_gamma`` holds ``gamma`` as a 0-dim tensor on the loss's device.

    Raises:
        ValueError: a hyper-parameter is out of range (the message shows the value).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], eta: float,
                 momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-5,
                 *, foreach: bool = True) -> None:
        _check_hyper_parameters(eta, momentum, weight_decay, eps)
        defaults = {"eta": eta, "momentum": momentum, "weight_decay": weight_decay,
                    "eps": eps, "foreach": foreach}
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
        foreach: bool = True) -> Tensor:
    """Functional DFW step over parameter groups; updates ``params`` in place.

    Args:
        params, grads, momentum_buffers: one list per group; a ``None`` buffer is created
            (the lists are updated in place with the new buffers).
        loss: 0-dim tensor, the mini-batch loss at the current parameters.
        etas, momenta, weight_decays: one value per group.

    Returns:
        ``gamma``, a 0-dim tensor on ``loss``'s device (no host synchronisation).
    """
    step_impl = _multi_tensor_dfw if foreach else _single_tensor_dfw
    # phase 1: the two scalars of the line search, summed over groups and devices
    numerator = loss.to(torch.float32 if not loss.is_floating_point() else loss.dtype)
    denominator = torch.zeros((), dtype=numerator.dtype, device=numerator.device)
    for g_params, g_grads, eta, wd in zip(params, grads, etas, weight_decays, strict=True):
        if not g_params:
            continue
        grad_sq, w_dot_g = _group_products(g_params, g_grads, wd != 0.0, foreach)
        denominator = denominator + eta * grad_sq.to(denominator.device)
        if wd != 0.0:
            numerator = numerator - eta * wd * w_dot_g.to(numerator.device)
    gamma = (numerator / (denominator + eps)).clamp(0.0, 1.0)
    # phase 2: the update, per group
    for g_params, g_grads, g_bufs, eta, mu, wd in zip(params, grads, momentum_buffers, etas,
                                                      momenta, weight_decays, strict=True):
        if g_params:
            step_impl(g_params, g_grads, g_bufs, gamma, eta=eta, momentum=mu, weight_decay=wd)
    return gamma


def _group_products(params: list[Tensor], grads: list[Tensor], with_dot: bool,
                    foreach: bool) -> tuple[Tensor, Tensor]:
    """Return ``(sum ||g||^2, sum <w, g>)`` as 0-dim tensors (the dot only if asked)."""
    device = grads[0].device
    if foreach and all(g.device == device for g in grads):
        norms = torch._foreach_norm(grads)
        grad_sq = torch.stack(norms).square().sum()
    else:
        grad_sq = sum((g.square().sum().to(device) for g in grads),
                      torch.zeros((), device=device))
    if not with_dot:
        return grad_sq, torch.zeros((), device=device)
    # a per-tensor dot reads w and g once and allocates nothing (no foreach dot exists)
    w_dot_g = torch.stack([torch.dot(p.reshape(-1), g.reshape(-1)).to(device)
                           for p, g in zip(params, grads, strict=True)]).sum()
    return grad_sq, w_dot_g


def _multi_tensor_dfw(params: list[Tensor], grads: list[Tensor],
                      bufs: list[Tensor | None], gamma: Tensor, *, eta: float, momentum: float,
                      weight_decay: float) -> None:
    grouped = Optimizer._group_tensors_by_device_and_dtype(
        [params, grads, bufs], with_indices=True  # type: ignore[list-item]
    )
    for (device, _), ((d_params, d_grads, d_bufs), indices) in grouped.items():
        d_params_t: list[Tensor] = d_params  # type: ignore[assignment]
        d_grads_t: list[Tensor] = d_grads  # type: ignore[assignment]
        d_gamma = gamma.to(device=device, dtype=d_grads_t[0].dtype)
        # u = gamma * g + lambda * w  (a fresh list: the gradients stay untouched)
        update = torch._foreach_mul(d_grads_t, d_gamma)
        if weight_decay != 0.0:
            torch._foreach_add_(update, d_params_t, alpha=weight_decay)
        if momentum != 0.0:
            if any(b is None for b in d_bufs):
                new_bufs = [torch.clone(u).detach() for u in update]
                for i, b in zip(indices, new_bufs, strict=True):
                    bufs[i] = b
            else:
                new_bufs = d_bufs  # type: ignore[assignment]
                torch._foreach_mul_(new_bufs, momentum)
                torch._foreach_add_(new_bufs, update)
            torch._foreach_add_(update, new_bufs, alpha=momentum)
        torch._foreach_add_(d_params_t, update, alpha=-eta)


def _single_tensor_dfw(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor | None],
                       gamma: Tensor, *, eta: float, momentum: float,
                       weight_decay: float) -> None:
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        update = g * gamma.to(device=g.device, dtype=g.dtype)
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
