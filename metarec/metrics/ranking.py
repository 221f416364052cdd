"""Ranking metrics of next-item tasks (HR@k, NDCG@k, MRR), per task, as float64 ``(T,)``.

A task's positive item is ranked by its score against competitors: the negatives of its
query set (*sampled*, :func:`ranking_metrics`: NCF's protocol, 99 negatives) or every item
of the catalogue but the user's history (*full*, :func:`full_ranking_metrics`, as RecBole's
full sort). With the positive at 0-based position ``p``: HR@k is 1 when ``p < k``, NDCG@k
is ``1 / log2(p + 2)`` when ``p < k`` (one relevant item, so the ideal DCG is 1), and the
reciprocal rank is ``1 / (p + 1)``.

**Ties** are broken at random, in expectation: with ``g`` competitors scoring above the
positive and ``e`` level with it, ``p`` is uniform on ``g .. g + e`` and each metric is its
mean over those positions. So a constant scorer gets exactly the chance level (HR@10 = 0.1
among 100 candidates), whatever the order of the query, rather than 0 (pessimistic) or 1
(optimistic). Without ties the metrics are the usual ones (``torchmetrics``' retrieval
functions agree; they break ties by sort order and score one query at a time, hence not
used here).

A query set with several positives scores each against the negatives alone and averages
over them; a task with no positive gets NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from metarec.metrics.rating import check_padded_batch

__all__ = ["expected_rank_metrics", "full_ranking_metrics", "learner_full_ranking",
           "positive_items", "ranking_metrics"]  # fmt: skip

K = 10


def expected_rank_metrics(greater: Tensor, equal: Tensor, k: int = K) -> dict[str, Tensor]:
    """HR@k, NDCG@k and reciprocal rank (float64, the shape of the counts) of a positive with
    ``greater`` competitors scoring above it and ``equal`` tied with it, ties broken at random
    (the mean over positions ``greater .. greater + equal``)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    above, tied = greater.to(torch.float64), equal.to(torch.float64)
    positions = tied + 1
    hr = ((k - above) / positions).clamp(0.0, 1.0)
    # cumulative[j]: the discounts of positions 0..j-1; positions from k on count 0.
    discount = 1.0 / torch.log2(torch.arange(k, dtype=torch.float64, device=above.device) + 2)
    cumulative = torch.cat([discount.new_zeros(1), discount.cumsum(0)])
    first = above.clamp(max=k).long()
    end = (above + positions).clamp(max=k).long()
    ndcg = (cumulative[end] - cumulative[first]) / positions
    # sum of 1/(p+1) for p = g..g+e is H(g+e+1) - H(g), and H(m) = digamma(m + 1) + gamma.
    rr = torch.special.digamma(above + positions + 1) - torch.special.digamma(above + 1)
    return {f"hr@{k}": hr, f"ndcg@{k}": ndcg, "mrr": rr / positions}


def ranking_metrics(scores: Tensor, labels: Tensor, mask: Tensor, k: int = K) -> dict[str, Tensor]:
    """Sampled ranking metrics of each task's query set: ``scores``, 0/1 ``labels`` and the
    bool ``mask`` of real entries are ``(T, Q)``; returns ``{"hr@k", "ndcg@k", "mrr"}``, each
    ``(T,)`` float64, every positive ranked among the task's negatives (NaN: no positive)."""
    check_padded_batch(scores, labels, mask, names=("scores", "labels"))
    positive = (labels > 0.5) & mask
    negative = ~(labels > 0.5) & mask
    values = scores.to(torch.float64)
    # Negatives sorted ascending, everything else at -inf (never above a finite score).
    ranked = torch.where(negative, values, -torch.inf).sort(dim=1).values
    not_above = torch.searchsorted(ranked, values, right=True)
    below = torch.searchsorted(ranked, values, right=False)
    per_entry = expected_rank_metrics(ranked.shape[1] - not_above, not_above - below, k)
    count = positive.sum(1).to(torch.float64)
    return {
        name: torch.where(positive, value, 0.0).sum(1) / count  # 0/0 = NaN: no positive
        for name, value in per_entry.items()
    }


