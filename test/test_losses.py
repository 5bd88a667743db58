"""Piecewise-linear losses: hand-computed values, smoothing bounds, gradients, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from meetup_ros.optim import (
    EpsilonInsensitiveLoss,
    L1RegressionLoss,
    LossInputError,
    MultiClassHingeLoss,
)

SCORES = torch.tensor([[2.0, 1.5, -1.0],   # true 0: max(0, 1 + 1.5 - 2, 1 - 1 - 2) = 0.5
                       [0.0, 3.0, 0.5],    # true 1: wins by 2.5 > 1 -> 0
                       [1.0, 0.0, 0.2]],   # true 2: max(0, 1 + 1 - 0.2, 1 + 0 - 0.2) = 1.8
                      dtype=torch.float64)
TARGET = torch.tensor([0, 1, 2])


def test_hinge_hand_values() -> None:
    loss = MultiClassHingeLoss()(SCORES, TARGET)
    assert float(loss) == pytest.approx((0.5 + 0.0 + 1.8) / 3)


def test_hinge_margin() -> None:
    loss = MultiClassHingeLoss(margin=3.0)(SCORES, TARGET)
    # margin 3: (3 + 1.5 - 2, 3 - 3 + 0, 3 + 1 - 0.2) = (2.5, 0.5, 3.8)
    assert float(loss) == pytest.approx((2.5 + 0.5 + 3.8) / 3)


def test_hinge_gradient_is_the_loss_augmented_difference() -> None:
    scores = SCORES.clone().requires_grad_(True)
    MultiClassHingeLoss()(scores, TARGET).backward()
    expected = torch.tensor([[-1, 1, 0], [0, 0, 0], [1, 0, -1]], dtype=torch.float64) / 3
    torch.testing.assert_close(scores.grad, expected)


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
def test_smoothed_hinge_bounds(tau: float) -> None:
    torch.manual_seed(0)
    scores, target = torch.randn(50, 5, dtype=torch.float64), torch.randint(0, 5, (50,))
    hinge = MultiClassHingeLoss()(scores, target)
    smooth = MultiClassHingeLoss(smoothing=tau)(scores, target)
    assert float(hinge) <= float(smooth) <= float(hinge) + tau * math.log(5) + 1e-12


def test_smoothing_tends_to_hinge() -> None:
    smooth = MultiClassHingeLoss(smoothing=1e-4)(SCORES, TARGET)
    assert float(smooth) == pytest.approx((0.5 + 1.8) / 3, abs=1e-3)


def test_hinge_is_zero_on_confident_correct_scores() -> None:
    scores = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    assert float(MultiClassHingeLoss()(scores, torch.tensor([0, 1]))) == 0.0


def test_regression_losses() -> None:
    pred = torch.tensor([0.0, 1.0, 2.0, 3.0])
    target = torch.tensor([0.5, 1.0, 1.0, 3.05])
    assert float(L1RegressionLoss()(pred, target)) == pytest.approx((0.5 + 0 + 1 + 0.05) / 4)
    eps = EpsilonInsensitiveLoss(epsilon=0.1)
    assert float(eps(pred, target)) == pytest.approx((0.4 + 0 + 0.9 + 0) / 4)
    mask = torch.tensor([True, False, True, False])
    assert float(L1RegressionLoss()(pred, target, mask)) == pytest.approx(1.5 / 2)
    assert float(eps(pred, target, torch.zeros(4, dtype=torch.bool))) == 0.0


@pytest.mark.parametrize(("make", "message"), [
    (lambda: MultiClassHingeLoss(margin=0.0), r"margin.*0\.0"),
    (lambda: MultiClassHingeLoss(smoothing=-1.0), r"smoothing.*-1\.0"),
    (lambda: EpsilonInsensitiveLoss(epsilon=-0.1), r"epsilon.*-0\.1"),
])
def test_bad_loss_parameters(make: object, message: str) -> None:
    with pytest.raises(LossInputError, match=message):
        make()  # type: ignore[operator]


def test_bad_loss_inputs() -> None:
    with pytest.raises(LossInputError, match=r"\(3, 3\).*\(2,\)"):
        MultiClassHingeLoss()(SCORES, torch.tensor([0, 1]))
    with pytest.raises(LossInputError, match="integer labels"):
        MultiClassHingeLoss()(SCORES, TARGET.double())
    with pytest.raises(LossInputError, match=r"\(4,\) vs \(3,\)"):
        L1RegressionLoss()(torch.zeros(4), torch.zeros(3))
    with pytest.raises(LossInputError, match="mask shape"):
        EpsilonInsensitiveLoss()(torch.zeros(4), torch.zeros(4), torch.ones(2))


@pytest.mark.parametrize("loss", [L1RegressionLoss(), EpsilonInsensitiveLoss(epsilon=0.1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
def test_a_mask_that_is_not_boolean_is_refused(loss: torch.nn.Module,
                                               dtype: torch.dtype) -> None:
    """A float mask was taken as weights over max(sum, 1): with errors [1, 2, 4], [2, 0, 0]
    gave 1.0 but [0.1, 0, 0] gave 0.1, neither a masked mean."""
    pred, target = torch.zeros(3), torch.tensor([1.0, 2.0, 4.0])
    with pytest.raises(LossInputError, match=rf"mask must be a boolean.*got {dtype}"):
        loss(pred, target, torch.tensor([2, 0, 0]).to(dtype))
    assert float(loss(pred, target, torch.tensor([True, False, False]))) == pytest.approx(
        1.0 - getattr(loss, "epsilon", 0.0))
