"""Mean-rating baselines: no learning, the floor every learner must beat.

``kind`` picks the predictor: ``global`` (the mean meta-training rating), ``user`` (the mean of
the task's support ratings), ``item`` (the item's mean meta-training rating, the global mean for
an item never rated there) or ``bias`` (item mean plus the user's mean offset on the support
set; ``metarec.baselines.bias``, the strong simple baseline). Predictions are clamped to the
rating scale and kept in float64, as ``bias.py`` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarec.baselines.bias import item_means, predict_bias
from metarec.config.schema import LearnerConfig, ModelConfig, setting
from metarec.data.datamodule import ColdStartTasks
from metarec.learners.base import Batch, MetaLearner
from metarec.registry import LEARNERS


class MeanRatings(nn.Module):
    """Item means and the global mean of the meta-training ratings, as buffers (no weights)."""

    def __init__(self, item_mean: torch.Tensor, global_mean: torch.Tensor, scale: tuple):
        super().__init__()
        self.register_buffer("item_mean", item_mean)
        self.register_buffer("global_mean", global_mean)
        self.rating_scale = tuple(scale)


@dataclass
class MeanSettings(LearnerConfig):
    """Which mean predicts a rating."""

    kind: str = setting(
        "bias",
        "global (training mean) | user (support mean) | item (item mean) | bias (item + user)",
        choices=("global", "user", "item", "bias"),
    )


@LEARNERS.register("mean")
class Mean(MetaLearner):
    """Predicts a mean rating; the adapted state is the support set itself."""

    Settings = MeanSettings
    reads_item_text = False  # IDs only: no item features for a text to join

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: MeanSettings
    ) -> nn.Module:
        """Item and global means of the meta-training ratings, computed once."""
        items, ratings = tasks.train_ratings()
        means = item_means(items, ratings, len(tasks.dataset.items))
        return MeanRatings(means, ratings.double().mean(), tasks.dataset.rating_scale)

    def adapt(self, support: Batch) -> Batch:
        return support

    def predict(self, support: Batch, query: Batch) -> torch.Tensor:
        net, kind = self.net, self.cfg.kind
        if kind == "bias":  # bias.py's own function, so the numbers equal the bias baseline's
            return predict_bias(support, query["item"], net.item_mean, net.rating_scale)
        if kind == "item":
            pred = net.item_mean[query["item"]]
        elif kind == "user":
            mask = support["mask"].double()
            count = mask.sum(1, keepdim=True)
            total = (support["rating"].double() * mask).sum(1, keepdim=True)
            user_mean = torch.where(count > 0, total / count.clamp(min=1), net.global_mean)
            pred = user_mean.expand(query["item"].shape)
        else:
            pred = net.global_mean.expand(query["item"].shape)
        return pred.clamp(*net.rating_scale)
