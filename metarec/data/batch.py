"""Batches of tasks as learners see them: the padded tensors a task loader yields, and views
of them (support half, query half without ratings, both as one set, a subset of tasks) plus
the grouping of tasks by support length that bounds padding when adapting a whole batch."""

from __future__ import annotations

import math

import torch

# One batch of tasks: the task loader's padded tensors (user, support_/query_ item, rating,
# mask), or a view of them with keys user, item, rating, mask.
Batch = dict[str, torch.Tensor]


def support_of(batch: Batch) -> Batch:
    """The support half of a task batch: user, item, rating, mask."""
    return {
        "user": batch["user"],
        "item": batch["support_item"],
        "rating": batch["support_rating"],
        "mask": batch["support_mask"],
    }


def query_of(batch: Batch) -> Batch:
    """The query half of a task batch, without its ratings."""
    return {"user": batch["user"], "item": batch["query_item"], "mask": batch["query_mask"]}


def whole_task(batch: Batch) -> Batch:
    """Support and query ratings of training tasks as one (masked) set, for learners that fit
    the whole task: Reptile's inner loop and the pooled baselines. Never used on test tasks."""
    return {
        "user": batch["user"],
        "item": torch.cat([batch["support_item"], batch["query_item"]], dim=1),
        "rating": torch.cat([batch["support_rating"], batch["query_rating"]], dim=1),
        "mask": torch.cat([batch["support_mask"], batch["query_mask"]], dim=1),
    }


def take_tasks(batch: Batch, index: torch.Tensor) -> Batch:
    """Tasks ``index`` of a batch, support sets cut to the longest among them."""
    width = max(int(batch["support_mask"][index].sum(1).max()), 1)
    return {
        key: value[index, :width] if key.startswith("support_") else value[index]
        for key, value in batch.items()
    }


def length_groups(lengths: torch.Tensor, overhead: float) -> list[torch.Tensor]:
    """Tasks grouped by support length so that padding each group to its own longest set
    costs least: sorted lengths cut into runs minimising the padded ratings of all groups
    plus ``overhead`` ratings' worth per group (the fixed cost of one more vmapped pass).
    Cuts fall between distinct lengths, so this is quadratic in those, not in tasks."""
    values, counts = torch.unique(lengths, return_counts=True)  # sorted
    values, ends = values.tolist(), counts.cumsum(0).tolist()
    starts = [0, *ends[:-1]]
    best, cut = [0.0] + [math.inf] * len(values), [0] * (len(values) + 1)
    for j in range(1, len(values) + 1):  # best[j]: cost of the tasks of the j shortest lengths
        for i in range(j):  # lengths i..j-1 form the last group, padded to values[j - 1]
            cost = best[i] + (ends[j - 1] - starts[i]) * values[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    order = torch.argsort(lengths, stable=True)
    groups, j = [], len(values)
    while j > 0:
        groups.append(order[starts[cut[j]] : ends[j - 1]])
        j = cut[j]
    return groups[::-1]
