"""A loaded dataset -> the evaluation scenarios' task sets (``ColdStartTasks``)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.schema import STATES, WARM_UP_STATE, RecDataset
from metarec.data.tasks import TaskSet, build_tasks, split_users, warmup_split
from metarec.errors import DataError

# Evaluation scenario -> the MeLU state it is drawn from.
SCENARIOS = {
    "warm": "warm_state",
    "new_user": "user_cold_state",
    "new_item": "item_cold_state",
    "new_user_item": "user_and_item_cold_state",
}
# Item tasks are evaluated where the items are new (and on held-out warm items).
ITEM_SCENARIOS = ("warm", "new_item", "new_user_item")
# Warm protocol (``task.warm``) -> its scenario: held-out users, MeLU's in-sample training
# users, MetaHIN's seen users with unseen ratings.
WARM_SCENARIOS = {"heldout": "warm", "seen": "warm_seen", "warmup": "warm_warmup"}
# Every scenario a run can report, in table order.
ALL_SCENARIOS = (
    "warm", "warm_seen", "warm_warmup", "warm_up", "new_user", "new_item", "new_user_item"
)  # fmt: skip
# A test scenario with fewer tasks gets a warning: its mean and interval rest on too few.
FEW_TASKS = 20


def planned_scenarios(source, task: TaskConfig) -> tuple[str, ...]:
    """The test scenarios a run of ``task`` on the dataset ``source`` (a DataSource class)
    can score, before any data is read: its warm protocols and, with ``task.cold``, the cold
    scenarios of its task unit (a published warm-up, ``warm_up``, where the data have one)."""
    warm = tuple(WARM_SCENARIOS[protocol] for protocol in task.warm)
    if source is not None and source.scenarios is not None:
        cold = tuple(name for name in source.scenarios if name not in WARM_SCENARIOS.values())
        return tuple(name for name in source.scenarios if name in warm) + (
            cold if task.cold else ()
        )
    cold = (ITEM_SCENARIOS if task.unit == "item" else tuple(SCENARIOS))[1:] if task.cold else ()
    return (*warm, *(("warm_up",) if task.unit == "user" else ()), *cold)


class ColdStartTasks:
    """Every task set of a run, built once from the data and task configs alone.

    Warm-state tasks are split (seeded) into meta-training, validation and a held-out warm
    test set; the cold states are test scenarios whole. The same configs give the same tasks
    whatever the learner, so every method is evaluated on identical tasks.

    ``task.unit: item`` builds the tasks on ``dataset.swapped()``: a task is an item, its
    support set ``task.support_size`` users who rated it, its query set ``query_size`` others;
    only the scenarios where items are new are tested. ``task.target: like`` turns every rating
    into 1 (rating >= ``like_threshold``) or 0. ``self.dataset`` is the view tasks index into.
    """

    def __init__(self, dataset: RecDataset, cfg: DataConfig, task: TaskConfig | None = None):
        task = task or TaskConfig()
        self.unit, self.target = task.unit, task.target
        source = dataset.source
        # How the tasks are scored (metarec.metrics.evaluate.Scoring's kinds): the dataset says.
        self.scoring_kind = source.scoring if source is not None else "rating"
        self.extra_metrics = source.extra_metrics if source is not None else ()
        self.primary = source.table[0] if source is not None and source.table else ""
        if task.target == "like" and not dataset.binary:  # implicit data are likes already
            dataset = _as_likes(dataset, task.like_threshold)
        own = source.tasks(dataset, cfg, task) if source is not None else None
        if own is not None:  # the dataset's own protocol (next items, TALLRec's samples)
            self.dataset = dataset
            self.train, self.val, self.test = own
            return
        if cfg.seed and dataset.meta.get("split"):
            logging.getLogger(__name__).warning(
                f"{dataset.name}: the states are fixed by {dataset.meta['split']}; data.seed="
                f"{cfg.seed} draws only the query ratings and the validation and held-out warm "
                "users"
            )
        if task.unit == "item":
            _warn_if_users_alike(dataset)
            dataset = dataset.swapped()
            sizes = dict(min_ratings=task.support_size + cfg.query_size, max_ratings=None,
                         support_size=task.support_size)  # fmt: skip
            scenarios = ITEM_SCENARIOS
        else:
            sizes = dict(min_ratings=cfg.min_ratings, max_ratings=cfg.max_ratings)
            scenarios = tuple(SCENARIOS)
        self.dataset = dataset
        task_sets = {
            state: build_tasks(
                dataset, state, seed=[cfg.seed, index], query_size=cfg.query_size, **sizes
            )  # fmt: skip
            for index, state in enumerate(STATES)
            if state in {SCENARIOS[name] for name in scenarios}
        }
        warm = task_sets["warm_state"]
        self.test: dict[str, TaskSet] = {}
        if "warmup" in task.warm:  # every warm user but the validation ones is meta-trained
            val, train = split_users(len(warm), (cfg.val_fraction,), cfg.seed)
            self.val = warm.subset(val)
            self.train, self.test["warm_warmup"] = warmup_split(
                warm.subset(train), cfg.query_size, seed=[cfg.seed, len(STATES)]
            )
        else:
            fractions = (cfg.val_fraction, cfg.test_fraction)
            val, test, train = split_users(len(warm), fractions, cfg.seed)
            self.train, self.val = warm.subset(train), warm.subset(val)
            if "heldout" in task.warm:
                self.test["warm"] = warm.subset(test)
            if "seen" in task.warm:  # in-sample: the very tasks meta-training read
                self.test["warm_seen"] = self.train
        parts = {"meta-training": self.train, "validation": self.val, **self.test}
        empty = [name for name, tasks in parts.items() if not len(tasks)]
        if empty:
            raise DataError(
                f"{dataset.name}: the warm state gives {len(warm)} tasks, too few for every "
                f"part: {', '.join(empty)} would have none (data.val_fraction="
                f"{cfg.val_fraction}, data.test_fraction={cfg.test_fraction}); the data need "
                "more warm users (fewer new ones) with data.min_ratings..max_ratings ratings"
            )
        for scenario in scenarios:
            if scenario != "warm" and task.cold:
                self.test[scenario] = task_sets[SCENARIOS[scenario]]
        if dataset.states.get(WARM_UP_STATE) and task.unit == "user":  # a published warm-up
            self.test["warm_up"] = build_tasks(
                dataset, WARM_UP_STATE, seed=[cfg.seed, len(STATES) + 1], query_size=cfg.query_size,
                min_ratings=cfg.min_ratings, max_ratings=cfg.max_ratings,
            )  # fmt: skip
        # logging, not warnings.warn: `metarec reproduce` silences Python warnings.
        for scenario, tasks in self.test.items():
            if len(tasks) < FEW_TASKS:
                logging.getLogger(__name__).warning(
                    f"{dataset.name} test/{scenario} has only {len(tasks)} tasks (fewer than "
                    f"{FEW_TASKS}): its metrics are too noisy to compare methods"
                )

    # A scale with at most this many distinct ratings is discrete (MovieLens: 1..5 stars).
    MAX_LEVELS = 11

    def rating_levels(self) -> torch.Tensor | None:
        """The distinct meta-training ratings when they form a discrete scale (at most
        ``MAX_LEVELS`` values), else None; None for likes, whose metrics are AUC and F1."""
        if self.target == "like":
            return None
        levels = torch.unique(self.train_ratings()[1])
        return levels if len(levels) <= self.MAX_LEVELS else None

    def train_ratings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(item rows, ratings) of every meta-training rating, support and query."""
        items = torch.cat([self.train.support_item[self.train.support_mask],
                           self.train.query_item[self.train.query_mask]])  # fmt: skip
        ratings = torch.cat([self.train.support_rating[self.train.support_mask],
                             self.train.query_rating[self.train.query_mask]])  # fmt: skip
        return items, ratings


