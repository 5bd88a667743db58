r"""Piecewise-linear losses for DFW: multi-class hinge and regression losses.

DFW's step is exact for losses that are a maximum of affine functions of the network's output
(the loss-preserving linearisation); these modules provide such losses. All return the mean
over the batch, which is what :class:`meetup_ros.optim.DFW` expects from the closure, and
all are non-negative.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["EpsilonInsensitiveLoss", "L1RegressionLoss", "LossInputError", "MultiClassHingeLoss"]


class LossInputError(ValueError):
    """A loss got inputs of the wrong shape or type, or a bad hyper-parameter."""


class MultiClassHingeLoss(nn.Module):
    r"""Crammer-Singer multi-class hinge, optionally smoothed.

    Per sample with scores :math:`s` (K,) and label :math:`y`:
    :math:`\max_{\bar y}\, (m[\bar y \ne y] + s_{\bar y} - s_y)` (zero when the true class wins
    by the margin :math:`m`). With ``smoothing`` :math:`\tau > 0` the max becomes
    :math:`\tau \log\sum_{\bar y} \exp((m[\bar y \ne y] + s_{\bar y} - s_y)/\tau)`, the paper's
    smoothed SVM: differentiable everywhere, an upper bound of the hinge, and at most
    :math:`\tau\log K` above it.

    Args:
        margin: the margin :math:`m` (> 0).
        smoothing: temperature :math:`\tau` (>= 0; 0 is the plain hinge).

    Shapes: ``scores`` (N, K) float, ``target`` (N,) int64 in [0, K).
    """

    def __init__(self, margin: float = 1.0, smoothing: float = 0.0) -> None:
        super().__init__()
        if not margin > 0.0:
            raise LossInputError(f"MultiClassHingeLoss: margin must be > 0, got {margin!r}")
        if not smoothing >= 0.0:
            raise LossInputError(
                f"MultiClassHingeLoss: smoothing must be >= 0, got {smoothing!r}")
        self.margin = float(margin)
        self.smoothing = float(smoothing)

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        if scores.dim() != 2 or target.shape != scores.shape[:1]:
            raise LossInputError(
                f"MultiClassHingeLoss: expected scores (N, K) and target (N,), got "
                f"{tuple(scores.shape)!r} and {tuple(target.shape)!r}")
        if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise LossInputError(
                f"MultiClassHingeLoss: target must hold integer labels, got {target.dtype!r}")
        target = target.long().unsqueeze(1)
        true_score = scores.gather(1, target)
        delta = torch.full_like(scores, self.margin).scatter(1, target, 0.0)
        augmented = scores + delta - true_score
        if self.smoothing > 0.0:
            per_sample = self.smoothing * torch.logsumexp(augmented / self.smoothing, dim=1)
        else:
            # the true class contributes exactly 0, so the max is already >= 0
            per_sample = augmented.max(dim=1).values
        return per_sample.mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, smoothing={self.smoothing}"


def _check_regression(name: str, prediction: Tensor, target: Tensor) -> None:
    if prediction.shape != target.shape:
        raise LossInputError(f"{name}: prediction and target shapes differ: "
                             f"{tuple(prediction.shape)!r} vs {tuple(target.shape)!r}")


class L1RegressionLoss(nn.Module):
    """Mean absolute error, optionally over a boolean validity mask (e.g. depth pixels): the
    mean over the ``True`` entries (0 where there are none); another dtype is refused."""

    def forward(self, prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_regression("L1RegressionLoss", prediction, target)
        return _masked_mean((prediction - target).abs(), mask)


class EpsilonInsensitiveLoss(nn.Module):
    """Mean of ``max(|prediction - target| - epsilon, 0)`` (errors below epsilon are free),
    optionally over a boolean validity mask as :class:`L1RegressionLoss`.

    Args:
        epsilon: the insensitive band, in the target's units (>= 0).
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if not epsilon >= 0.0:
            raise LossInputError(f"EpsilonInsensitiveLoss: epsilon must be >= 0, got {epsilon!r}")
        self.epsilon = float(epsilon)

    def forward(self, prediction: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        _check_regression("EpsilonInsensitiveLoss", prediction, target)
        return _masked_mean(((prediction - target).abs() - self.epsilon).clamp_min(0.0), mask)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return values.mean()
    if mask.shape != values.shape:
        raise LossInputError(f"mask shape {tuple(mask.shape)!r} differs from the prediction's "
                             f"{tuple(values.shape)!r}")
    if mask.dtype != torch.bool:
        # a validity mask says which entries count; a float "mask" is a weighting, and the
        # mean over max(sum, 1) gave inconsistent results for one ([2, 0, 0] -> 1.0 but
        # [0.1, 0, 0] -> 0.1 with errors [1, 2, 4])
        raise LossInputError(f"mask must be a boolean validity mask (torch.bool), got "
                             f"{mask.dtype}; convert it, e.g. mask > 0")
    weight = mask.to(values.dtype)
    # an all-invalid batch gives 0 (not NaN) so that a DFW step stays defined
    return (values * weight).sum() / weight.sum().clamp_min(1.0)
