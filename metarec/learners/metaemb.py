"""Meta-Embedding (Pan, Li, Ao, Li, He, "Warm Up Cold-start Advertisements: Improving CTR
Predictions via Learning to Learn ID Embeddings", SIGIR 2019).

A base model reads a (user, item) pair's features, the item's content and the item's ID
embedding. Items rated in meta-training (warm) have learned ID embeddings; a new item (never
rated in meta-training) gets its ID embedding from an embedding generator of its content,
``phi = g(content)``. The generator is meta-trained in two phases on warm items, each
treated as if it were new (the paper's Sec. 3; equations named as there, their numbers not
checked, no copy of the paper being at hand):

- cold start: ``l_a(phi)``, the loss of the generated embedding on a first batch ``D_a``;
- warm up: one gradient step ``phi' = phi - a * dl_a/dphi``, then the loss ``l_b(phi')`` on
  a second batch ``D_b``;
- ``l_meta = alpha * l_a + (1 - alpha) * l_b``, differentiated through the step.

The base model is the paper's pre-trained model, frozen while the generator trains.

Adaptation to metarec's tasks (a task is a new user; ``units = ("user",)``):
- an item is the paper's "ad": in a meta-batch, ``D_a`` of an item is its ratings in the
  tasks' support sets, ``D_b`` its ratings in their query sets; ``l_a`` and ``l_b`` average
  each item's mean loss over the items present (each item weighs the same, as each ad does);
- the base model is trained on every meta-training rating (support and query) beside the
  generator, not before it: the generator's loss reads the base model's weights detached, so
  the base stays frozen for it, and the base model's own loss never reaches the generator;
- the base model has no user ID (every test user is new): a user is its features; ``adapt``
  does not change per task. The warm-up step is a training device only: in a user task no
  query item is also a support item, so there is nothing to warm up on at test time.

Differences from the authors' code (RecBole-MetaRec ``model/MetaEmb``, a re-implementation;
the original is not indexed): it warms up cold *users* (task = user, generator over user
features) with a separate pre-training pass; here new *items* as in the paper, and the base
model trains alongside with its weights detached in the generator's loss. It averages the
gradient over the batch's rows of one ID; here the gradient of each item's mean loss (the same
thing). The generator is one hidden ReLU layer, as there; whether the paper's has other
layers or an output scaling was not checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from metarec.config.domain import AT_LEAST_ONE, POSITIVE, Range, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import RecDataset
from metarec.encoders.features import FeatureEmbedding
from metarec.encoders.network import output_layer, relu_layers
from metarec.learners.base import MetaLearner
from metarec.learners.losses import Loss
from metarec.registry import LEARNERS


class ItemIDNet(nn.Module):
    """The base model: user features, item content and an item ID embedding -> ReLU layers
    of ``model.hidden`` -> a rating (a probability on 0/1 targets, as MeLU's network).

    ``seen`` marks the items rated in meta-training; the ID rows of the others never train.
    """

    def __init__(
        self, dataset: RecDataset, model: ModelConfig, seen: torch.Tensor, rating_mean: float
    ):
        super().__init__()
        dim = model.embedding_dim
        self.user_features = FeatureEmbedding(dataset.users, dim)
        self.item_features = FeatureEmbedding(dataset.items, dim)  # content: features, text
        self.item_id = nn.Embedding(len(seen), dim)
        self.register_buffer("seen", seen)
        width = self.user_features.out_dim + self.item_features.out_dim + dim
        layers, width = relu_layers(width, model.hidden)
        self.binary = dataset.binary
        self.decision = nn.Sequential(*layers, output_layer(width, self.binary, rating_mean))

    @classmethod
    def for_tasks(cls, tasks: ColdStartTasks, model: ModelConfig) -> ItemIDNet:
        """The base model of ``tasks``: which items meta-training rated, its mean rating."""
        items, ratings = tasks.train_ratings()
        seen = torch.zeros(len(tasks.dataset.items), dtype=torch.bool)
        seen[items] = True
        return cls(tasks.dataset, model, seen, float(ratings.mean()))

    def forward(
        self, user: torch.Tensor, item: torch.Tensor, item_embedding: torch.Tensor
    ) -> torch.Tensor:
        """Ratings (T, N) of users (T,) and items (T, N) with ID embeddings (T, N, dim)."""
        users = self.user_features(user).unsqueeze(-2).expand(*item.shape, -1)
        joined = torch.cat([users, self.item_features(item), item_embedding], dim=-1)
        out = self.decision(joined).squeeze(-1)
        return torch.sigmoid(out) if self.binary else out

    def warm_loss(self, batch: Batch, loss: Loss) -> torch.Tensor:
        """The base model's own loss on every rating of a meta-batch, support and query,
        with the items' learned ID embeddings; each task weighs the same."""
        item = torch.cat([batch["support_item"], batch["query_item"]], dim=1)
        rating = torch.cat([batch["support_rating"], batch["query_rating"]], dim=1)
        mask = torch.cat([batch["support_mask"], batch["query_mask"]], dim=1)
        return loss(self(batch["user"], item, self.item_id(item)), rating, mask).mean()

    def frozen(self) -> dict[str, torch.Tensor]:
        """Its weights detached: ``functional_call`` with them trains only what feeds it."""
        return {name: weight.detach() for name, weight in self.named_parameters()}


def item_losses(
    pred: torch.Tensor,
    rating: torch.Tensor,
    mask: torch.Tensor,
    index: torch.Tensor,
    rows: int,
    loss: Loss,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each of ``rows`` table rows' mean loss over the ratings whose ``index`` is it, and
    whether it has any: ``pred``, ``rating``, ``mask`` and ``index`` are (T, N)."""
    weight = mask.to(pred.dtype)
    per_rating = loss(pred.unsqueeze(-1), rating.unsqueeze(-1), mask.unsqueeze(-1))  # (T, N)
    total = pred.new_zeros(rows).index_add(0, index.flatten(), (per_rating * weight).flatten())
    count = pred.new_zeros(rows).index_add(0, index.flatten(), weight.flatten())
    return total / count.clamp(min=1), count > 0


def two_phase_loss(
    support: Batch,
    query: Batch,
    predict: Callable[[str, torch.Tensor], torch.Tensor],
    rows: int,
    loss: Loss,
    warmup_lr: float,
    alpha: float,
) -> torch.Tensor:
    """``l_meta = alpha * l_a + (1 - alpha) * l_b`` of generated item embeddings.

    ``support`` and ``query`` hold ``phi`` (T, N, dim), the generated embeddings of their
    items, ``index`` (T, N), each item's row among ``rows`` (one item, one row, one ``phi``),
    ``rating`` and ``mask``; ``predict(part, embeddings)`` scores the part's pairs from their
    (T, N, dim) embeddings. ``l_a`` is the mean over items of each item's support loss with
    ``phi``; ``l_b`` that of its query loss after one step of ``warmup_lr`` on its own support
    loss (an item without support ratings takes no step).
    """
    # A zero offset per item row: the gradient on it is each item's own, summed over its
    # positions, without gathering the batch's distinct items (data-dependent sizes).
    offset = support["phi"].new_zeros(rows, support["phi"].shape[-1]).requires_grad_()
    pred = predict("support", support["phi"] + offset[support["index"]])
    cold, has_support = item_losses(
        pred, support["rating"], support["mask"], support["index"], rows, loss
    )
    # Each item's loss reads only its own row: the gradient of the sum is each one's own.
    (step,) = torch.autograd.grad(cold.sum(), offset, create_graph=True)
    pred = predict("query", query["phi"] - warmup_lr * step[query["index"]])
    warm, has_query = item_losses(pred, query["rating"], query["mask"], query["index"], rows, loss)
    cold_mean = (cold * has_support).sum() / has_support.sum().clamp(min=1)
    warm_mean = (warm * has_query).sum() / has_query.sum().clamp(min=1)
    return alpha * cold_mean + (1 - alpha) * warm_mean


@dataclass
class MetaEmbSettings(LearnerConfig):
    """The embedding generator and its two-phase meta-training."""

    generator_hidden: int = setting(
        64, "width of the generator's hidden layer (content -> ID embedding)", domain=AT_LEAST_ONE
    )
    warmup_lr: float = setting(
        0.1, "step size a of the warm-up step of a generated embedding", domain=POSITIVE
    )
    alpha: float = setting(
        0.1,
        "weight of the cold-start loss l_a in L_meta (1 - alpha: warm-up l_b)",
        domain=Range(0, 1),
    )


class MetaEmbNet(nn.Module):
    """The base model and the embedding generator of a new item's content."""

    def __init__(self, base: ItemIDNet, hidden: int):
        super().__init__()
        self.base = base
        dim = base.item_id.embedding_dim
        self.generator = nn.Sequential(
            nn.Linear(base.item_features.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )

    def generated(self, item: torch.Tensor) -> torch.Tensor:
        """``g(content)`` for item rows of any shape; the content embedding is the frozen
        base model's, so only the generator learns from it."""
        return self.generator(self.base.item_features(item).detach())

    def embedding(self, item: torch.Tensor) -> torch.Tensor:
        """Warm items' learned ID embeddings, new items' generated ones."""
        seen = self.base.seen[item].unsqueeze(-1)
        return torch.where(seen, self.base.item_id(item), self.generated(item))


@LEARNERS.register("metaemb")
class MetaEmb(MetaLearner):
    """New items' ID embeddings generated from their content, meta-trained cold then warm."""

    Settings = MetaEmbSettings
    units = ("user",)  # new items are the batches' items; an item task's item is its "user"

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: MetaEmbSettings
    ) -> nn.Module:
        return MetaEmbNet(ItemIDNet.for_tasks(tasks, model), settings.generator_hidden)

    def adapt(self, support: Batch) -> None:
        """Nothing per task: the user is its features, a new item its generated embedding."""

    def predict(self, state: None, query: Batch) -> torch.Tensor:
        return self.net.base(query["user"], query["item"], self.net.embedding(query["item"]))

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The base model's loss (its weights only) plus ``l_meta`` (the generator's only)."""
        base = self.net.base
        frozen = base.frozen()

        def predict(part: str, embeddings: torch.Tensor) -> torch.Tensor:
            item = batch[f"{part}_item"]
            return functional_call(base, frozen, (batch["user"], item, embeddings))

        support, query = (
            {
                "phi": self.net.generated(batch[f"{part}_item"]),
                "index": batch[f"{part}_item"],
                "rating": batch[f"{part}_rating"],
                "mask": batch[f"{part}_mask"],
            }
            for part in ("support", "query")
        )
        rows = len(base.seen)
        alpha, warmup_lr = self.cfg.alpha, self.cfg.warmup_lr
        meta = two_phase_loss(support, query, predict, rows, self.loss, warmup_lr, alpha)
        return base.warm_loss(batch, self.loss) + meta
