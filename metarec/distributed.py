"""Meta-training on several devices and nodes through Lightning's own strategies.

Lightning launches the processes (its DDP launcher, ``torchrun`` or SLURM's ``srun``) and
averages gradients; metarec only decides which tasks each rank sees and gathers what it
evaluated:

- a meta-batch of ``learner.meta_batch_size`` = B tasks is drawn exactly as on one device
  (the seeded sampler), and rank r takes its contiguous share of it (``shard``), so the union
  of the ranks' tasks at every step is the one-device meta-batch (both in
  ``metarec.data.sampler``);
- each rank's loss is scaled by its share of the meta-batch (``share_of_meta_batch``), so
  DDP's gradient average is the one-device meta-batch mean even when shares differ;
- evaluation shards every task set into disjoint contiguous parts, without the repeated tasks
  Lightning's ``DistributedSampler`` pads with, and ``gather_rows`` puts the per-task rows
  back together in task order, so every task counts once.
"""

from __future__ import annotations

import inspect

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from torch.nn.parallel import DistributedDataParallel

# DDP's switch for the buffer broadcast before every forward (renamed in recent torch).
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def lightning_strategy(name: str) -> str | L.pytorch.strategies.Strategy:
    """``trainer.strategy`` as Lightning takes it. The DDP family is built here without
    DDP's buffer broadcast before each forward: metarec's buffers are constants (item text
    embeddings, rating levels) and evaluation shards differ in size, so that broadcast would
    pair up forwards that different ranks do not run in step."""
    entry = StrategyRegistry[name] if name in StrategyRegistry else None
    if entry is not None and issubclass(entry["strategy"], DDPStrategy):
        return entry["strategy"](**entry["init_params"], **_NO_FORWARD_BUFFER_SYNC)
    return name


def share_of_meta_batch(
    module: L.LightningModule, loss: torch.Tensor, count: int | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to back-propagate, loss of the whole meta-batch) for a rank whose ``loss`` is a
    mean over ``count`` units (tasks, or ratings for the pooled baselines).

    DDP averages gradients over the N ranks, so rank r back-propagates
    ``loss_r * count_r * N / sum(count)``: the average is the gradient of the meta-batch mean,
    the same as one device's. On one process both are ``loss`` itself.
    """
    trainer = module._trainer
    world_size = trainer.world_size if trainer is not None else 1
    if world_size == 1:
        return loss, loss.detach()
    count = torch.as_tensor(count, dtype=loss.dtype, device=loss.device)
    totals = trainer.strategy.reduce(torch.stack([loss.detach() * count, count]), reduce_op="sum")
    return loss * (count * world_size / totals[1]), totals[0] / totals[1]


def rank_share(module: L.LightningModule, count: int | torch.Tensor) -> float | torch.Tensor:
    """This rank's ``count`` over the mean count of all ranks (1.0 on one process): the factor
    that makes a mean over this rank's units weigh as its share of the meta-batch's units."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return 1.0
    count = torch.as_tensor(count, dtype=torch.float32, device=module.device)
    return count * trainer.world_size / trainer.strategy.reduce(count.clone(), reduce_op="sum")


def mean_over_ranks(
    module: L.LightningModule, tensors: dict[str, torch.Tensor], count: int
) -> dict[str, torch.Tensor]:
    """Each tensor (a mean over this rank's ``count`` tasks) as the mean over every rank's
    tasks, in one all-reduce; ``tensors`` itself on one process."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return tensors
    flat = torch.cat([value.flatten() * count for value in tensors.values()])
    flat = torch.cat([flat, flat.new_tensor([count])])
    flat = trainer.strategy.reduce(flat, reduce_op="sum")
    flat = flat[:-1] / flat[-1]
    means, start = {}, 0
    for name, value in tensors.items():
        means[name] = flat[start : start + value.numel()].view_as(value)
        start += value.numel()
    return means


def gather_rows(module: L.LightningModule, rows: torch.Tensor) -> torch.Tensor:
    """Every rank's ``rows`` (its tasks, in task order), concatenated in rank order: the
    whole task set in order, each task once. Ranks hold different numbers of rows, so they
    are padded to the longest for the all-gather and cut back after."""
    trainer = module._trainer
    if trainer is None or trainer.world_size == 1:
        return rows
    local = rows.to(module.device)
    sizes = module.all_gather(torch.tensor(len(local), device=module.device)).tolist()
    padded = local.new_zeros((max(sizes), *local.shape[1:]))
    padded[: len(local)] = local
    gathered = module.all_gather(padded)  # (ranks, longest, ...)
    return torch.cat([gathered[rank, :size] for rank, size in enumerate(sizes)]).to(rows.device)
