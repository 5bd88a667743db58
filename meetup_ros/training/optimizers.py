"""The optimizer (and SGD's step schedule) a :class:`TrainConfig` asks for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, MultiStepLR

from meetup_ros.training.config import TrainConfig

#: Adam's learning rate when neither ``cfg.lr`` nor a per-optimizer default is given: the
#: trainers' defaults are DFW maximal steps (~0.1), far too large for Adam.
ADAM_DEFAULT_LR = 1e-3
#: SGD's step schedule: the learning rate is divided by 10 at these fractions of the epochs.
SGD_MILESTONES = (0.5, 0.75)


def resolve_lr(cfg: TrainConfig, default_lr: float | Mapping[str, float]) -> float:
    """``cfg.lr`` if set, else the default for ``cfg.optimizer``.

    ``default_lr`` is one value (used for dfw and sgd; adam gets :data:`ADAM_DEFAULT_LR`)
    or a mapping ``{"dfw": ..., "sgd": ..., "adam": ...}``.
    """
    if cfg.lr is not None:
        return float(cfg.lr)
    if isinstance(default_lr, Mapping):
        if cfg.optimizer not in default_lr:
            raise ValueError(f"no default learning rate for optimizer {cfg.optimizer!r} in "
                             f"{dict(default_lr)!r}")
        return float(default_lr[cfg.optimizer])
    return ADAM_DEFAULT_LR if cfg.optimizer == "adam" else float(default_lr)


def make_optimizer(cfg: TrainConfig, params: Iterable[Any],
                   default_lr: float | Mapping[str, float] = 0.1) -> Optimizer:
    """Build DFW (``eta`` = lr), SGD (momentum, weight decay) or Adam from ``cfg``.

    Every optimizer is stepped with ``optimizer.step(closure)`` (DFW needs the loss value).
    """
    from meetup_ros.optim.dfw import DFW

    lr = resolve_lr(cfg, default_lr)
    if cfg.optimizer == "dfw":
        return DFW(params, eta=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r} is not one of dfw, sgd, adam")


def make_scheduler(cfg: TrainConfig, optimizer: Optimizer, epochs: int) -> LRScheduler | None:
    """SGD gets a step schedule (/10 at 50 % and 75 % of the epochs); DFW and Adam none."""
    if cfg.optimizer != "sgd":
        return None
    milestones = sorted({max(1, round(f * epochs)) for f in SGD_MILESTONES})
    return MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
