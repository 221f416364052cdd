"""``learner.residual``: any learner learns what the shrunk bias baseline misses.

The learner is left as it is; :class:`Residuals` wraps what goes in and comes out of it. Every
batch's ratings become residuals of the baseline (item means of the meta-training ratings and
the user's offset on the support set, both shrunk by pseudo-counts picked on the validation
tasks) before the learner sees them, and the baseline's query predictions are added back to
its predictions before any metric (``metarec.bias.add_baseline``).
"""

from __future__ import annotations

import torch
from torch import nn

from metarec.bias import item_means, pick_pseudo_counts, residualize
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks


class Residuals(nn.Module):
    """The shrunk bias baseline as buffers (kept in checkpoints): a batch in, the batch of its
    residuals out (``query_offset`` and ``query_target`` beside them); a batch made residual
    already passes as it is."""

    def __init__(self, item_mean: torch.Tensor, user_pseudo: torch.Tensor):
        super().__init__()
        self.register_buffer("item_mean", item_mean)
        self.register_buffer("user_pseudo", user_pseudo)

    @classmethod
    def of(cls, tasks: ColdStartTasks) -> Residuals:
        """The baseline of the meta-training ratings, its pseudo-counts picked on the
        validation tasks."""
        items, ratings = tasks.train_ratings()
        n_items, scale = len(tasks.dataset.items), tasks.dataset.rating_scale
        item_pseudo, user_pseudo, _ = pick_pseudo_counts(items, ratings, n_items, tasks.val, scale)
        means = item_means(items, ratings, n_items, item_pseudo)
        return cls(means, torch.tensor(user_pseudo, dtype=torch.float64))

    def forward(self, batch: Batch) -> Batch:
        if "query_offset" in batch:
            return batch
        return residualize(batch, self.item_mean, self.user_pseudo)
