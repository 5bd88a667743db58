"""Deep Frank-Wolfe optimiser, the piecewise-linear losses it is exact for, and its studies."""

from meetup_ros.optim.dfw import DFW, dfw
from meetup_ros.optim.losses import (
    EpsilonInsensitiveLoss,
    L1RegressionLoss,
    LossInputError,
    MultiClassHingeLoss,
)

__all__ = ["DFW", "EpsilonInsensitiveLoss", "L1RegressionLoss", "LossInputError",
           "MultiClassHingeLoss", "dfw"]
