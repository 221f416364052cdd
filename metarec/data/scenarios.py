"""Dataset by name -> the evaluation scenarios' task sets (``ColdStartTasks``)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.schema import STATES, RecDataset
from metarec.data.synthetic import make_synthetic
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
ALL_SCENARIOS = ("warm", "warm_seen", "warm_warmup", "new_user", "new_item", "new_user_item")
# A test scenario with fewer tasks gets a warning: its mean and interval rest on too few.
FEW_TASKS = 20


def data_root(cfg: DataConfig) -> Path:
    """``data.root``, else ``$METAREC_DATA_DIR/<name>``, else the user cache folder."""
    if cfg.root:
        return Path(cfg.root).expanduser()
    if os.environ.get("METAREC_DATA_DIR"):
        return Path(os.environ["METAREC_DATA_DIR"]).expanduser() / cfg.name
    import pooch

    return Path(pooch.os_cache("metarec")) / cfg.name


def load_dataset(cfg: DataConfig) -> RecDataset:
    """The raw dataset named by ``cfg.name``."""
    if cfg.name == "synthetic":
        return make_synthetic(cfg.synthetic, seed=cfg.seed)
    if cfg.name == "melu-ml1m":
        from metarec.data.melu import load_melu

        return load_melu(data_root(cfg))
    if cfg.name == "csv":
        from metarec.data.generic import load_csv

        return load_csv(data_root(cfg), cfg.csv, seed=cfg.seed)
    if cfg.name == "amazon-unisrec":
        from metarec.data.amazon import load_amazon

        return load_amazon(data_root(cfg), cfg.amazon.domain)
    if cfg.name == "tallrec-ml100k":
        from metarec.data.tallrec import load_ml100k

        return load_ml100k(data_root(cfg))
    raise ValueError(f"data.name: unknown dataset '{cfg.name}'")


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
        # How the tasks are scored (metarec.metrics.evaluate.Scoring's kinds): next-item tasks
        # rank, TALLRec's one-query samples pool their predictions, the rest are MeLU's.
        self.scoring_kind = "rating"
        if dataset.meta.get("implicit"):  # next-item tasks: metarec/data/implicit.py
            from metarec.data.implicit import implicit_tasks

            self.dataset, self.scoring_kind = dataset, "ranking"
            self.train, self.val, self.test = implicit_tasks(dataset, cfg, task)
            return
        if task.target == "like":
            dataset = _as_likes(dataset, task.like_threshold)
        if cfg.name == "tallrec-ml100k":  # a task per sample: metarec/data/tallrec.py
            from metarec.data.tallrec import tallrec_tasks

            self.dataset, self.scoring_kind = dataset, "pooled"
            self.train, self.val, self.test = tallrec_tasks(dataset, cfg, task)
            return
        if task.unit == "item":
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
        for scenario in scenarios:
            if scenario != "warm" and task.cold:
                self.test[scenario] = task_sets[SCENARIOS[scenario]]
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
