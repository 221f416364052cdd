"""MeLU's network: user and item feature embeddings, decision layers, one rating out."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from metarec.config.schema import ModelConfig
from metarec.data.schema import RecDataset
from metarec.encoders.features import FeatureEmbedding


def relu_layers(width: int, hidden: list[int]) -> tuple[list[nn.Module], int]:
    """``Linear -> ReLU`` per width in ``hidden``, starting from ``width``; and the last width."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    return layers, width


def output_layer(width: int, binary: bool, rating_mean: float) -> nn.Linear:
    """``Linear(width, 1)`` whose bias starts at the mean rating, not at 0 (on 0/1 targets,
    ``binary``, at the logit of the like rate)."""
    out = nn.Linear(width, 1)
    if binary:
        rate = min(max(rating_mean, 1e-3), 1 - 1e-3)
        rating_mean = math.log(rate / (1 - rate))
    nn.init.constant_(out.bias, rating_mean)
    return out


class MeLUNet(nn.Module):
    """Concatenated feature embeddings -> ReLU layers -> rating (Lee et al., KDD 2019).

    What learners use beside calling it: :meth:`features` (the last hidden layer) and
    :attr:`head` (the output layer that reads it), for a learner that solves the head per
    task; :meth:`decision_layers`, the layers MeLU's local update adapts. On 0/1 targets
    (``dataset.binary``) the output is a probability: a sigmoid of the head, whose bias
    starts at the logit of the mean.
    """

    def __init__(self, dataset: RecDataset, cfg: ModelConfig, rating_mean: float = 3.5):
        super().__init__()
        self.user_features = FeatureEmbedding(dataset.users, cfg.embedding_dim)
        self.item_features = FeatureEmbedding(dataset.items, cfg.embedding_dim)
        layers, width = relu_layers(
            self.user_features.out_dim + self.item_features.out_dim, cfg.hidden
        )
        self.binary = dataset.binary
        self.decision = nn.Sequential(*layers, output_layer(width, self.binary, rating_mean))

    # The input each feature embedding reads: lets a learner adapt only a task's rows.
    FEATURE_INPUTS = {"user_features": "user", "item_features": "item"}

    def features(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The last hidden layer for (user row, item row) pairs, broadcast together: what
        :attr:`head` reads, ``(..., width)``."""
        user, item = torch.broadcast_tensors(user, item)
        joined = torch.cat([self.user_features(user), self.item_features(item)], -1)
        return self.decision[:-1](joined)

    @property
    def head(self) -> nn.Linear:
        """The output layer: :meth:`features` -> one rating (a logit on 0/1 targets)."""
        return self.decision[-1]

    def decision_layers(self) -> list[str]:
        """The names (as in ``named_modules``) of the decision layers, the output layer last:
        every linear layer after the feature embeddings."""
        layers = self.decision.named_children()
        return [f"decision.{name}" for name, layer in layers if isinstance(layer, nn.Linear)]

    def forward(
        self, user: torch.Tensor, item: torch.Tensor, embedded: bool = False
    ) -> torch.Tensor:
        """Predicted ratings for (user row, item row) pairs of any broadcastable shape; with
        ``embedded``, ``user`` and ``item`` are their feature embeddings already (each with
        its width last), as a learner that adapts only the decision layers computes them
        once for every inner step.

        The first layer applied to ``cat([user features, item features])`` is computed as
        its user part plus its item part, each on its own rows: a task's one user is
        embedded and multiplied once, not once per item it rated.
        """
        if not embedded:
            user, item = self.user_features(user), self.item_features(item)
        shape = torch.broadcast_shapes(user.shape[:-1], item.shape[:-1])
        first, rest = self.decision[0], self.decision[1:]
        # split, not two slices: its gradient is one concatenation, not two zero-filled copies
        sizes = [self.user_features.out_dim, self.item_features.out_dim]
        user_weight, item_weight = first.weight.split(sizes, dim=1)
        user_part = F.linear(user, user_weight, first.bias)
        item_part = F.linear(item, item_weight)
        user_part = user_part.reshape((1,) * (len(shape) + 1 - user.dim()) + user_part.shape)
        out = rest(user_part + item_part).squeeze(-1)
        return torch.sigmoid(out) if self.binary else out
