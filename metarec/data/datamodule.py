"""The four scenarios' tasks -> a LightningDataModule."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from metarec.data.sampler import MetaBatchSampler, shard
from metarec.data.scenarios import ColdStartTasks
from metarec.data.tasks import TaskSet
from metarec.errors import DataError


class ColdStartDataModule(L.LightningDataModule):
    """Meta-batches of training tasks; validation tasks; one test loader per scenario.

    Under several processes (``trainer.devices`` x ``trainer.num_nodes``) each rank loads its
    share: of every meta-batch (``meta_batch_size`` is the global one), and of every
    evaluation task set, without repeats (``metarec.data.sampler``).
    """

    def __init__(
        self, tasks: ColdStartTasks, meta_batch_size: int, eval_batch_size: int, seed: int
    ):
        super().__init__()
        self.tasks = tasks
        self.meta_batch_size = meta_batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed

    def _ranks(self) -> tuple[int, int]:
        """(this process's global rank, number of processes); (0, 1) without a Trainer."""
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        sampler = MetaBatchSampler(len(self.tasks.train), self.meta_batch_size, generator,
                                   *self._ranks())  # fmt: skip
        # The loader draws its base seed from the generator too, as the shuffled loader before
        # this sampler did: one device keeps the very meta-batches it had.
        return DataLoader(self.tasks.train, batch_sampler=sampler, generator=generator)

    def _eval_loader(self, tasks: TaskSet, name: str) -> DataLoader:
        rank, world_size = self._ranks()
        if len(tasks) < world_size:
            raise DataError(
                f"{name}: {len(tasks)} tasks cannot give each of {world_size} processes one; "
                "use fewer devices"
            )
        part = shard(len(tasks), rank, world_size)
        tasks = tasks if world_size == 1 else tasks.subset(part)
        return DataLoader(tasks, batch_size=self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.tasks.val, "validation")

    @property
    def scenarios(self) -> list[str]:
        """Test scenario names, in the order of ``test_dataloader``."""
        return list(self.tasks.test)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(self.tasks.test[s], f"test/{s}") for s in self.scenarios]