def _warn_if_users_alike(dataset: RecDataset) -> None:
    """Item tasks rank an item's query users: a network that reads users' features cannot
    tell apart users that share them all (a constant user table), and ranks them by chance."""
    users = dataset.users
    if users.text is not None or users.text_model is not None:
        return
    if all((values == values[:1]).all() for values in users.values.values()):
        logging.getLogger(__name__).warning(
            f"{dataset.name}: task.unit=item, but every user has the same features (no user "
            "table, e.g. data.csv.users unset): a network that reads them cannot tell an "
            "item's query users apart, so its ranking is chance (AUC 0.5); add a user table "
            "with feature columns"
        )


def _as_likes(dataset: RecDataset, threshold: float) -> RecDataset:
    """The dataset with every rating replaced by 1.0 (a like, >= ``threshold``) or 0.0."""
    low, high = dataset.rating_scale
    if not low < threshold <= high:
        raise DataError(
            f"task.like_threshold={threshold} is outside {dataset.name}'s rating scale "
            f"({low:g}..{high:g}], so every rating would be a like or none would"
        )
    states = {
        state: [
            replace(user, ratings=(user.ratings >= threshold).astype(np.float32)) for user in users
        ]  # fmt: skip
        for state, users in dataset.states.items()
    }
    return replace(dataset, states=states, rating_scale=(0.0, 1.0), binary=True)
