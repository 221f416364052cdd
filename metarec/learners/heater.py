"""Heater (Zhu, Sefati, Saadatpanah and Caverlee, "Recommendation for New Users and New Items
via Randomized Training and Mixture-of-Experts Transformation", SIGIR 2020), for new items.

An item's content ``x_i`` is carried into the collaborative space by a mixture of experts,
pulled toward the item's collaborative embedding ``Q_i`` by a similarity (alignment) loss, and
in training randomly stands in for ``Q_i``, so that the towers reading it learn to serve items
that have content only (Sect. 3; equations as we number them here):

    (1) Qhat_i = sum_t g_t(x_i) E_t(x_i),  g(x_i) = softmax(W_g x_i)    mixture of experts
    (2) Qtil_i = Qhat_i with probability p, else Q_i (items seen in training);
        Qtil_i = Qhat_i for new items                                   randomized training
    (3) L_s = alpha * mean_i ||Qhat_i - Q_i||^2 over the batch's seen items    similarity
    (4) V_i = f_V(Qtil_i), U_u = f_U(P_u), s_ui = U_u . V_i,  L = L_pred + L_s

Adapted to metarec's tasks:

- ``Q_i`` is a learned item-ID embedding (``PreferenceTable``, zero for new items), trained
  jointly rather than pre-trained by BPR-MF; ``x_i`` are the item's feature embeddings (with
  ``item.text``, its text embedding). ``Q_i`` is a fixed target in the paper, so it enters
  (3) detached: the alignment moves the content transformation, not ``Q_i``.
- Every task's user is new: ``P_u`` is folded in from the support set by ridge regression of
  the support ratings, less the mean, on ``[1, Qtil_i]`` (DropoutNet's ``fold_in``), and a
  rating is ``mu + U_u . [1, V_i]`` (on likes, a sigmoid around ``logit(mu)``). ``L_pred`` is
  the query loss after the fold-in (MSE on ratings, cross-entropy on likes), not the MSE to
  pre-trained MF scores. The paper's user-side content path (for users with no interactions)
  is not built: every metarec task has a support set to fold its user in from.

Differences from the authors' code (Zziwei/Heater--Cold-Start-Recommendation, ``model.py``):
its gate is ``tanh(W_g x)``, whose weights neither are positive nor sum to 1; here the paper's
softmax. Its experts end in tanh and the mixture goes through one more tanh; here (1) holds as
written. Its ``f_U, f_V`` use batch norm (here none: batch statistics would mix a meta-batch's
tasks), and it sums (3) over the batch (here a mean, so ``alignment`` does not scale with the
batch size). It also adds an L2 penalty on every weight; here none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.distributed import rank_share
from metarec.encoders.features import FeatureEmbedding
from metarec.learners.dropoutnet import (
    PROBABILITY,
    FoldInTowers,
    PreferenceTable,
    RatingScale,
    tanh_tower,
)
from metarec.learners.foldin import rated_items
from metarec.registry import LEARNERS

Sum = tuple[torch.Tensor, torch.Tensor]  # a sum over entries, and how many entries


@dataclass
class HeaterSettings(LearnerConfig):
    """Sizes of Heater's mixture of experts and towers, its randomized training, its
    similarity loss and the user fold-in."""

    factors: int = setting(
        16, "size of the collaborative embeddings and of the towers' outputs", domain=AT_LEAST_ONE
    )
    experts: int = setting(5, "experts in the content transformation", domain=AT_LEAST_ONE)
    content_rate: float = setting(
        0.5,
        "probability that a seen item's collaborative embedding is replaced by its transformed "
        "content in meta-training (randomized training)",
        domain=PROBABILITY,
    )
    alignment: float = setting(
        1.0,
        "weight of the similarity loss between transformed content and collaborative embedding",
        domain=NON_NEGATIVE,
    )
    ridge_l2: float = setting(
        1.0, "ridge penalty of each task's user folded in from its support set", domain=POSITIVE
    )
    init_std: float = setting(
        0.1, "std of the initial collaborative item embeddings", domain=POSITIVE
    )


class MixtureOfExperts(nn.Module):
    """(1): ``sum_t softmax(W_g x)_t E_t(x)``, each expert ``E_t`` tanh layers of ``hidden``
    widths and a linear output of ``out``."""

    def __init__(self, width: int, hidden: list[int], out: int, experts: int):
        super().__init__()
        self.gate = nn.Linear(width, experts)
        self.experts = nn.ModuleList(tanh_tower(width, hidden, out) for _ in range(experts))

    def gates(self, content: torch.Tensor) -> torch.Tensor:
        """Each expert's weight ``content.shape[:-1] + (experts,)``: positive, summing to 1."""
        return self.gate(content).softmax(-1)

    def forward(self, content: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([expert(content) for expert in self.experts], -1)  # (..., out, E)
        return (outputs @ self.gates(content).unsqueeze(-1)).squeeze(-1)


class HeaterTowers(nn.Module):
    """Collaborative item embeddings, the content transformation, and ``f_U, f_V``."""

    def __init__(self, tasks: ColdStartTasks, model: ModelConfig, settings: HeaterSettings):
        super().__init__()
        factors = settings.factors
        self.scale, self.content_rate = RatingScale(tasks), settings.content_rate
        self.collaborative = PreferenceTable(rated_items(tasks)[0] > 0, factors, settings.init_std)
        self.item_content = FeatureEmbedding(tasks.dataset.items, model.embedding_dim)
        width = self.item_content.out_dim
        self.transform = MixtureOfExperts(width, model.hidden, factors, settings.experts)
        self.item_tower = tanh_tower(factors, model.hidden, factors)
        self.user_tower = tanh_tower(1 + factors, model.hidden, 1 + factors)

    def uses_content(self, item: torch.Tensor, training: bool) -> torch.Tensor:
        """(2): which item rows read ``Qhat``: new items always, seen ones in training with
        probability ``content_rate``."""
        new = ~self.collaborative.seen[item]
        if not training:
            return new
        return new | (torch.rand(item.shape, device=item.device) < self.content_rate)

    def fold_basis(self, item: torch.Tensor, training: bool) -> torch.Tensor:
        """(2): ``Qtil`` of item rows, what a user is folded in against."""
        content = self.uses_content(item, training).unsqueeze(-1)
        transformed = self.transform(self.item_content(item))
        return torch.where(content, transformed, self.collaborative(item))

    def items(self, item: torch.Tensor, training: bool) -> torch.Tensor:
        """(4): ``V_i = f_V(Qtil_i)``."""
        return self.item_tower(self.fold_basis(item, training))

    def user(self, user: torch.Tensor, preference: torch.Tensor) -> torch.Tensor:
        """(4): ``U_u = f_U(P_u)``, the folded-in ``P_u`` (T, 1 + factors)."""
        return self.user_tower(preference)

    def alignment(self, item: torch.Tensor, mask: torch.Tensor) -> Sum:
        """(3) before its weight and mean: the sum of ``||Qhat_i - Q_i||^2`` over the
        unmasked entries of seen items (``Q_i`` a fixed target), and how many there are."""
        gap = self.transform(self.item_content(item)) - self.collaborative(item).detach()
        counted = (mask & self.collaborative.seen[item]).to(gap.dtype)
        return ((gap**2).sum(-1) * counted).sum(), counted.sum()


@LEARNERS.register("heater")
class Heater(FoldInTowers):
    """Content transformed by a mixture of experts, randomly standing in for the collaborative
    item embedding in training, and aligned with it."""

    Settings = HeaterSettings

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: HeaterSettings
    ) -> nn.Module:
        return HeaterTowers(tasks, model, settings)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """(4): the query loss after the fold-in, plus ``alignment`` times (3) over the
        items the meta-batch rated."""
        items = torch.cat([batch["support_item"], batch["query_item"]], dim=1)
        mask = torch.cat([batch["support_mask"], batch["query_mask"]], dim=1)
        total, count = self.net.alignment(items, mask)
        # A mean over this rank's ratings: under several processes it weighs by their share
        # (the loss weighs by the share of tasks, ``loss_count``).
        share = rank_share(self, count) / rank_share(self, len(mask))
        similarity = total / count.clamp(min=1) * share
        return super().training_loss(batch) + self.cfg.alignment * similarity
