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

Inputs the step rule has no answer for are refused before anything changes: a loss that is not
finite or is below 0, a non-finite gradient (``ValueError``). That check reads the loss on the
host, so it runs where doing so is free (loss in host memory) or already done
(``host_gamma=True``); on an accelerator with ``host_gamma=False`` it is skipped, to keep the
step free of synchronisations. Complex parameters are treated as pairs of real ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["DFW", "dfw"]

# A loss this far below 0 passes as rounding (a sum of non-negative terms can land a few ulps
# below 0); gamma clips it to 0 like a zero loss. The training loop uses the same bound.
NEGATIVE_LOSS_TOLERANCE = 1e-6

# Why there is no 'lr' alias of 'eta' for torch.optim.lr_scheduler: gamma already sizes every
# step, so DFW needs no schedule (the project's trainers give it none), and an alias that
# schedulers write while users and the training loop write 'eta' would need a rule for which
# one wins; picking wrong would silently ignore one of them. So a scheduler gets this error.
_NO_LR_MESSAGE = ("DFW has no 'lr', so torch.optim.lr_scheduler cannot drive it: its maximal "
                  "step is param_group['eta'], which needs no schedule (gamma in [0, 1] "
                  "scales each step); to change it, set param_group['eta']")


class _NoLearningRateError(KeyError):
    def __str__(self) -> str:  # KeyError would show the message as a quoted repr
        return str(self.args[0])


class _ParamGroup(dict[str, Any]):
    """A param group whose missing ``'lr'`` says why instead of a bare ``KeyError``."""

    def __missing__(self, key: Any) -> Any:
        if key == "lr":
            raise _NoLearningRateError(_NO_LR_MESSAGE)
        raise KeyError(key)


_HYPER_PARAMETERS = ("eta", "momentum", "weight_decay", "eps")


