"""The nDCG@5 of MetaHIN's tables (Lu, Fang and Shi, KDD 2020), per task, as float64 ``(T,)``.

MetaHIN's ``code/Evaluation.py`` does not rank the query items by prediction. It takes the
``k`` items of highest true rating, puts them back in query order, and divides

    DCG  = sum over those items, in query order, of (predicted rating) x discount(position)
    IDCG = sum over the same items' true ratings, sorted descending, of rating x discount

where position 1 has discount 1 and position ``p >= 2`` has ``1 / log2(p)`` (so positions 1
and 2 both weigh 1), and a zero IDCG gives 0. The gain is the rating itself, not ``2**r - 1``.
So the value depends on the order of the query set and on the scale of the predictions (it
can exceed 1; a perfect ranker scores below 1 unless the query happens to be sorted), and
never on how the model ranks the items. :func:`metahin_ndcg` computes it as written, for
comparison with MetaHIN's published numbers, under the name ``ndcg@5_metahin``;
``ndcg@5`` beside it is metarec's standard nDCG (:mod:`metarec.metrics.rating`: ranked by
prediction, gain ``2**r - 1``, ties averaged).

**Ties in true ratings** at the cut-off: MetaHIN reverses numpy's ascending ``argsort``, which
on query sets of 16 or fewer items is stable, so among equal ratings the item later in the
query is taken first. The same rule is applied here. Query sets are drawn in random order
(:func:`metarec.data.tasks.build_tasks`), so this amounts to a seeded random pick.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metarec.metrics.rating import check_padded_batch, task_metrics

K = 5


def _discounts(k: int, dtype: torch.dtype) -> Tensor:
    """MetaHIN's discounts of positions 1..k: 1, then ``1 / log2(p)`` for p = 2..k."""
    positions = torch.arange(1, k + 1, dtype=dtype)
    return torch.where(positions > 1, 1.0 / torch.log2(positions), torch.ones_like(positions))


def metahin_ndcg(preds: Tensor, targets: Tensor, mask: Tensor, k: int = K) -> Tensor:
    """MetaHIN's nDCG@k of each task of a padded batch (see the module docstring): ``preds``,
    ``targets`` and the bool ``mask`` of real entries are ``(T, Q)``; a task with fewer than
    ``k`` real items is scored over all of them."""
    check_padded_batch(preds, targets, mask)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    preds = preds.detach().to("cpu", torch.float64)
    targets = targets.detach().to("cpu", torch.float64)
    mask = mask.detach().to("cpu")
    n_tasks, width = targets.shape
    # Highest true rating first, the later position first among equals, padding last: a
    # stable sort by rating of the positions in reverse order.
    reverse = torch.arange(width - 1, -1, -1).expand(n_tasks, width)
    keys = torch.where(mask, targets, -torch.inf).gather(1, reverse)
    order = reverse.gather(1, keys.argsort(dim=1, descending=True, stable=True))
    top = order[:, : min(k, width)]
    real = mask.gather(1, top)
    # The chosen items back in query order (padding, moved to the end, keeps its place).
    in_query_order = torch.where(real, top, width).sort(dim=1).values.clamp(max=width - 1)
    discount = _discounts(top.shape[1], torch.float64)
    dcg = (torch.where(real, preds.gather(1, in_query_order), 0.0) * discount).sum(1)
    ideal = (torch.where(real, targets.gather(1, top), 0.0) * discount).sum(1)
    return torch.where(ideal > 0, dcg / torch.where(ideal > 0, ideal, 1.0), 0.0)


def standard_ndcg(preds: Tensor, targets: Tensor, mask: Tensor, k: int = K) -> Tensor:
    """metarec's nDCG@k (:func:`metarec.metrics.rating.task_metrics`) at MetaHIN's cut-off."""
    return task_metrics(preds, targets, mask, ks=(k,))[f"ndcg@{k}"]


# The per-task metrics MetaHIN's datasets add to the rating metrics, by name.
METAHIN_METRICS = {f"ndcg@{K}": standard_ndcg, f"ndcg@{K}_metahin": metahin_ndcg}
