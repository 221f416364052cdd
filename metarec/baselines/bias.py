"""The strong simple baseline: item mean plus the user's mean offset on the support set.

No learning: item means come from the meta-training ratings (the global mean for an item never
seen there), the user's offset is the mean of ``rating - item_mean`` over the support set.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def item_means(items: torch.Tensor, ratings: torch.Tensor, n_items: int) -> torch.Tensor:
    """Mean rating of each item row; the global mean for items without ratings."""
    total = torch.zeros(n_items, dtype=torch.float64).index_add_(0, items, ratings.double())
    count = torch.zeros(n_items, dtype=torch.float64).index_add_(
        0, items, torch.ones_like(ratings, dtype=torch.float64)
    )
    return torch.where(count > 0, total / count.clamp(min=1), ratings.double().mean())


def predict_bias(
    support: Mapping[str, torch.Tensor],
    query_item: torch.Tensor,
    means: torch.Tensor,
    scale: tuple[float, float],
) -> torch.Tensor:
    """Predicted query ratings (tasks, query) of the item-mean + user-offset model.

    ``support`` holds a batch of support sets: ``item``, ``rating`` and ``mask`` (tasks, S).
    """
    mask = support["mask"].double()
    residual = (support["rating"].double() - means[support["item"]]) * mask
    offset = residual.sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
    return (means[query_item] + offset).clamp(*scale)
