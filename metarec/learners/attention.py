"""In-context adaptation by attention, no inner gradient steps (in the spirit of neural
processes, Garnelo et al., 2018, and set transformers, Lee et al., 2019).

Each support (user, item, rating) triple becomes a token, the pair's feature embeddings
projected plus a learned embedding of the rating level; a Transformer encoder reads the
support set as a set (no positions, padding masked). Each query pair cross-attends to the
encoded support and an MLP head turns the pair and what it read into a rating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import AT_LEAST_ONE, FRACTION, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import RecDataset
from metarec.encoders.features import FeatureEmbedding
from metarec.encoders.network import relu_layers
from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS

Context = tuple[torch.Tensor, torch.Tensor]  # (T, 1 + S, d_model) tokens, (T, 1 + S) ignored


@dataclass
class AttentionSettings(LearnerConfig):
    """Size of the support-set encoder and of the query's cross-attention."""

    d_model: int = setting(
        64, "width of the support tokens and of the attention layers", domain=AT_LEAST_ONE
    )
    heads: int = setting(2, "attention heads (must divide d_model)", domain=AT_LEAST_ONE)
    layers: int = setting(2, "Transformer encoder layers over the support set", domain=AT_LEAST_ONE)
    feedforward: int = setting(
        128, "width of each encoder layer's feed-forward block", domain=AT_LEAST_ONE
    )
    dropout: float = setting(
        0.0, "dropout in the attention layers (0 keeps evaluation exact)", domain=FRACTION
    )

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(
                f"learner.heads ({self.heads}) must divide learner.d_model ({self.d_model})"
            )


class PairFeatures(nn.Module):
    """User and item feature embeddings, concatenated; keeps what the rest is built from."""

    def __init__(self, dataset: RecDataset, model: ModelConfig, rating_mean: float):
        super().__init__()
        self.user_features = FeatureEmbedding(dataset.users, model.embedding_dim)
        self.item_features = FeatureEmbedding(dataset.items, model.embedding_dim)
        self.out_dim = self.user_features.out_dim + self.item_features.out_dim
        self.hidden = list(model.hidden)
        self.rating_mean = rating_mean
        low, high = dataset.rating_scale
        self.levels = list(range(math.ceil(low), math.floor(high) + 1))

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        user, item = torch.broadcast_tensors(user, item)
        return torch.cat([self.user_features(user), self.item_features(item)], dim=-1)


class InContextNet(nn.Module):
    """Support tokens -> Transformer encoder; query pair -> cross-attention -> MLP -> rating."""

    def __init__(self, features: PairFeatures, cfg: AttentionSettings):
        super().__init__()
        width = cfg.d_model
        self.features = features
        self.pair = nn.Linear(features.out_dim, width)
        self.rating = nn.Embedding(len(features.levels), width)  # one vector per rating level
        # Always-present token: no row of attention is ever fully masked (no NaN), and a
        # task with little support still has something to read.
        self.prior = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, cfg.heads, cfg.feedforward, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, cfg.layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )
        self.cross = nn.MultiheadAttention(width, cfg.heads, cfg.dropout, batch_first=True)
        # The head reads the query pair and what it read from the support set.
        layers, width = relu_layers(2 * width, features.hidden)
        out = nn.Linear(width, 1)
        nn.init.constant_(out.bias, features.rating_mean)  # start at the mean rating, not at 0
        self.head = nn.Sequential(*layers, out)

    def encode(self, support: Batch) -> Context:
        """The encoded support set with the prior token first, and which tokens are padding."""
        tokens = self.pair(self.features(support["user"].unsqueeze(-1), support["item"]))
        # Ratings rounded to the dataset's levels; padding's 0 is clamped to a real level (masked).
        level = (support["rating"].round() - self.features.levels[0]).long()
        tokens = tokens + self.rating(level.clamp(0, len(self.features.levels) - 1))
        tokens = torch.cat([self.prior.expand(len(tokens), -1, -1).to(tokens.dtype), tokens], 1)
        ignored = torch.cat([torch.zeros_like(support["mask"][:, :1]), ~support["mask"]], 1)
        return self.encoder(tokens, src_key_padding_mask=ignored), ignored

    def forward(self, context: Context, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Ratings (T, Q) of query pairs given each task's encoded support set."""
        memory, ignored = context
        query = self.pair(self.features(user.unsqueeze(-1), item))
        read, _ = self.cross(query, memory, memory, key_padding_mask=ignored, need_weights=False)
        return self.head(torch.cat([query, read], dim=-1)).squeeze(-1)


@LEARNERS.register("attention")
class Attention(MetaLearner):
    """Adapts in context: a forward pass over the support set, no gradient steps."""

    Settings = AttentionSettings

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: AttentionSettings
    ) -> nn.Module:
        _, ratings = tasks.train_ratings()
        features = PairFeatures(tasks.dataset, model, rating_mean=float(ratings.mean()))
        return InContextNet(features, settings)

    def adapt(self, support: Batch) -> Context:
        return self.net.encode(support)

    def predict(self, state: Context, query: Batch) -> torch.Tensor:
        return self.net(state, query["user"], query["item"])
