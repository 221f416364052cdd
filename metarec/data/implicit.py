"""Next-item tasks on implicit sequences (a dataset whose ``scoring`` is ranking: amazon-unisrec).

**A task** is a user at one point ``t`` of their chronological sequence ``s``:

* support set: the items before ``t`` (at most the ``data.amazon.max_history`` most recent),
  label 1, in order, then as many sampled negatives, label 0 (so that gradient learners
  have two classes to fit);
* query set: the next item ``s[t]``, label 1, and ``data.amazon.negatives`` sampled negatives
  (``train_negatives`` in meta-training tasks), label 0, the positive at a seeded random
  position among them (no learner or metric can gain from where it sits).

A negative is never an item of the user's sequence (past, target or future), and is distinct
from the task's other negatives, support and query alike. Every draw is seeded by
``data.seed``, so the same configs give the same tasks whatever the learner. Labels are the
task's "ratings" with ``task.target: like`` semantics (probabilities, cross-entropy).

**Splits**, all seeded by ``data.seed``:

* new items: a ``data.amazon.new_item_fraction`` share of all items. They are in no
  meta-training or validation task: not in a support set, a query, or as a negative. Every
  other task reads the user's *warm sequence* (``s`` without its new items);
* users: ``data.val_fraction`` validation users, ``data.test_fraction`` warm-test users, and
  the rest meta-training users (:func:`~metarec.data.tasks.split_users`, as explicit tasks).

**Task sets**, leave-one-out: a user's last warm item is their test target, never trained on.

* ``train``: every meta-training user at every ``t`` from 1 to ``len(warm) - 2`` (the last
  warm item excluded), negatives from the warm items;
* ``val``: each validation user at their last warm item (warm negatives);
* test ``warm`` (``task.warm: heldout``): each warm-test user at their last warm item;
* test ``warm_warmup`` (``task.warm: warmup``): each meta-training user at their last warm
  item, the one their training tasks never read (RecBole's leave-one-out test of seen users);
* test ``new_item`` (``task.cold``): every user whose sequence has a new item with a warm item
  before it, at the last such new item; the support set is the warm items before it, and the
  query negatives are other new items, so that all 100 candidates are equally cold.

A user needs one warm item before the target: shorter warm sequences give no task.
``data.amazon.max_eval_tasks`` (when not 0) keeps a seeded sample of that many tasks of each
set but ``train``, the same whatever the learner (CPU budgets of text-encoder runs).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.schema import RecDataset
from metarec.data.tasks import TaskSet, padded_tasks, split_users
from metarec.errors import ConfigError, DataError

# Seed stream of each draw (``[data.seed, stream]``): adding a scenario changes no other.
STREAMS = {"new_items": 0, "train": 1, "val": 2, "warm": 3, "warm_warmup": 4, "new_item": 5}
# Third seed word of the draw that samples a task set down to data.amazon.max_eval_tasks.
SAMPLE_STREAM = 1


class ImplicitSettings(Protocol):
    """What next-item tasks read of a dataset's own settings (``data.amazon``)."""

    new_item_fraction: float
    negatives: int
    train_negatives: int
    max_history: int
    max_eval_tasks: int


# One task before its negatives: (user index, support item rows, target row).
Spec = tuple[int, np.ndarray, int]
# Items negatives are drawn from: (their rows, sorted; a bool mask over all item rows).
Pool = tuple[np.ndarray, np.ndarray]


def _check(dataset: RecDataset, cfg: ImplicitSettings, task: TaskConfig) -> None:
    if task.target != "like":
        raise ConfigError(
            f"key 'task.target': {dataset.name} is implicit (interactions, no ratings); "
            "use task.target=like"
        )
    if task.unit != "user":
        raise ConfigError(f"key 'task.unit': {dataset.name}'s next-item tasks are users' tasks")
    if "seen" in task.warm:
        raise ConfigError(
            "key 'task.warm': next-item tasks score heldout and warmup; 'seen' (in-sample "
            "training tasks) is not defined for them"
        )
    if not 0.0 <= cfg.new_item_fraction < 1.0:
        raise ConfigError(
            f"key 'data.amazon.new_item_fraction': {cfg.new_item_fraction} not in [0, 1)"
        )
    for key in ("negatives", "train_negatives", "max_history"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"key 'data.amazon.{key}': {getattr(cfg, key)} must be >= 1")


def _negatives(
    rng: np.random.Generator, pool: Pool, taken: set[int], count: int, where: str
) -> list[int]:
    """``count`` distinct item rows of ``pool`` not in ``taken``, which they join; a
    DataError naming ``where`` when the pool has fewer free rows."""
    rows, in_pool = pool
    free = len(rows) - int(in_pool[list(taken)].sum())
    if free < count:
        raise DataError(
            f"{where}: needs {count} negatives but only {free} candidate items are not in the "
            "user's sequence; lower data.amazon.negatives / train_negatives, or change "
            "data.amazon.new_item_fraction"
        )
    chosen: list[int] = []
    if free < 4 * count:  # few free rows: draw among them directly
        candidates = [item for item in rows.tolist() if item not in taken]
        chosen = [candidates[i] for i in rng.choice(len(candidates), count, replace=False)]
    while len(chosen) < count:  # many: rejection is cheaper than listing them
        for item in rows[rng.integers(len(rows), size=2 * (count - len(chosen)))].tolist():
            if item not in taken and len(chosen) < count:
                taken.add(item)
                chosen.append(item)
    taken.update(chosen)
    return chosen


