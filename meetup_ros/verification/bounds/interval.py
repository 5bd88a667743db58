"""Interval bound propagation (IBP), batched over boxes with torch."""

from __future__ import annotations

import torch


def interval_bounds(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    lower: torch.Tensor,
    upper: torch.Tensor,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]:
    """Bounds of every pre-activation and of the outputs over ``lower <= x <= upper``.

    Args:
        layers: ``[(W (out, in), b (out,))]``, ReLU after all but the last.
        lower, upper: ``(B, n)``.
    Returns:
        ``([(l_i, u_i) (B, h_i)] for hidden layers, (l_out, u_out) (B, m))``.
    """
    lo, up = lower, upper
    hidden: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, (W, b) in enumerate(layers):
        center, radius = (lo + up) / 2, (up - lo) / 2
        mid = center @ W.T + b
        rad = radius @ W.abs().T
        zl, zu = mid - rad, mid + rad
        if i == len(layers) - 1:
            return hidden, (zl, zu)
        hidden.append((zl, zu))
        lo, up = zl.clamp(min=0), zu.clamp(min=0)
    raise AssertionError("unreachable: layers is empty")
