"""Few-shot tasks, MeLU's protocol: each user of a state is a task.

Users with ``min_ratings``..``max_ratings`` ratings in a state are kept; ``query_size`` of their
ratings, drawn with a seeded generator, form the query set and the rest the support set. Tasks
of a set are padded to one width and masked, so a meta-batch is one tensor batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from metarec.data.schema import RecDataset, UserRatings
from metarec.errors import DataError

SUPPORT_KEYS = ("support_item", "support_rating", "support_mask")
QUERY_KEYS = ("query_item", "query_rating", "query_mask")


@dataclass
class TaskSet(Dataset):
    """Padded tasks; item and user fields are row indices into the dataset's feature tables."""

    user_ids: list[str]
    user: torch.Tensor  # (T,) long
    support_item: torch.Tensor  # (T, S) long, 0-padded
    support_rating: torch.Tensor  # (T, S) float
    support_mask: torch.Tensor  # (T, S) bool
    query_item: torch.Tensor  # (T, Q) long
    query_rating: torch.Tensor  # (T, Q) float
    query_mask: torch.Tensor  # (T, Q) bool

    def __len__(self) -> int:
        return len(self.user_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: getattr(self, key)[index] for key in ("user", *SUPPORT_KEYS, *QUERY_KEYS)}

    def subset(self, indices) -> TaskSet:
        """The tasks at ``indices``, in that order."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        tensors = {key: getattr(self, key)[index] for key in ("user", *SUPPORT_KEYS, *QUERY_KEYS)}
        return TaskSet(user_ids=[self.user_ids[i] for i in index.tolist()], **tensors)


def _pad(rows: list[np.ndarray], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    values = torch.zeros(len(rows), width, dtype=dtype)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, row in enumerate(rows):
        values[i, : len(row)] = torch.as_tensor(row, dtype=dtype)
        mask[i, : len(row)] = True
    return values, mask


def padded_tasks(
    user_ids: list[str],
    user: torch.Tensor,
    support_items: list,
    support_ratings: list,
    query_items: list,
    query_ratings: list,
) -> TaskSet:
    """A TaskSet of per-task item rows and ratings (one array each per task), padded to the
    longest support and query sets and masked."""
    support_item, support_mask = _pad(support_items, torch.long)
    query_item, query_mask = _pad(query_items, torch.long)
    return TaskSet(
        user_ids=user_ids,
        user=user,
        support_item=support_item,
        support_rating=_pad(support_ratings, torch.float32)[0],
        support_mask=support_mask,
        query_item=query_item,
        query_rating=_pad(query_ratings, torch.float32)[0],
        query_mask=query_mask,
    )


def build_tasks(
    dataset: RecDataset,
    state: str,
    *,
    seed: int | list[int],
    min_ratings: int = 13,
    max_ratings: int | None = 100,
    query_size: int = 10,
    support_size: int | None = None,
) -> TaskSet:
    """One task per user of ``state`` with ``min_ratings``..``max_ratings`` ratings (inclusive).

    ``query_size`` ratings drawn at random are the query set (or those a published split marks
    as query, ``user.query``); the support set is the rest, or only ``support_size`` of the
    rest when given (item tasks: K users who rated the item).
    ``max_ratings=None`` keeps users however many ratings they have.
    """
    if min_ratings <= query_size:
        raise DataError(
            f"min_ratings ({min_ratings}) must exceed query_size ({query_size}) "
            "so that every support set is non-empty"
        )
    rng = np.random.default_rng(seed)
    upper = max_ratings if max_ratings is not None else float("inf")
    kept: list[UserRatings] = [
        user for user in dataset.states[state] if min_ratings <= len(user.items) <= upper
    ]
    if not kept:
        counts = sorted(len(user.items) for user in dataset.states[state])
        seen = f"they have {counts[0]}..{counts[-1]}" if counts else "the state is empty"
        raise DataError(
            f"{dataset.name}/{state}: no task has {min_ratings}..{upper} ratings ({seen}); "
            "lower data.min_ratings / data.query_size or bring more ratings"
        )
    end = None if support_size is None else query_size + support_size
    item_row = dataset.items.row_of
    support_items, support_ratings, query_items, query_ratings = [], [], [], []
    for user in kept:
        items = np.array([item_row[item] for item in user.items], dtype=np.int64)
        if user.query is None:
            order = rng.permutation(len(items))
            query, support = order[:query_size], order[query_size:end]
        else:  # a published split fixes the query ratings
            query, support = np.flatnonzero(user.query), np.flatnonzero(~user.query)
            support = support[: None if support_size is None else support_size]
        support_items.append(items[support])
        support_ratings.append(user.ratings[support])
        query_items.append(items[query])
        query_ratings.append(user.ratings[query])
    users = torch.tensor([dataset.users.row_of[user.user] for user in kept], dtype=torch.long)
    return padded_tasks([user.user for user in kept], users, support_items, support_ratings,
                        query_items, query_ratings)  # fmt: skip


def split_users(n_tasks: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Seeded disjoint index sets of the given fractions, then the rest (in task order)."""
    order = np.random.default_rng(seed).permutation(n_tasks)
    parts, start = [], 0
    for fraction in fractions:
        size = int(round(fraction * n_tasks))
        parts.append(np.sort(order[start : start + size]))
        start += size
    parts.append(np.sort(order[start:]))
    return parts


def _rows(values: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
    return [row[keep].numpy() for row, keep in zip(values, mask, strict=True)]


def warmup_split(tasks: TaskSet, query_size: int, seed: int | list[int]) -> tuple[TaskSet, TaskSet]:
    """MetaHIN's warm-up protocol over warm tasks: (meta-training tasks, test tasks).

    Each task's query ratings are the user's held-out test ratings; its support ratings are
    the user's training ratings. The test task adapts on all training ratings and predicts the
    held-out ones. The meta-training task reads the training ratings only: a seeded
    ``min(query_size, n // 2)`` of them are its query, the rest its support, so that every
    tested user is meta-trained on, however few ratings they have.
    """
    fewest = int(tasks.support_mask.sum(1).min()) if len(tasks) else 0
    if fewest < 2:
        raise DataError(
            f"task.warm=warmup: a warm user has {fewest} rating(s) beside the {query_size} "
            "held out, too few to meta-train on; raise data.min_ratings"
        )
    rng = np.random.default_rng(seed)
    items = _rows(tasks.support_item, tasks.support_mask)
    ratings = _rows(tasks.support_rating, tasks.support_mask)
    fit = {key: [] for key in ("support_item", "support_rating", "query_item", "query_rating")}
    for task_items, task_ratings in zip(items, ratings, strict=True):
        order = rng.permutation(len(task_items))
        cut = min(query_size, len(order) // 2)
        query, support = order[:cut], order[cut:]
        fit["support_item"].append(task_items[support])
        fit["support_rating"].append(task_ratings[support])
        fit["query_item"].append(task_items[query])
        fit["query_rating"].append(task_ratings[query])
    train = padded_tasks(list(tasks.user_ids), tasks.user.clone(), fit["support_item"],
                         fit["support_rating"], fit["query_item"], fit["query_rating"])  # fmt: skip
    return train, tasks
