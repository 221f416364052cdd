"""The strong simple baseline: item mean plus the user's mean offset on the support set.

No learning: item means come from the meta-training ratings (the global mean for an item never
seen there), the user's offset is the mean of ``rating - item_mean`` over the support set.

With pseudo-counts (``learner.kind: shrunk``) both are shrunk: an item's mean toward the global
mean as if it had ``item_pseudo`` more ratings at the global mean, the user's offset toward 0
as if the support set had ``user_pseudo`` more ratings with no offset. Pseudo-counts of 0 give
the plain model's numbers exactly. ``pick_pseudo_counts`` chooses them on validation tasks.

The ``mean`` baseline (``kind: bias``/``shrunk``) predicts with these functions, and any learner
learns the residuals of the shrunk model with them (``learner.residual``: :func:`residualize`,
then :func:`add_baseline`), so they sit below both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from metarec.data.batch import Batch
from metarec.data.tasks import TaskSet

# The pseudo-counts ``pick_pseudo_counts`` tries by default; 0 (no shrinkage) is in both, so
# the pick is never worse on validation than the plain model.
ITEM_PSEUDO_GRID = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
USER_PSEUDO_GRID = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def item_means(
    items: torch.Tensor,
    ratings: torch.Tensor,
    n_items: int,
    pseudo: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Mean rating of each item row; the global mean for items without ratings.

    ``pseudo`` > 0 shrinks each mean toward the global mean ``mu``: ``(sum + pseudo * mu) /
    (count + pseudo)``. A tensor of pseudo-counts broadcasts against the ``(n_items,)`` means:
    shape ``(A, 1)`` gives ``(A, n_items)``, one row per pseudo-count.
    """
    total = torch.zeros(n_items, dtype=torch.float64).index_add_(0, items, ratings.double())
    count = torch.zeros(n_items, dtype=torch.float64).index_add_(
        0, items, torch.ones_like(ratings, dtype=torch.float64)
    )
    global_mean = ratings.double().mean()
    shrunk = (total + pseudo * global_mean) / (count + pseudo).clamp(min=1)
    return torch.where(count > 0, shrunk, global_mean)


def predict_bias(
    support: Mapping[str, torch.Tensor],
    query_item: torch.Tensor,
    means: torch.Tensor,
    scale: tuple[float, float],
    user_pseudo: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Predicted query ratings (tasks, query) of the item-mean + user-offset model.

    ``support`` holds a batch of support sets: ``item``, ``rating`` and ``mask`` (tasks, S).
    The offset is ``sum(residual) / (n_support + user_pseudo)``. Leading dimensions of
    ``means`` (``(A, 1, n_items)``) and of ``user_pseudo`` (``(B, 1, 1)``) broadcast: the
    result is then ``(A, B, tasks, query)``, every pair of pseudo-counts at once.
    """
    mask = support["mask"].double()
    residual = (support["rating"].double() - means[..., support["item"]]) * mask
    offset = user_offset(residual, mask, user_pseudo)
    return (means[..., query_item] + offset).clamp(*scale)


def user_offset(
    residual: torch.Tensor, mask: torch.Tensor, pseudo: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """The user's offset from the item means, ``(..., 1)``: the support set's residuals
    (``rating - item mean``, 0 where ``mask`` is false) summed over the last dimension, over
    the support count plus ``pseudo`` ratings with no offset."""
    # An empty support set has a zero residual sum: any denominator >= 1 gives offset 0.
    count = (mask.sum(-1, keepdim=True) + pseudo).clamp(min=1)
    return residual.sum(-1, keepdim=True) / count


def residualize(batch: Batch, means: torch.Tensor, user_pseudo: torch.Tensor) -> Batch:
    """A task batch's ratings minus the shrunk model's predictions (item ``means`` and the
    user's offset, shrunk by ``user_pseudo``), in the batch's precision, with ``query_offset``
    (the query predictions) and ``query_target`` (the query ratings) beside them."""
    mask, query_mask = batch["support_mask"], batch["query_mask"]
    dtype = batch["support_rating"].dtype
    means = means.to(dtype)
    residual = (batch["support_rating"] - means[batch["support_item"]]) * mask
    offset = user_offset(residual, mask, user_pseudo.to(dtype))
    query_base = means[batch["query_item"]] + offset
    return {
        **batch,
        "support_rating": (residual - offset) * mask,
        "query_rating": (batch["query_rating"] - query_base) * query_mask,
        "query_offset": query_base,
        "query_target": batch["query_rating"],
    }


def add_baseline(pred: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, Batch]:
    """Query predictions of residuals (a batch from :func:`residualize`) made ratings again:
    the shrunk model's predictions added back, and the batch with its query ratings; both as
    they are for a batch of ratings."""
    if "query_offset" not in batch:
        return pred, batch
    return pred + batch["query_offset"], {**batch, "query_rating": batch["query_target"]}


def pick_pseudo_counts(
    items: torch.Tensor,
    ratings: torch.Tensor,
    n_items: int,
    val: TaskSet,
    scale: tuple[float, float],
    item_grid: Sequence[float] = ITEM_PSEUDO_GRID,
    user_grid: Sequence[float] = USER_PSEUDO_GRID,
) -> tuple[float, float, float]:
    """(item_pseudo, user_pseudo, MAE): the pair of the grids with the lowest MAE on the
    validation tasks ``val`` (per task, then over tasks, as the metrics average), for item
    means from the meta-training ``items`` and ``ratings``. Every pair is scored in one
    batch; on a tie the earlier pair of the grids wins."""
    item_pseudo = torch.tensor(item_grid, dtype=torch.float64)
    user_pseudo = torch.tensor(user_grid, dtype=torch.float64)
    means = item_means(items, ratings, n_items, item_pseudo[:, None, None])  # (A, 1, I)
    support = {"item": val.support_item, "rating": val.support_rating, "mask": val.support_mask}
    pred = predict_bias(support, val.query_item, means, scale, user_pseudo[:, None, None])
    mask = val.query_mask.double()
    error = (pred - val.query_rating.double()).abs() * mask  # (A, B, T, Q)
    mae = (error.sum(-1) / mask.sum(-1)).mean(-1)  # (A, B)
    best = int(mae.flatten().argmin())
    row, col = divmod(best, len(user_grid))
    return float(item_pseudo[row]), float(user_pseudo[col]), float(mae[row, col])
