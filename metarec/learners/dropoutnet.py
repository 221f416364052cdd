"""DropoutNet (Volkovs, Yu and Poutanen, "DropoutNet: Addressing Cold Start in Recommender
Systems", NeurIPS 2017): preference and content inputs through deep user and item towers, the
item's preference input dropped at random in training, so content alone serves new items.

The paper's model (Sect. 3; written out here, not numbered as in the paper), with
``U_u, V_v`` the preference (latent) vectors and ``Phi_u, Phi_v`` the content:

    s_uv = f_U(U_u, Phi_u) . f_V(V_v, Phi_v)          towers' outputs, dot product
    input dropout: V_v := 0 with probability p        (Sect. 3, "input dropout")

so at inference an item with no preference vector (``V_v = 0``) is scored from ``Phi_v`` alone.

Adapted to metarec's tasks:

- ``V_v`` is a learned item-ID embedding (:class:`PreferenceTable`); an item never rated in
  meta-training has none and reads 0, which input dropout trained the item tower to expect.
  ``Phi_v`` are the item's feature embeddings (with ``item.text``, its text embedding).
- Every task's user is new: ``U_u`` is folded in from the support set by ridge regression of
  the support ratings, less the mean, on ``[1, f_V(V_v, Phi_v)]`` of the support items
  (:func:`fold_in`): the rating analogue of the paper's transform of a new user into the mean
  preference vector of the items they interacted with. It is solved against the item tower's
  outputs, not ``V_v``, because support items may themselves be new (``V_v = 0``).
- The paper regresses the dot product on a pre-trained MF's scores ``U_u . V_v``; here there
  is no pre-trained MF, so the towers and ``V_v`` learn from the ratings themselves (query loss
  after the fold-in). A rating is ``mu + f_U . [1, f_V]`` (``mu``: the meta-training mean; on
  likes, a sigmoid of ``logit(mu) + f_U . [1, f_V]``).

Differences from the authors' code (layer6ai-labs/DropoutNet, ``torch/main.py``): it zeroes
exactly ``floor(p * batch)`` user and item preference rows per batch; here each item occurrence
is dropped independently with probability ``dropout`` (the paper's Bernoulli input dropout) and
users never are (each has a support set to be folded in from). Its towers are tanh layers with
batch norm; here tanh layers without it, since batch statistics would mix a meta-batch's tasks
and differ between training and evaluation. Its targets are WMF scores of each user's top and
random items, not ratings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import AT_LEAST_ONE, POSITIVE, Range, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.encoders.features import FeatureEmbedding
from metarec.learners.base import MetaLearner
from metarec.learners.foldin import fold_in, rated_items, with_bias
from metarec.registry import LEARNERS

PROBABILITY = Range(0, 1)  # 1 is allowed: every preference input dropped, content alone


def tanh_tower(width: int, hidden: list[int], out: int) -> nn.Sequential:
    """``Linear -> tanh`` per width in ``hidden``, then a linear layer to ``out``."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.Tanh()]
        width = size
    return nn.Sequential(*layers, nn.Linear(width, out))


