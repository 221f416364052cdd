"""Top-k metrics of each task's query ranking, as TaNP reports them (Lin et al., "Task-adaptive
Neural Process for User Cold-Start Recommendation", WWW 2021; ``utils/scorer.py`` and
``eval.py`` of its repository): Precision, nDCG and MAP at k = 5, 7 and 10.

A task's query items are ranked by predicted score, highest first; an item's relevance is its
0/1 label. With ``n`` query items, ``P`` of them positive, ``h`` positives among the top ``k``
and ``m = min(n, k)``, per task (``(T,)`` float64 each):

* ``precision@k`` = ``h / k``, the textbook precision (``torchmetrics``'
  ``RetrievalPrecision(top_k=k)``).
* ``tanp_precision@k`` = ``(h + m - min(P, k)) / k``: **TaNP's code's precision, not the
  textbook one.** It takes the ``k`` best labels (``min(P, k)`` ones, then zeros) as the ideal
  list and counts a ranked item as a hit while its label is still left in that list, so when
  ``P < k`` up to ``m - min(P, k)`` negatives count as hits too. It equals ``precision@k`` when
  ``P >= k``, and is 1 whatever the ranking when ``n <= k``.
* ``ndcg@k``: gain ``2**r - 1`` (for 0/1 labels the label itself), discount
  ``1 / log2(position + 1)``, over the ideal DCG@k: TaNP's definition is the textbook one, and
  :func:`metarec.metrics.rating.task_metrics` computes it (0 when no item is positive, where
  TaNP's code divides 0 by 0).
* ``tanp_map@k``: **TaNP's code's average precision, not the textbook one.** Over the top
  ``k`` positions, hits counted as in ``tanp_precision@k``, each hit adds (hits so far) /
  (its 1-based position); the sum is divided by ``k``, not by the number of relevant items.

Every task weighs the same (TaNP averages over its test users). **Ties** in the predictions are
broken at random, in expectation, as :mod:`metarec.metrics.ranking` does: each metric is its
mean over every order of the tied items (exact, by a recursion over the positions), so a
constant predictor gets the chance level whatever the order of the query; TaNP's code keeps
the order its sort happens to return. A query shorter than ``k`` leaves the missing positions
empty: they are misses, and the divisor stays ``k`` (TaNP's code needs ``n >= k``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor

from metarec.metrics.rating import check_padded_batch, task_metrics

__all__ = ["CUTOFFS", "TOPK_METRICS", "topk_metrics", "topk_names"]

# TaNP's cut-offs (eval.py: add_metric(..., 5), (..., 7), (..., 10)).
CUTOFFS = (5, 7, 10)
FAMILIES = ("precision", "tanp_precision", "ndcg", "tanp_map")


def topk_names(cutoffs: Sequence[int] = CUTOFFS) -> tuple[str, ...]:
    """The names :func:`topk_metrics` returns, family by family (``precision@5``, ...)."""
    return tuple(f"{family}@{k}" for family in FAMILIES for k in cutoffs)


def _tie_groups(ranked_scores: Tensor, ranked_labels: Tensor) -> tuple[Tensor, ...]:
    """For each ranked position: its tie group's size, positives, first position, and the
    positives of the groups ranked above it."""
    n_tasks, width = ranked_scores.shape
    new_group = torch.ones(n_tasks, width, dtype=torch.bool)
    new_group[:, 1:] = ranked_scores[:, 1:] != ranked_scores[:, :-1]
    group = new_group.long().cumsum(1) - 1
    size = torch.zeros(n_tasks, width, dtype=torch.float64).scatter_add(
        1, group, torch.ones_like(ranked_labels)
    )
    ones = torch.zeros_like(size).scatter_add(1, group, ranked_labels)
    before = ones.cumsum(1) - ones
    position = torch.arange(width).expand(n_tasks, width)
    start = torch.where(new_group, position, 0).cummax(1).values
    return size.gather(1, group), ones.gather(1, group), start, before.gather(1, group)


def topk_metrics(
    scores: Tensor, labels: Tensor, mask: Tensor, cutoffs: Sequence[int] = CUTOFFS
) -> dict[str, Tensor]:
    """Per-task top-k metrics of padded query sets (see the module docstring).

    Args:
        scores: ``(T, Q)`` predicted scores (like probabilities); padding is ignored.
        labels: ``(T, Q)`` 0/1 labels; padding is ignored.
        mask: ``(T, Q)`` bool, True for a real query item; every task needs one.
        cutoffs: the ``k`` values, positive ints.

    Returns:
        :func:`topk_names` -> ``(T,)`` float64 on the CPU.

    Raises:
        ValueError: a malformed batch, a label other than 0 or 1, or a bad cut-off.
    """
    check_padded_batch(scores, labels, mask, names=("scores", "labels"))
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in cutoffs):
        raise ValueError(f"cutoffs must be positive ints, got {list(cutoffs)}")
    scores = scores.detach().to("cpu", torch.float64)
    labels = labels.detach().to("cpu", torch.float64)
    mask = mask.detach().to("cpu")
    if not bool(((labels == 0) | (labels == 1))[mask].all()):
        raise ValueError("top-k metrics need 0/1 labels at the real query entries")
    labels = torch.where(mask, labels, 0.0)
    # Highest score first, padding last (real scores are finite).
    padded = torch.where(mask, scores, -torch.inf)
    order = padded.sort(dim=1, descending=True, stable=True).indices
    ranked_scores = padded.gather(1, order)
    size, ones, start, before = _tie_groups(ranked_scores, labels.gather(1, order))
    n_real = mask.sum(1).to(torch.float64)
    positives = labels.sum(1)
    top = max(cutoffs)
    # Spare non-positives in the ideal top k: the negatives TaNP's code counts as hits.
    spare = {k: n_real.clamp(max=k) - positives.clamp(max=k) for k in cutoffs}
    # prob[t, s]: the probability that s positives fill the positions ranked above this one.
    states = torch.arange(top + 1, dtype=torch.float64)
    prob = torch.zeros(len(scores), top + 1, dtype=torch.float64)
    prob[:, 0] = 1.0
    hit_rate = torch.zeros(len(scores), top, dtype=torch.float64)
    tanp_ap = {k: torch.zeros(len(scores), dtype=torch.float64) for k in cutoffs}
    for j in range(min(top, scores.shape[1])):
        real = (j < n_real)[:, None]
        # Positives left in this tie group over the items left in it (drawn without
        # replacement in a random order); states that cannot occur carry probability 0.
        drawn = states - before[:, j : j + 1]
        left = size[:, j : j + 1] - (j - start[:, j : j + 1])
        p_positive = ((ones[:, j : j + 1] - drawn) / left).clamp(0.0, 1.0) * real
        positive = prob * p_positive
        negative = (prob - positive) * real
        hit_rate[:, j] = positive.sum(1)
        negatives_above = j - states
        for k in cutoffs:
            if j < k:
                counted = states + 1 + negatives_above.clamp(max=spare[k][:, None])
                tanp_ap[k] += (positive * counted / (j + 1)).sum(1)
                # A counted negative follows only counted items: its precision term is 1.
                tanp_ap[k] += (negative * (negatives_above < spare[k][:, None])).sum(1)
        prob = prob - positive
        prob[:, 1:] += positive[:, :-1]
    ndcg = task_metrics(scores, labels, mask, ks=tuple(cutoffs))
    out: dict[str, Tensor] = {}
    for k in cutoffs:
        hits = hit_rate[:, :k].sum(1)
        out[f"precision@{k}"] = hits / k
        out[f"tanp_precision@{k}"] = (hits + spare[k]) / k
        out[f"ndcg@{k}"] = ndcg[f"ndcg@{k}"]
        out[f"tanp_map@{k}"] = tanp_ap[k] / k
    return {name: out[name] for name in topk_names(cutoffs)}


def _one_metric(pred: Tensor, target: Tensor, mask: Tensor, *, family: str, k: int) -> Tensor:
    """One family's metric at one cut-off; nDCG straight from ``task_metrics`` (any gains)."""
    if family == "ndcg":
        return task_metrics(pred, target, mask, ks=(k,))[f"ndcg@{k}"]
    return topk_metrics(pred, target, mask, (k,))[f"{family}@{k}"]


# Each name -> f(pred, target, mask) -> (T,): what a dataset lists in its ``extra_metrics``
# (metarec.metrics.evaluate.EXTRA_METRICS).
TOPK_METRICS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    f"{family}@{k}": partial(_one_metric, family=family, k=k)
    for family in FAMILIES
    for k in CUTOFFS
}
