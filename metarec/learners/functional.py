"""The inner loop of gradient-based learners on any unmodified nn.Module, via torch.func.

Fast weights are a dict of named tensors; ``functional_call`` runs the network with them and
``grad`` differentiates the support loss. Called under ``vmap`` it adapts a meta-batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.func import functional_call, grad

Params = dict[str, torch.Tensor]


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


def call(net: nn.Module, fast: Params, frozen: Params, buffers: Params, *args) -> torch.Tensor:
    """``net(*args)`` with its parameters replaced by ``fast`` and ``frozen``."""
    return functional_call(net, ({**frozen, **fast}, buffers), args)


def inner_loop(
    net: nn.Module,
    fast: Params,
    frozen: Params,
    buffers: Params,
    support: Mapping[str, torch.Tensor],
    steps: int,
    lr: float | Params,
    first_order: bool = False,
    loss: Loss = masked_mse,
) -> Params:
    """``steps`` gradient steps of ``fast`` on one task's support set; returns the fast weights.

    ``lr`` is one learning rate or one tensor per parameter (Meta-SGD). With ``first_order``
    the inner gradients are treated as constants by the outer (meta) gradient. ``loss`` is the
    per-task loss of the support set (``task_loss(task.target)``).
    """

    def support_loss(weights: Params) -> torch.Tensor:
        pred = call(net, weights, frozen, buffers, support["user"], support["item"])
        return loss(pred, support["rating"], support["mask"])

    for _ in range(steps):
        grads = grad(support_loss)(fast)
        if first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        if isinstance(lr, Mapping):  # Meta-SGD: a learned rate per weight
            fast = {name: weight - lr[name] * grads[name] for name, weight in fast.items()}
        else:  # one fused pass over each weight (embedding tables are large per-task copies)
            fast = {
                name: torch.add(weight, grads[name], alpha=-lr) for name, weight in fast.items()
            }
    return fast
