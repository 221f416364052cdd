"""Dataset by name -> the four scenarios' tasks -> a LightningDataModule."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from metarec.config.schema import DataConfig
from metarec.data.schema import STATES, RecDataset
from metarec.data.synthetic import make_synthetic
from metarec.data.tasks import TaskSet, build_tasks, split_users

# Evaluation scenario -> the MeLU state it is drawn from.
SCENARIOS = {
    "warm": "warm_state",
    "new_user": "user_cold_state",
    "new_item": "item_cold_state",
    "new_user_item": "user_and_item_cold_state",
}


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
    raise ValueError(f"data.name: unknown dataset '{cfg.name}'")


class ColdStartTasks:
    """Every task set of a run, built once from the data config alone.

    Warm-state users are split (seeded) into meta-training, validation and a held-out warm
    test set; the cold states are test scenarios whole. The same ``DataConfig`` gives the same
    tasks whatever the learner, so every method is evaluated on identical tasks.
    """

    def __init__(self, dataset: RecDataset, cfg: DataConfig):
        self.dataset = dataset
        task_sets = {
            state: build_tasks(
                dataset,
                state,
                seed=[cfg.seed, index],
                min_ratings=cfg.min_ratings,
                max_ratings=cfg.max_ratings,
                query_size=cfg.query_size,
            )
            for index, state in enumerate(STATES)
        }
        warm = task_sets["warm_state"]
        val, test, train = split_users(len(warm), (cfg.val_fraction, cfg.test_fraction), cfg.seed)
        self.train, self.val = warm.subset(train), warm.subset(val)
        self.test = {"warm": warm.subset(test)}
        for scenario, state in SCENARIOS.items():
            if scenario != "warm":
                self.test[scenario] = task_sets[state]

    def train_ratings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(item rows, ratings) of every meta-training rating, support and query."""
        items = torch.cat([self.train.support_item[self.train.support_mask],
                           self.train.query_item[self.train.query_mask]])  # fmt: skip
        ratings = torch.cat([self.train.support_rating[self.train.support_mask],
                             self.train.query_rating[self.train.query_mask]])  # fmt: skip
        return items, ratings


class ColdStartDataModule(L.LightningDataModule):
    """Meta-batches of training tasks; validation tasks; one test loader per scenario."""

    def __init__(
        self, tasks: ColdStartTasks, meta_batch_size: int, eval_batch_size: int, seed: int
    ):
        super().__init__()
        self.tasks = tasks
        self.meta_batch_size = meta_batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.tasks.train, batch_size=self.meta_batch_size, shuffle=True,
                          generator=generator)  # fmt: skip

    def _eval_loader(self, tasks: TaskSet) -> DataLoader:
        return DataLoader(tasks, batch_size=self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.tasks.val)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.tasks.test[scenario]) for scenario in SCENARIOS]
