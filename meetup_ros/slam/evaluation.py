"""Depth accuracy: AbsRel, RMSE and delta < 1.25 over pixels valid in both maps."""

from __future__ import annotations

import numpy as np

from meetup_ros.slam import SlamError


def depth_metrics(depth_pred_m: np.ndarray, depth_ref_m: np.ndarray) -> dict[str, float]:
    """Compare a predicted depth map with a reference of the same shape.

    Valid pixels are finite and > 0 in both. Returns ``absrel`` (mean |p - r| / r), ``rmse_m``,
    ``delta1`` (share with max(p/r, r/p) < 1.25) and ``valid_fraction`` (of all pixels);
    NaN metrics when no pixel is valid.

    Raises:
        SlamError: the shapes differ.
    """
    pred = np.asarray(depth_pred_m, dtype=np.float64)
    ref = np.asarray(depth_ref_m, dtype=np.float64)
    if pred.shape != ref.shape:
        raise SlamError(
            f"depth_pred_m shape {pred.shape!r} differs from depth_ref_m shape {ref.shape!r}"
        )
    valid = np.isfinite(pred) & np.isfinite(ref) & (pred > 0) & (ref > 0)
    n = int(valid.sum())
    if n == 0:
        nan = float("nan")
        return {"absrel": nan, "rmse_m": nan, "delta1": nan, "valid_fraction": 0.0}
    p, r = pred[valid], ref[valid]
    ratio = np.maximum(p / r, r / p)
    return {
        "absrel": float(np.mean(np.abs(p - r) / r)),
        "rmse_m": float(np.sqrt(np.mean((p - r) ** 2))),
        "delta1": float(np.mean(ratio < 1.25)),
        "valid_fraction": float(n / pred.size),
    }
