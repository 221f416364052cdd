"""The per-task losses of the learners: masked over each task's padded positions.

``masked_mse`` for ratings, ``masked_bce`` for 0/1 likes (probabilities); :func:`task_loss`
picks one by ``task.target``. Each returns one loss per task (the last dimension reduced).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the last dimension where ``mask`` is true (per task if batched)."""
    weight = mask.to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


# Probabilities are clipped this far from 0 and 1 so that the log-loss stays finite.
EPS = 1e-6


def masked_bce(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of probabilities over the last dimension where ``mask`` is true."""
    weight = mask.to(prob.dtype)
    prob = prob.clamp(EPS, 1 - EPS)
    loss = -(target * prob.log() + (1 - target) * (1 - prob).log())
    return (loss * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def task_loss(target: str) -> Loss:
    """The per-task loss of a ``task.target``: MSE for ratings, cross-entropy for likes."""
    return masked_bce if target == "like" else masked_mse
