"""Prototypical networks (Snell et al., NeurIPS 2017), adapted from classes to rating levels.

A (user, item) pair is embedded; each task's prototype of a rating level is the mean embedding
of its support pairs with that rating. A query pair's rating is the expected level under a
softmax over negative squared distances to the prototypes of the levels its support set holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import POSITIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import RecDataset
from metarec.encoders.features import FeatureEmbedding
from metarec.encoders.network import relu_layers
from metarec.learners.base import LearnerContext, MetaLearner
from metarec.registry import LEARNERS

Prototypes = tuple[torch.Tensor, torch.Tensor]  # (T, levels, dim) means, (T, levels) present


@dataclass
class ProtoNetSettings(LearnerConfig):
    """The distance softmax of the prototypical network."""

    temperature: float = setting(
        1.0,
        "initial softmax temperature on squared distances (learned from there on)",
        domain=POSITIVE,
    )

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"learner.temperature must be positive, not {self.temperature}")


class PairEmbedding(nn.Module):
    """User and item feature embeddings -> ReLU layers of ``model.hidden`` widths -> a vector.

    The last layer has no ReLU: a rectified embedding could leave units, and so their
    weights, without gradient. ``levels`` are the integer rating levels of the dataset.
    """

    def __init__(self, dataset: RecDataset, cfg: ModelConfig):
        super().__init__()
        self.user_features = FeatureEmbedding(dataset.users, cfg.embedding_dim)
        self.item_features = FeatureEmbedding(dataset.items, cfg.embedding_dim)
        layers, _ = relu_layers(self.user_features.out_dim + self.item_features.out_dim, cfg.hidden)
        self.layers = nn.Sequential(*layers[:-1])  # drop the last ReLU
        low, high = dataset.rating_scale
        levels = torch.arange(math.ceil(low), math.floor(high) + 1, dtype=torch.float32)
        self.register_buffer("levels", levels, persistent=False)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(..., hidden[-1])`` of (user row, item row) pairs, broadcast together."""
        user, item = torch.broadcast_tensors(user, item)
        return self.layers(torch.cat([self.user_features(user), self.item_features(item)], -1))


@LEARNERS.register("protonet")
class ProtoNet(MetaLearner):
    """One prototype per rating level and task; the prediction is the expected level."""

    Settings = ProtoNetSettings

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: ProtoNetSettings
    ) -> nn.Module:
        return PairEmbedding(tasks.dataset, model)

    def __init__(self, context: LearnerContext):
        super().__init__(context)
        # Learned in log space so that the temperature stays positive.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(self.cfg.temperature)))

    def adapt(self, support: Batch) -> Prototypes:
        embedded = self.net(support["user"].unsqueeze(-1), support["item"])  # (T, S, D)
        # (T, S, levels): the level of each real (unmasked) support rating, rounded to one.
        level = support["rating"].round().unsqueeze(-1) == self.net.levels
        member = level & support["mask"].unsqueeze(-1)
        weight = member.to(embedded.dtype)
        count = weight.sum(1)  # (T, levels)
        prototypes = weight.transpose(1, 2) @ embedded / count.clamp(min=1).unsqueeze(-1)
        return prototypes, count > 0

    def predict(self, state: Prototypes, query: Batch) -> torch.Tensor:
        prototypes, present = state
        embedded = self.net(query["user"].unsqueeze(-1), query["item"])  # (T, Q, D)
        distance = ((embedded.unsqueeze(2) - prototypes.unsqueeze(1)) ** 2).sum(-1)  # (T, Q, L)
        logits = -distance / self.log_temperature.exp()
        # The most negative finite value rather than -inf: an absent level gets probability 0,
        # yet a task with no support at all would get the mean level, not NaN.
        logits = logits.masked_fill(~present.unsqueeze(1), torch.finfo(logits.dtype).min)
        return logits.softmax(-1) @ self.net.levels.to(logits.dtype)
