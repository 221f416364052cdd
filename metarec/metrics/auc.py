"""ROC AUC: the one implementation behind per-task, pooled and bootstrap AUCs in metarec.

AUC is the Mann-Whitney statistic ``U / (n_pos * n_neg)``: the share of (positive, negative)
pairs that the scores order correctly, **a tie in scores counting half a pair**. It equals the
area under the trapezoidal ROC curve (torchmetrics' ``binary_auroc``, sklearn's
``roc_auc_score``), so a constant score gets 0.5 whatever the order of the items. It is **NaN
without both a positive and a negative** (no pair to order; torchmetrics returns 0 with a
warning, sklearn raises).

Each item carries a weight, a multiplicity: 0 leaves it out (the padding of a ``(T, Q)``
batch), 2 counts it twice (a bootstrap resample). With integer weights every intermediate
count is an integer held exactly in float64, so ``U`` is exact and the AUC is rounded once.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["auc"]


def auc(scores: Tensor, positive: Tensor, weights: Tensor | None = None) -> Tensor:
    """ROC AUC of each row: ties count half, NaN where a row lacks a positive or a negative.

    Args:
        scores: ``(..., n)`` finite scores, higher meaning "more likely positive". A 1-D
            ``(n,)`` row is sorted once and shared by every row of ``weights``.
        positive: bool, the shape of ``scores``: True for a positive item.
        weights: multiplicities broadcastable with ``scores`` (e.g. ``(R, n)`` resamples of
            one ``(n,)`` row, or a ``(T, n)`` bool mask of a padded batch); None counts every
            item once.

    Returns:
        float64 AUCs of shape ``broadcast(scores, weights).shape[:-1]``.
    """
    if weights is None:
        weights = torch.ones_like(scores, dtype=torch.float64)
    shape = torch.broadcast_shapes(scores.shape, weights.shape)
    order = torch.argsort(scores, dim=-1)
    ordered = scores.gather(-1, order)
    # A tied group occupies sorted positions left .. right - 1 (two binary searches).
    left = torch.searchsorted(ordered, ordered, side="left").expand(shape)
    right = torch.searchsorted(ordered, ordered, side="right").expand(shape)
    weight = weights.to(torch.float64).expand(shape).gather(-1, order.expand(shape))
    is_positive = positive.gather(-1, order).expand(shape)
    pos = torch.where(is_positive, weight, 0.0)
    neg = weight - pos
    # Negatives strictly below (at left) and at or below (at right) each position: a positive
    # beats the first and ties the rest, so it scores (below + through) / 2 pairs.
    negatives_through = torch.cat([torch.zeros_like(neg[..., :1]), neg.cumsum(-1)], dim=-1)
    below = negatives_through.gather(-1, left)
    through = negatives_through.gather(-1, right)
    twice_u = (pos * (below + through)).sum(-1)
    n_pairs = pos.sum(-1) * neg.sum(-1)
    safe_pairs = torch.where(n_pairs > 0, n_pairs, 1.0)
    return torch.where(n_pairs > 0, twice_u / (2.0 * safe_pairs), math.nan)
