"""Meta Warm Up Framework, MWUF (Zhu, Xie, Liu, Yang, Zhang, Shen, Hu, "Learning to Warm Up
Cold Item Embeddings for Cold-start Recommendation with Meta Scaling and Shifting Networks",
SIGIR 2021).

A cold item's ID embedding is warmed by two meta networks (the paper's Sec. 3; equations
named as there, their numbers not checked, no copy of the paper being at hand):

- meta scaling: ``tau_scale = h(content)``, from the item's features (and text);
- meta shifting: ``tau_shift = g(mean of the embeddings of the item's users)``;
- warm embedding: ``e_warm = e_cold * tau_scale + tau_shift``.

Warm items keep their ID embeddings as they are; only cold items are warmed. Training uses
two losses on each batch: the base model and the ID embeddings learn from the loss with the
cold embeddings, the meta networks from the loss with the warmed ones.

Adaptation to metarec's tasks (a task is a new user; ``units = ("user",)``, the base model is
``metaemb.ItemIDNet``):
- warm items are those rated in meta-training, new items the rest. A new item's cold
  embedding is the mean of the warm items' ID embeddings (its own ID row never trains): our
  choice; how the paper initialises a new item's ID embedding was not checked;
- a user's embedding is its feature embedding (every test user is new, so no user has an ID);
  an item's users are those who rated it in meta-training (liked it, on 0/1 targets), up to
  ``max_users`` of them (a seeded sample), never the task's own user, whose interaction with
  the item is what is predicted. A new item has none in a user task (the task's support users
  are the task's user alone), so its shift is 0;
- both losses are summed into one step: the meta networks read the base model's weights, ID
  embeddings, content and user embeddings detached, so the cold loss trains only the base and
  the warm loss only the meta networks. In training every item of the batch is warmed as if
  it were cold (all of them are warm), which is how the meta networks learn at all.

Differences from the authors' code (RecBole-MetaRec ``model/MWUF``; the original is not
indexed): it warms cold *users* (scaling from user features, shifting from the mean of the
task's item features); here cold *items*, scaled by their content and shifted by their users,
as in the paper. Its meta networks are one hidden ReLU layer each, as here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from metarec.config.domain import AT_LEAST_ONE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.learners.base import MetaLearner
from metarec.learners.metaemb import ItemIDNet
from metarec.registry import LEARNERS


@dataclass
class MWUFSettings(LearnerConfig):
    """The meta scaling and shifting networks."""

    meta_hidden: int = setting(
        64, "width of the hidden layer of each meta network", domain=AT_LEAST_ONE
    )
    max_users: int = setting(
        32, "most meta-training users per item whose mean the shift reads", domain=AT_LEAST_ONE
    )


def item_users(tasks: ColdStartTasks, max_users: int, seed: int = 0) -> torch.Tensor:
    """(items, max_users) user rows who rated (on 0/1 targets: liked) each item in
    meta-training, a seeded sample where there are more; -1 pads."""
    train = tasks.train
    parts = []
    for prefix in ("support", "query"):
        mask = getattr(train, f"{prefix}_mask")
        if tasks.target == "like":  # a sampled negative is no interaction
            mask = mask & (getattr(train, f"{prefix}_rating") > 0)
        users = train.user.unsqueeze(1).expand_as(mask)
        parts.append(torch.stack([getattr(train, f"{prefix}_item")[mask], users[mask]], 1))
    pairs = torch.cat(parts).numpy()
    pairs = pairs[np.random.default_rng(seed).permutation(len(pairs))]
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    starts = np.searchsorted(pairs[:, 0], pairs[:, 0])  # first pair of each one's item
    rank = np.arange(len(pairs)) - starts
    kept = pairs[rank < max_users]
    table = np.full((len(tasks.dataset.items), max_users), -1, dtype=np.int64)
    table[kept[:, 0], rank[rank < max_users]] = kept[:, 1]
    return torch.from_numpy(table)


class MWUFNet(nn.Module):
    """The base model, the items' meta-training users, and the two meta networks."""

    def __init__(self, base: ItemIDNet, users: torch.Tensor, hidden: int):
        super().__init__()
        self.base = base
        self.register_buffer("users", users)
        # The (item, user) pairs of the table, by item, and their keys sorted: what ``shift``
        # sums over and looks a task's own user up in (derived, so not saved).
        valid = users >= 0
        item_row, slot = valid.nonzero(as_tuple=True)
        rater = users[item_row, slot]
        self.raters = int(rater.max()) + 1 if len(rater) else 1  # user rows 0 .. raters - 1
        self.register_buffer("pair_item", item_row, persistent=False)
        self.register_buffer("pair_user", rater, persistent=False)
        self.register_buffer("pair_keys", (item_row * self.raters + rater).sort().values,
                             persistent=False)  # fmt: skip
        self.register_buffer("user_count", valid.sum(1), persistent=False)
        dim = base.item_id.embedding_dim
        self.scaling = nn.Sequential(
            nn.Linear(base.item_features.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )
        nn.init.ones_(self.scaling[-1].bias)  # starts near scale 1: the cold embedding
        self.shifting = nn.Sequential(
            nn.Linear(base.user_features.out_dim, hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )

    def shift(self, item: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """``tau_shift = g(mean user embedding)`` of items (T, N) in tasks of ``user`` (T,):
        ``g`` of the mean feature embedding of each item's meta-training users but the task's
        own, detached; 0 with no such user.

        ``g``'s first layer is linear, so it is applied to every user once and averaged after
        (the mean of ``W e + b`` is ``W mean(e) + b``): each item's users are summed in ``g``'s
        hidden width, once per call for the whole catalogue, and the task's own user is taken
        out of the sum, rather than each (task, item) embedding all its users again."""
        first, rest = self.shifting[0], self.shifting[1:]
        known = torch.arange(self.raters, device=item.device)
        with torch.no_grad():
            embedded = self.base.user_features(known)  # (U, user dim), detached
        projected = embedded @ first.weight.T  # (U, hidden): g's first layer, no bias yet
        sums = projected.new_zeros(len(self.users), projected.shape[1])
        sums = sums.index_add(0, self.pair_item, projected[self.pair_user])  # (items, hidden)
        # How often the task's own user is among each item's users: its (item, user) key's
        # count in the sorted keys (a user row past the table's is in none).
        key = item * self.raters + user.unsqueeze(-1)
        own = torch.searchsorted(self.pair_keys, key, right=True)
        own = (own - torch.searchsorted(self.pair_keys, key)) * (user < self.raters).unsqueeze(-1)
        count = self.user_count[item] - own
        mine = projected[user.clamp(max=self.raters - 1)].unsqueeze(1)  # (T, 1, hidden)
        total = sums[item] - own.unsqueeze(-1).to(sums.dtype) * mine
        mean = total / count.clamp(min=1).unsqueeze(-1).to(sums.dtype) + first.bias
        return rest(mean) * (count > 0).unsqueeze(-1)

    def warmed(self, item: torch.Tensor, user: torch.Tensor, cold: torch.Tensor) -> torch.Tensor:
        """``e_cold * tau_scale + tau_shift`` for items (T, N) with cold embeddings
        (T, N, dim); the meta networks read the content detached."""
        scale = self.scaling(self.base.item_features(item).detach())
        return cold * scale + self.shift(item, user)

    def embedding(self, item: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """Warm items' ID embeddings as they are; new items' warmed from the warm items'
        mean ID embedding."""
        seen = self.base.seen
        weight = seen.to(self.base.item_id.weight.dtype).unsqueeze(-1)  # no data-sized index
        warm_mean = (self.base.item_id.weight * weight).sum(0) / weight.sum().clamp(min=1)
        cold = warm_mean.expand(*item.shape, -1)
        warm = seen[item].unsqueeze(-1)
        return torch.where(warm, self.base.item_id(item), self.warmed(item, user, cold))


@LEARNERS.register("mwuf")
class MWUF(MetaLearner):
    """New items' mean ID embedding scaled by their content and shifted by their users."""

    Settings = MWUFSettings
    units = ("user",)  # new items are the batches' items; an item task's item is its "user"

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: MWUFSettings
    ) -> nn.Module:
        users = item_users(tasks, settings.max_users)
        return MWUFNet(ItemIDNet.for_tasks(tasks, model), users, settings.meta_hidden)

    def adapt(self, support: Batch) -> None:
        """Nothing per task: the user is its features, a new item its warmed embedding."""

    def predict(self, state: None, query: Batch) -> torch.Tensor:
        embedding = self.net.embedding(query["item"], query["user"])
        return self.net.base(query["user"], query["item"], embedding)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The cold loss (base model and ID embeddings only) plus the warm loss (meta networks
        only), every item of the batch warmed as if it were cold."""
        base = self.net.base
        item = torch.cat([batch["support_item"], batch["query_item"]], dim=1)
        rating = torch.cat([batch["support_rating"], batch["query_rating"]], dim=1)
        mask = torch.cat([batch["support_mask"], batch["query_mask"]], dim=1)
        warmed = self.net.warmed(item, batch["user"], base.item_id(item).detach())
        pred = functional_call(base, base.frozen(), (batch["user"], item, warmed))
        return base.warm_loss(batch, self.loss) + self.loss(pred, rating, mask).mean()