def _check_hyper_parameters(eta: float, momentum: float, weight_decay: float,
                            eps: float, where: str = "") -> None:
    """Raise ``ValueError`` naming the bad hyper-parameter, its value and ``where`` it is
    (e.g. ``", param group 1"``)."""
    prefix = f"DFW{where}:"
    if not isinstance(eta, float | int) or isinstance(eta, bool) or not eta > 0.0:
        raise ValueError(f"{prefix} eta (maximal step) must be a positive number, got {eta!r}")
    if not isinstance(momentum, float | int) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"{prefix} momentum must be in [0, 1), got {momentum!r}")
    if not isinstance(weight_decay, float | int) or not weight_decay >= 0.0:
        raise ValueError(f"{prefix} weight_decay must be >= 0, got {weight_decay!r}")
    if not isinstance(eps, float | int) or not eps > 0.0:
        raise ValueError(f"{prefix} eps must be positive, got {eps!r}")
    for name, value in (("eta", eta), ("momentum", momentum),
                        ("weight_decay", weight_decay), ("eps", eps)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{prefix} {name} must be finite, got {value!r}")


def _check_group(group: Any, where: str) -> None:
    """Check one param group's hyper-parameters; a missing one is named (an SGD or Adam
    group has 'lr' and no 'eta': a bare ``KeyError: 'eta'`` at the next step said neither)."""
    missing = [key for key in _HYPER_PARAMETERS if key not in group]
    if missing:
        other = (" (it has 'lr': the state of another optimizer, e.g. SGD or Adam)"
                 if "lr" in group else "")
        raise ValueError(f"DFW{where} has no {', '.join(map(repr, missing))}{other}; DFW "
                         "needs eta, momentum, weight_decay and eps in every param group")
    _check_hyper_parameters(group["eta"], group["momentum"], group["weight_decay"],
                            group["eps"], where)


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
        ValueError: a hyper-parameter is out of range or missing (the message names the
            param group and shows the value), checked at construction, in
            ``add_param_group``, in ``load_state_dict`` (which also refuses another
            optimizer's state and momentum buffers of the wrong shape) and at each ``step``
            (values set in ``param_groups``); in ``step``: the loss is not one finite number
            >= 0 or a gradient is not finite. Nothing is changed then.
        TypeError: in ``step``, the closure returned no loss (e.g. ``None``).

    There is no ``'lr'`` in the param groups, so learning-rate schedulers are refused with
    that said (``eta`` needs no schedule); set ``param_group['eta']`` to change it.
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
        if "lr" in param_group:
            raise ValueError(f"DFW: a param group sets 'lr' ({param_group['lr']!r}); DFW's "
                             "maximal step is 'eta'")
        merged = {**self.defaults, **param_group}  # checked before the group is added
        _check_hyper_parameters(merged["eta"], merged["momentum"], merged["weight_decay"],
                                merged["eps"], f", param group {len(self.param_groups)}")
        super().add_param_group(_ParamGroup(param_group))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a DFW state dict, refusing (``ValueError``, before anything changes) one of
        another optimizer, out-of-range hyper-parameters, or a momentum buffer whose shape
        is not its parameter's; each had been taken as it was and used unchecked (an eta of
        -1 drove the loss up, a wrong-shape buffer failed inside ``torch._foreach_add_``)."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ValueError(f"DFW.load_state_dict: expected an optimizer state dict with a "
                             f"list of param groups, got {type(state_dict).__name__}")
        for k, group in enumerate(groups):
            _check_group(group, f", param group {k} of the loaded state")
        saved_ids = [i for g in groups for i in g.get("params", ())]
        params = [p for g in self.param_groups for p in g["params"]]
        saved_state = state_dict.get("state", {})
        if len(saved_ids) == len(params) and isinstance(saved_state, dict):
            # (other mismatches, e.g. group sizes, are refused by torch's own load_state_dict)
            for k, (saved_id, p) in enumerate(zip(saved_ids, params, strict=True)):
                entry = saved_state.get(saved_id)
                buf = entry.get("momentum_buffer") if isinstance(entry, dict) else None
                if buf is not None and (not isinstance(buf, Tensor)
                                        or tuple(buf.shape) != tuple(p.shape)):
                    shown = (tuple(buf.shape) if isinstance(buf, Tensor)
                             else type(buf).__name__)
                    raise ValueError(f"DFW.load_state_dict: the momentum buffer of parameter "
                                     f"{k} is {shown}, but the parameter's shape is "
                                     f"{tuple(p.shape)} (a state dict of another model?)")
        super().load_state_dict(state_dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # load_state_dict and unpickling bring plain dicts
        self.param_groups = [g if isinstance(g, _ParamGroup) else _ParamGroup(g)
                             for g in self.param_groups]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Evaluate ``closure`` (loss and gradients) and take one DFW step; returns the loss."""
        if closure is None:
            raise ValueError("DFW.step needs a closure that returns the loss value, got None")
        # param_group['eta'] is the documented way to change the step, and load_state_dict
        # or any code may change the groups: check them each step (a few comparisons), as an
        # eta of -1 or a momentum of 1.5 silently drove the loss up
        for k, group in enumerate(self.param_groups):
            _check_group(group, f", param group {k}")
        with torch.enable_grad():
            loss = closure()
        loss_value = _loss_tensor(loss)
        if not isinstance(loss, Tensor):
            loss = loss_value
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
            loss_value,
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

    Raises:
        ValueError: the loss is not finite or below 0, or a gradient is not finite, before
            anything is changed (checked where the loss is on the CPU or ``host_gamma``).
    """
    step_impl = _multi_tensor_dfw if foreach else _single_tensor_dfw
    # phase 1: the two scalars of the line search, summed over groups and devices
    numerator = loss if loss.is_floating_point() else loss.to(torch.float32)
    loss_f = numerator
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
    on_cpu = gamma.device.type == "cpu"
    if host_gamma is None:
        host_gamma = on_cpu
    gamma_arg: Tensor | float = gamma
    if host_gamma or on_cpu:
        # the loss and ||g||^2 read with gamma: free on the CPU; elsewhere one transfer, the
        # synchronisation host_gamma=True makes anyway
        if on_cpu:
            ell, grad_sq_sum, gamma_value = float(loss_f), float(denominator), float(gamma)
        else:
            ell, grad_sq_sum, gamma_value = torch.stack(
                [loss_f.reshape(()).to(gamma.dtype), denominator.to(gamma.dtype), gamma]
            ).tolist()
        _check_step_inputs(ell, grad_sq_sum, gamma_value, params, grads)
        if host_gamma:
            gamma_arg = gamma_value
    # phase 2: the update, per group
    for g_params, g_grads, g_bufs, eta, mu, wd in zip(params, grads, momentum_buffers, etas,
                                                      momenta, weight_decays, strict=True):
        if g_params:
            step_impl(g_params, g_grads, g_bufs, gamma_arg, eta=eta, momentum=mu,
                      weight_decay=wd)
    return gamma


def _loss_tensor(loss: Any) -> Tensor:
    """The closure's loss as a detached 0-dim tensor, or an error saying what DFW expects."""
    if isinstance(loss, Tensor):
        if loss.numel() != 1:
            raise ValueError(f"DFW: the closure returned a loss of shape {tuple(loss.shape)}; "
                             "DFW needs one number, the mini-batch mean loss (reduce it, "
                             "e.g. loss.mean())")
        return loss.detach().reshape(())
    try:
        return torch.as_tensor(float(loss))
    except (TypeError, ValueError):
        raise TypeError(f"DFW: the closure returned {type(loss).__name__} ({loss!r:.60}); "
                        "DFW needs the loss it computed (a tensor or a number) to size the "
                        "step") from None


def _check_step_inputs(loss: float, grad_sq: float, gamma: float,
                       params: list[list[Tensor]], grads: list[list[Tensor]]) -> None:
    """Refuse a step the closed form has no answer for (before anything is changed)."""
    if not math.isfinite(loss) or loss < -NEGATIVE_LOSS_TOLERANCE:
        raise ValueError(f"DFW: the loss is {loss!r}; DFW's step size needs a finite loss "
                         ">= 0 (0 at the best, e.g. a hinge loss). Nothing was changed")
    if math.isfinite(grad_sq) and not math.isnan(gamma):
        return
    # rare: look for the culprit (a finite but huge gradient can overflow ||g||^2 alone)
    for kind, tensors in (("gradient of parameter", grads), ("parameter", params)):
        for k, group in enumerate(tensors):
            for i, t in enumerate(group):
                if not bool(torch.isfinite(t).all()):
                    raise ValueError(f"DFW: the {kind} {i} of group {k} (counting those with "
                                     f"a gradient; shape {tuple(t.shape)}) is not finite; "
                                     "DFW needs finite parameters and gradients. Nothing "
                                     "was changed")
    if math.isnan(gamma):
        raise ValueError(f"DFW: gamma is nan: ||g||^2 ({grad_sq!r}) or <w, g> overflows the "
                         "parameters' dtype. Nothing was changed")


def _group_products(params: list[Tensor], grads: list[Tensor], with_dot: bool,
                    foreach: bool) -> tuple[Tensor, Tensor | None]:
    """Return ``(sum ||g||^2, sum <w, g>)`` as 0-dim tensors (the dot only if asked)."""
    if any(g.is_complex() for g in grads):
        # C^n as R^2n: autograd's complex gradient is the real gradient (d/dx + i d/dy)
        grads = [torch.view_as_real(g) if g.is_complex() else g for g in grads]
        params = [torch.view_as_real(p) if p.is_complex() else p for p in params]
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
        # z <- mu z + u where there is a buffer; z_0 = u_0 for a parameter's first gradient
        # (the others keep their momentum)
        new_bufs: list[Tensor] = list(d_bufs)  # type: ignore[arg-type]
        kept = [j for j, b in enumerate(d_bufs) if b is not None]
        fresh = [j for j, b in enumerate(d_bufs) if b is None]
        if kept:
            old = [new_bufs[j] for j in kept]
            torch._foreach_mul_(old, momentum)
            _foreach_scaled_add(old, [direction[j] for j in kept], scale, 1.0)
        if fresh:
            for j, b in zip(fresh, _foreach_scaled([direction[j] for j in fresh], scale),
                            strict=True):
                new_bufs[j] = b
                bufs[indices[j]] = b
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
        # one fused pass, the smaller coefficient over the larger (<= 1: lambda / gamma
        # alone overflows for a tiny gamma), scaled by the larger when applied
        if gamma >= weight_decay:
            return list(torch._foreach_add(grads, params, alpha=weight_decay / gamma)), gamma
        return list(torch._foreach_add(params, grads, alpha=gamma / weight_decay)), weight_decay
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
