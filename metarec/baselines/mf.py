"""Biased matrix factorisation with users folded in: r = mu + b_i + b_u + p_u . q_i.

Every task is a user the model has never seen, so a user has no learned vector: its bias and
factors ``(b_u, p_u)`` are folded in from the support set by ridge least squares, in closed
form (one batched ``torch.linalg.solve``). Item biases ``b_i`` and factors ``q_i`` are learned
by Adam on the meta-training tasks through that solve: fold in each task's user from its
support set, predict its query set, minimise the MSE (the base class's training loss). This is
MF trained for fold-in, not MF fitted to a rating matrix by alternating least squares. Items
never rated in meta-training (every new item) have no factors: ``b_i = 0`` and ``q_i = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarec.bias import item_means
from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.distributed import rank_share
from metarec.learners.base import MetaLearner
from metarec.learners.foldin import ItemFactors, fold_in
from metarec.registry import LEARNERS


@dataclass
class MFSettings(LearnerConfig):
    """Sizes and penalties of biased MF with fold-in."""

    factors: int = setting(
        16, "latent factors per item (and per folded-in user)", domain=AT_LEAST_ONE
    )
    item_l2: float = setting(
        1e-3,
        "penalty on the item biases and factors of a meta-batch's ratings",
        domain=NON_NEGATIVE,
    )
    ridge_l2: float = setting(
        3.0, "ridge penalty on the folded-in user bias and factors", domain=NON_NEGATIVE
    )
    init_std: float = setting(0.01, "std of the initial item factors", domain=POSITIVE)
    outer_lr: float = setting(
        1e-2, "Adam learning rate of the item biases and factors", domain=POSITIVE
    )


@LEARNERS.register("mf")
class MF(MetaLearner):
    """Biased MF; each task's user is solved by ridge regression on its support ratings."""

    Settings = MFSettings
    reads_item_text = False  # IDs only: no item features for a text to join

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: MFSettings
    ) -> nn.Module:
        """Which items meta-training rated, their mean ratings, and the mean training rating.

        Item biases start at ``item mean - mu``: only query ratings reach them directly in
        training (support ratings act through the fold-in), too few to learn them from zero.
        """
        items, ratings = tasks.train_ratings()
        seen = torch.zeros(len(tasks.dataset.items), dtype=torch.bool)
        seen[items] = True
        mean = float(ratings.mean())
        offset = (item_means(items, ratings, len(seen)) - mean).float()
        return ItemFactors(seen, offset, mean, settings.factors, settings.init_std)

    def adapt(self, support: Batch) -> torch.Tensor:
        """Per task ``[b_u, p_u]`` (tasks, 1 + k): ridge regression of the support residuals."""
        item_bias, features = self.net(support["item"])
        residual = support["rating"] - self.net.rating_mean - item_bias
        return fold_in(features, residual, support["mask"], self.cfg.ridge_l2)

    def predict(self, user: torch.Tensor, query: Batch) -> torch.Tensor:
        item_bias, features = self.net(query["item"])
        return self.net.rating_mean + item_bias + (features @ user.unsqueeze(-1)).squeeze(-1)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """Query MSE after fold-in, plus ``item_l2`` times the mean squared norm of the items
        rated."""
        items = torch.cat([batch["support_item"], batch["query_item"]], dim=1)
        mask = torch.cat([batch["support_mask"], batch["query_mask"]], dim=1)
        item_bias, features = self.net(items)
        norms = item_bias**2 + (features[..., 1:] ** 2).sum(-1)
        penalty = (norms * mask).sum() / mask.sum().clamp(min=1)
        # The loss weighs by this rank's share of tasks (``loss_count``); the penalty is a
        # mean over ratings, so under several processes it weighs by the share of ratings.
        penalty = penalty * rank_share(self, mask.sum()) / rank_share(self, len(mask))
        return super().training_loss(batch) + self.cfg.item_l2 * penalty