def _task_set(
    specs: list[Spec],
    sequences: list[np.ndarray],
    user_ids: list[str],
    user_rows: list[int],
    pools: tuple[Pool, Pool],
    negatives: int,
    rng: np.random.Generator,
    name: str,
) -> TaskSet:
    """The tasks of ``specs``: query negatives from ``pools[1]``, support ones from
    ``pools[0]``, none in the user's sequence."""
    if not specs:
        raise DataError(f"implicit tasks: no '{name}' task (no user has a warm item before one)")
    support_pool, query_pool = pools
    fields = {key: [] for key in ("support_item", "support_rating", "query_item", "query_rating")}
    for user, support, target in specs:
        taken = set(sequences[user].tolist())
        where = f"{name} task of user {user_ids[user]}"
        query = _negatives(rng, query_pool, taken, negatives, where)
        query.insert(int(rng.integers(negatives + 1)), target)
        support_negatives = _negatives(rng, support_pool, taken, len(support), where)
        fields["support_item"].append(np.concatenate([support, support_negatives]))
        fields["support_rating"].append(np.repeat([1.0, 0.0], len(support)))
        fields["query_item"].append(np.asarray(query))
        fields["query_rating"].append((np.asarray(query) == target).astype(np.float64))
    users = torch.tensor([user_rows[user] for user, _, _ in specs], dtype=torch.long)
    return padded_tasks([user_ids[user] for user, _, _ in specs], users, fields["support_item"],
                        fields["support_rating"], fields["query_item"],
                        fields["query_rating"])  # fmt: skip


def new_item_rows(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """Rows of the new items: a seeded ``fraction`` of ``n_items`` (sorted)."""
    order = np.random.default_rng([seed, STREAMS["new_items"]]).permutation(n_items)
    return np.sort(order[: int(round(fraction * n_items))])


def _new_item_specs(sequences: list[np.ndarray], is_new: np.ndarray, history: int) -> list[Spec]:
    """Each user at their last new item with a warm item before it; the support set: the
    (at most ``history`` last) warm items before it."""
    specs = []
    for user, sequence in enumerate(sequences):
        warm_at = np.flatnonzero(~is_new[sequence])
        new_at = np.flatnonzero(is_new[sequence])
        new_at = new_at[new_at > warm_at[0]] if len(warm_at) else new_at[:0]
        if len(new_at):
            before = sequence[: new_at[-1]]
            specs.append((user, before[~is_new[before]][-history:], int(sequence[new_at[-1]])))
    return specs


def implicit_tasks(
    dataset: RecDataset, cfg: DataConfig, task: TaskConfig, settings: ImplicitSettings
) -> tuple[TaskSet, TaskSet, dict[str, TaskSet]]:
    """(meta-training, validation, {test scenario: tasks}) of an implicit dataset, whose
    ``states["warm_state"]`` lists each user's items in chronological order; ``settings``:
    the dataset's own section (``data.amazon``)."""
    history = settings.max_history
    _check(dataset, settings, task)
    users = dataset.states["warm_state"]
    item_row, user_row = dataset.items.row_of, dataset.users.row_of
    sequences = [
        np.array([item_row[item] for item in user.items], dtype=np.int64) for user in users
    ]
    is_new = np.zeros(len(dataset.items), dtype=bool)
    is_new[new_item_rows(len(dataset.items), settings.new_item_fraction, cfg.seed)] = True
    warm = [sequence[~is_new[sequence]] for sequence in sequences]
    pools = {"warm": (np.flatnonzero(~is_new), ~is_new), "new": (np.flatnonzero(is_new), is_new)}
    val_users, test_users, train_users = split_users(
        len(users), (cfg.val_fraction, cfg.test_fraction), cfg.seed
    )

    def last_warm(selected: np.ndarray) -> list[Spec]:
        return [(u, warm[u][-history - 1 : -1], int(warm[u][-1]))
                for u in selected.tolist() if len(warm[u]) >= 2]  # fmt: skip

    specs: dict[str, list[Spec]] = {
        "train": [
            (u, warm[u][max(0, t - history) : t], int(warm[u][t]))
            for u in train_users.tolist()
            for t in range(1, len(warm[u]) - 1)
        ],
        "val": last_warm(val_users),
    }
    if "heldout" in task.warm:
        specs["warm"] = last_warm(test_users)
    if "warmup" in task.warm:
        specs["warm_warmup"] = last_warm(train_users)
    if task.cold and is_new.any():
        specs["new_item"] = _new_item_specs(sequences, is_new, history)
    if settings.max_eval_tasks:  # a seeded sample, drawn apart from the tasks' negatives
        for name in [name for name in specs if name != "train"]:
            if len(specs[name]) > settings.max_eval_tasks:
                rng = np.random.default_rng([cfg.seed, STREAMS[name], SAMPLE_STREAM])
                kept = np.sort(rng.choice(len(specs[name]), settings.max_eval_tasks, False))
                specs[name] = [specs[name][index] for index in kept.tolist()]
    user_ids = [user.user for user in users]
    user_rows = [user_row[user.user] for user in users]
    task_sets = {}
    for name, named_specs in specs.items():
        query_pool = pools["new" if name == "new_item" else "warm"]
        negatives = settings.train_negatives if name == "train" else settings.negatives
        rng = np.random.default_rng([cfg.seed, STREAMS[name]])
        task_sets[name] = _task_set(named_specs, sequences, user_ids, user_rows,
                                    (pools["warm"], query_pool), negatives, rng, name)  # fmt: skip
    train, val = task_sets.pop("train"), task_sets.pop("val")
    return train, val, task_sets
