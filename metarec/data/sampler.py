"""Which tasks each meta-batch holds, and each process's share of a task set.

A meta-batch of B tasks is drawn exactly as on one device (the seeded sampler), and rank r
takes its contiguous share of it (``shard``), so the union of the ranks' tasks at every step
is the one-device meta-batch; evaluation task sets are sharded the same way, without repeats.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import BatchSampler, RandomSampler, Sampler

from metarec.errors import ConfigError


def shard(n_items: int, rank: int, world_size: int) -> range:
    """Rank ``rank``'s contiguous part of ``n_items``: sizes differ by at most one, no item is
    repeated or left out, and the parts in rank order are the items in order."""
    return range(n_items * rank // world_size, n_items * (rank + 1) // world_size)


class MetaBatchSampler(Sampler[list[int]]):
    """Rank ``rank``'s share of each meta-batch that one device would draw.

    The meta-batches are those of ``DataLoader(tasks, meta_batch_size, shuffle=True,
    generator=generator)``; every rank draws the same ones from the same seed and keeps its
    ``shard``. A last partial meta-batch with fewer tasks than ranks cannot give every rank a
    task and is dropped (it never is on one device).
    """

    def __init__(
        self,
        n_tasks: int,
        meta_batch_size: int,
        generator: torch.Generator,
        rank: int = 0,
        world_size: int = 1,
    ):
        if meta_batch_size % world_size:
            raise ConfigError(
                f"key 'learner.meta_batch_size': {meta_batch_size} tasks cannot be shared "
                f"evenly by {world_size} processes (trainer.devices x trainer.num_nodes); it is "
                "the global meta-batch, so make it a multiple of the number of processes"
            )
        self.n_tasks, self.meta_batch_size = n_tasks, meta_batch_size
        self.rank, self.world_size = rank, world_size
        self.batches = BatchSampler(
            RandomSampler(range(n_tasks), generator=generator), meta_batch_size, drop_last=False
        )

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            if len(batch) >= self.world_size:
                yield [batch[i] for i in shard(len(batch), self.rank, self.world_size)]

    def __len__(self) -> int:
        last = self.n_tasks % self.meta_batch_size
        return self.n_tasks // self.meta_batch_size + int(0 < last and self.world_size <= last)