class PreferenceTable(nn.Module):
    """Items' learned preference vectors; items unseen in meta-training (new items) read 0."""

    def __init__(self, seen: torch.Tensor, factors: int, init_std: float):
        super().__init__()
        self.register_buffer("seen", seen)
        self.vectors = nn.Embedding(len(seen), factors)
        nn.init.normal_(self.vectors.weight, std=init_std)

    def forward(self, item: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Vectors ``item.shape + (factors,)``; 0 for new items and where ``keep`` is False."""
        present = self.seen[item] if keep is None else self.seen[item] & keep
        return self.vectors(item) * present.unsqueeze(-1).to(self.vectors.weight.dtype)


class RatingScale(nn.Module):
    """Scores around the meta-training mean ``mu``: ``mu + score``, or on likes
    ``sigmoid(logit(mu) + score)``; the fold-in's residuals are ratings less ``mu``."""

    def __init__(self, tasks: ColdStartTasks):
        super().__init__()
        mean = float(tasks.train_ratings()[1].mean())
        self.binary = tasks.dataset.binary
        rate = min(max(mean, 1e-3), 1 - 1e-3)
        offset = math.log(rate / (1 - rate)) if self.binary else mean
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("offset", torch.tensor(offset))

    def forward(self, score: torch.Tensor) -> torch.Tensor:
        out = self.offset + score
        return torch.sigmoid(out) if self.binary else out


@dataclass
class DropoutNetSettings(LearnerConfig):
    """Sizes of DropoutNet's towers, its input dropout and the user fold-in."""

    factors: int = setting(
        16, "size of the item preference vectors and of the towers' outputs", domain=AT_LEAST_ONE
    )
    dropout: float = setting(
        0.5,
        "probability that an item's preference input is set to 0 in meta-training",
        domain=PROBABILITY,
    )
    ridge_l2: float = setting(
        1.0, "ridge penalty of each task's user folded in from its support set", domain=POSITIVE
    )
    init_std: float = setting(0.1, "std of the initial item preference vectors", domain=POSITIVE)


class DropoutNetTowers(nn.Module):
    """``f_V([V_v, Phi_v])`` (factors) and ``f_U([U_u, Phi_u])`` (1 + factors), tanh layers
    of ``model.hidden`` widths."""

    def __init__(self, tasks: ColdStartTasks, model: ModelConfig, settings: DropoutNetSettings):
        super().__init__()
        dataset, factors = tasks.dataset, settings.factors
        self.scale, self.dropout = RatingScale(tasks), settings.dropout
        self.preference = PreferenceTable(rated_items(tasks)[0] > 0, factors, settings.init_std)
        self.item_content = FeatureEmbedding(dataset.items, model.embedding_dim)
        self.user_content = FeatureEmbedding(dataset.users, model.embedding_dim)
        self.item_tower = tanh_tower(factors + self.item_content.out_dim, model.hidden, factors)
        width = 1 + factors + self.user_content.out_dim
        self.user_tower = tanh_tower(width, model.hidden, 1 + factors)

    def items(self, item: torch.Tensor, training: bool) -> torch.Tensor:
        """``f_V`` of item rows; in training each preference input is dropped with
        probability ``dropout``."""
        keep = torch.rand(item.shape, device=item.device) >= self.dropout if training else None
        joined = torch.cat([self.preference(item, keep), self.item_content(item)], -1)
        return self.item_tower(joined)

    def fold_basis(self, item: torch.Tensor, training: bool) -> torch.Tensor:
        """What a user is folded in against: the item tower's outputs."""
        return self.items(item, training)

    def user(self, user: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
        """``f_U`` of each task's user row (T,) and folded-in preference (T, 1 + factors)."""
        return self.user_tower(torch.cat([preference, self.user_content(user)], -1))


class FoldInTowers(MetaLearner):
    """A task's user folded in from its support set (:func:`fold_in` on ``net.fold_basis``),
    through ``net.user``; a rating is ``net.scale(user . [1, net.items])``. Not registered:
    DropoutNet and Heater share it, their networks differing."""

    def adapt(self, support: Batch) -> torch.Tensor:
        """Each task's user vector (T, 1 + factors)."""
        basis = self.net.fold_basis(support["item"], self.training)
        residual = support["rating"] - self.net.scale.mean
        preference = fold_in(with_bias(basis), residual, support["mask"], self.cfg.ridge_l2)
        return self.net.user(support["user"], preference)

    def predict(self, user: torch.Tensor, query: Batch) -> torch.Tensor:
        items = self.net.items(query["item"], self.training)
        items = torch.cat([torch.ones_like(items[..., :1]), items], -1)
        return self.net.scale((items @ user.unsqueeze(-1)).squeeze(-1))


@LEARNERS.register("dropoutnet")
class DropoutNet(FoldInTowers):
    """Preference + content towers, items' preference inputs dropped in training."""

    Settings = DropoutNetSettings

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: DropoutNetSettings
    ) -> nn.Module:
        return DropoutNetTowers(tasks, model, settings)