def full_ranking_metrics(
    scorer: Callable[[Tensor], Tensor],
    target: Tensor,
    history: Tensor,
    history_mask: Tensor,
    n_items: int,
    k: int = K,
    chunk_size: int = 1024,
    candidates: Tensor | None = None,
) -> dict[str, Tensor]:
    """Each task's ``target`` item row ranked against every item row ``0..n_items-1`` (or the
    ``candidates`` rows) but its own history, as RecBole's full sort: ``{"full_hr@k",
    "full_ndcg@k", "full_mrr"}``, each ``(T,)`` float64.

    ``scorer(items)`` scores a ``(T, C)`` long tensor of item rows for the T tasks, returning
    ``(T, C)``; it is called on ``chunk_size`` items at a time, so the model never sees more.
    ``history`` ``(T, S)`` with its bool ``history_mask`` lists the items each task excludes
    (its support positives); the target itself always competes, even when it was seen before.
    """
    n_tasks, device = len(target), target.device
    excluded = torch.zeros(n_tasks, n_items, dtype=torch.bool, device=device)
    task_of = torch.arange(n_tasks, device=device)[:, None].expand_as(history)
    excluded[task_of[history_mask], history[history_mask]] = True
    if candidates is not None:
        allowed = torch.zeros(n_items, dtype=torch.bool, device=device)
        allowed[candidates] = True
        excluded |= ~allowed
    excluded[torch.arange(n_tasks, device=device), target] = True  # not its own competitor
    chunks = []
    for start in range(0, n_items, chunk_size):
        items = torch.arange(start, min(start + chunk_size, n_items), device=device)
        chunks.append(scorer(items.expand(n_tasks, -1)).detach())
    scores = torch.cat(chunks, dim=1)  # (T, n_items): the target's score from the same pass
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores contain NaN or infinite values")
    own = scores.gather(1, target[:, None])
    greater = ((scores > own) & ~excluded).sum(1)
    equal = ((scores == own) & ~excluded).sum(1)
    metrics = expected_rank_metrics(greater, equal, k)
    return {f"full_{name}": value for name, value in metrics.items()}


def positive_items(batch: dict[str, Tensor]) -> Tensor:
    """The one positive query item row of each task of a next-item batch, ``(T,)``."""
    positive = (batch["query_rating"] > 0.5) & batch["query_mask"]
    counts = positive.sum(1)
    if not bool((counts == 1).all()):
        raise ValueError(f"full ranking needs one positive per task; got {counts.tolist()}")
    return batch["query_item"][positive]


def learner_full_ranking(
    learner: Any,
    batch: dict[str, Tensor],
    n_items: int,
    k: int = K,
    chunk_size: int = 1024,
    candidates: Tensor | None = None,
) -> dict[str, Tensor]:
    """:func:`full_ranking_metrics` of a learner (``adapt(support) -> state``,
    ``predict(state, query) -> scores``) on a batch of next-item tasks: it adapts on each
    support set once, scores every item from that state, and excludes the support positives.
    """
    support = {"user": batch["user"], "item": batch["support_item"],
               "rating": batch["support_rating"], "mask": batch["support_mask"]}  # fmt: skip
    with torch.enable_grad():  # gradient learners adapt with gradients, even in evaluation
        state = learner.adapt(support)

    def scorer(items: Tensor) -> Tensor:
        query = {"user": batch["user"], "item": items, "mask": torch.ones_like(items, dtype=bool)}
        return learner.predict(state, query)

    history_mask = batch["support_mask"] & (batch["support_rating"] > 0.5)
    return full_ranking_metrics(scorer, positive_items(batch), batch["support_item"],
                                history_mask, n_items, k, chunk_size, candidates)  # fmt: skip
