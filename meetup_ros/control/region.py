"""The input region a safety certificate covers: the state plus or minus an uncertainty box."""

from __future__ import annotations

import numpy as np

from meetup_ros.control import ControlError


def region(
    state: np.ndarray, sigma: np.ndarray, radii: np.ndarray, k_sigma: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` = state -/+ (k_sigma * sigma + radii), elementwise.

    Args:
        state: ``(n,)`` the controller's input.
        sigma: ``(n,)`` one-sigma from the estimator (0 where it gives none).
        radii: ``(n,)`` configured half-widths added on top (model error, latency).
        k_sigma: how many sigmas the box spans on each side.

    Raises:
        ControlError: shapes differ, or a value is negative or not finite.
    """
    state = np.asarray(state, dtype=np.float64).reshape(-1)
    sigma = np.asarray(sigma, dtype=np.float64).reshape(-1)
    radii = np.asarray(radii, dtype=np.float64).reshape(-1)
    if not state.shape == sigma.shape == radii.shape:
        raise ControlError(
            f"state {state.shape!r}, sigma {sigma.shape!r} and radii {radii.shape!r} differ"
        )
    for name, value in (("state", state), ("sigma", sigma), ("radii", radii)):
        if not np.all(np.isfinite(value)):
            raise ControlError(f"{name} {value.tolist()!r} is not finite")
    if np.any(sigma < 0) or np.any(radii < 0) or not (np.isfinite(k_sigma) and k_sigma >= 0):
        raise ControlError(
            f"sigma {sigma.tolist()!r}, radii {radii.tolist()!r} and k_sigma {k_sigma!r} "
            "must be non-negative"
        )
    half_width = k_sigma * sigma + radii
    return state - half_width, state + half_width
