"""Adam's step direction, written out for the verifier's small inner loops (alpha-CROWN's
slopes, the falsifier's descent): ``torch.optim`` pulls in ``torch._dynamo``, seconds of
imports at first use, which a runtime monitor's first deadline cannot afford."""

from __future__ import annotations

import torch


def adam_direction(m1: torch.Tensor, m2: torch.Tensor, grad: torch.Tensor, step: int,
                   beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
                   ) -> torch.Tensor:
    """Update the moment estimates ``m1, m2`` in place and return the bias-corrected
    direction for step ``step`` (1-based); the caller scales it by its learning rate."""
    m1.mul_(beta1).add_(grad, alpha=1 - beta1)
    m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    return (m1 / (1 - beta1**step)) / ((m2 / (1 - beta2**step)).sqrt() + eps)
