"""Wide & Deep (Cheng et al., DLRS 2016), the neural baseline of the MeLU paper.

Wide: a linear model over the user's and item's categorical features (one weight per feature
value; multi-valued features such as genres average their weights, as the embeddings do).
Deep: MeLU's network, feature embeddings then ReLU layers, its output bias at the mean
training rating. The rating is wide + deep. Cross-product features of the original wide part
are left out. No adaptation: it is fitted to every meta-training rating (support and query
halves alike) and predicts a new user from features alone, ignoring the support ratings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarec.baselines.finetune import PooledNetwork
from metarec.config.domain import POSITIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import RecDataset
from metarec.encoders.features import FeatureEmbedding
from metarec.encoders.network import MeLUNet
from metarec.registry import LEARNERS


class WideDeepNet(nn.Module):
    """A linear model over the feature values plus MeLU's network."""

    def __init__(self, dataset: RecDataset, cfg: ModelConfig, rating_mean: float):
        super().__init__()
        self.user_wide = FeatureEmbedding(dataset.users, dim=1)  # one weight per value
        self.item_wide = FeatureEmbedding(dataset.items, dim=1)
        for weight in [*self.user_wide.parameters(), *self.item_wide.parameters()]:
            nn.init.zeros_(weight)  # start as the deep part alone
        self.deep = MeLUNet(dataset, cfg, rating_mean=rating_mean)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for (user row, item row) pairs of any broadcastable shape."""
        user, item = torch.broadcast_tensors(user, item)
        wide = self.user_wide(user).sum(-1) + self.item_wide(item).sum(-1)
        return wide + self.deep(user, item)


@dataclass
class WideDeepSettings(LearnerConfig):
    """Wide & Deep has only the shared settings; its learning rate is tuned on validation."""

    outer_lr: float = setting(3e-3, "Adam learning rate", domain=POSITIVE)


@LEARNERS.register("widedeep")
class WideDeep(PooledNetwork):
    """Wide & Deep fitted to every meta-training rating (as ``global``); no adaptation."""

    Settings = WideDeepSettings

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: WideDeepSettings
    ) -> nn.Module:
        _, ratings = tasks.train_ratings()
        return WideDeepNet(tasks.dataset, model, rating_mean=float(ratings.mean()))
