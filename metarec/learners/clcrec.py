"""CLCRec: contrastive learning for item cold start (Wei, Wang, Li, Nie, Li, Li, Chua,
"Contrastive Learning for Cold-Start Recommendation", ACM MM 2021).

An item has a collaborative embedding ``e_i`` (its ID; only items rated in meta-training have
one) and a content embedding ``c_i = f(x_i)``, a content encoder over its categorical features
(and, with ``item.text``, its text). Training maximises the mutual information between the
two with InfoNCE losses at temperature ``tau``:

- R-E (representation contrast): ``L_RE = -mean_i log softmax_j(cos(e_i, c_j) / tau)[i]``,
  the batch's other items ``j`` the negatives;
- U-I (user-item contrast): ``L_UI = -mean_(u,i) log exp(s_ui) / (exp(s_ui) + sum_j exp(s_uj))``,
  ``s_uj = p_u . v_j / tau``, ``v_j`` the item's collaborative embedding, replaced by its content
  embedding at rate ``content_rate`` so that the user side also learns to read content;

combined as ``lam * L_RE + (1 - lam) * L_UI`` (the authors' ``lr_lambda``). A new item is
represented by its content embedding ``c_i``, a warm one by ``e_i``.

Adaptation to metarec: every task is a user nobody has seen, so the user vector ``p_u`` (with a
bias) is folded in from the support set by ridge regression on the items' representations, as
in ``baselines/mf.py``; a prediction is ``mu + [1, v_i] . [b_u, p_u]``. A task's positives in
U-I are its query items rated at least its mean support rating (likes, with ``task.target``
like); its negatives are the other tasks' query items in the meta-batch. The contrastive
losses, weighted by ``contrast_weight``, are added to the query rating loss after fold-in,
since metarec scores ratings, which a pure ranking loss does not calibrate.

Differences from the authors' code (weiyinwei/CLCRec, as ported in YuanchenBei/ColdRec):
their users have ID embeddings and U-I samples ``num_neg`` random negatives per interaction;
here users are folded in and the negatives are in-batch. Their U-I replaces a random subset of
rows drawn with replacement; here each entry is replaced independently at ``content_rate``.
Their content encoder is a 2-layer MLP over dense features; here it is ``FeatureEmbedding``
followed by ReLU layers of ``model.hidden`` widths. No L2 penalty on the embeddings' norms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Range, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch, query_of, support_of
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import FeatureTable
from metarec.encoders.features import FeatureEmbedding
from metarec.encoders.network import relu_layers
from metarec.learners.base import MetaLearner
from metarec.learners.foldin import fold_in, rated_items, with_bias
from metarec.registry import LEARNERS


class ContentEncoder(nn.Module):
    """An item's content -> a vector: its feature (and text) embeddings -> ReLU layers -> linear."""

    def __init__(self, items: FeatureTable, model: ModelConfig, out_dim: int):
        super().__init__()
        self.features = FeatureEmbedding(items, model.embedding_dim)
        layers, width = relu_layers(self.features.out_dim, model.hidden)
        self.layers = nn.Sequential(*layers, nn.Linear(width, out_dim))

    def forward(self, item: torch.Tensor) -> torch.Tensor:
        """``item`` rows of any shape -> ``item.shape + (out_dim,)``."""
        return self.layers(self.features(item))


def info_nce(anchor: torch.Tensor, candidates: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over ``i`` of ``-log softmax_j(cos(anchor_i, candidates_j) / tau)[i]``."""
    logits = F.normalize(anchor, dim=-1) @ F.normalize(candidates, dim=-1).T / tau
    return F.cross_entropy(logits, torch.arange(len(anchor), device=anchor.device))


def user_item_nce(
    user: torch.Tensor, items: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor, tau: float
) -> torch.Tensor:
    """U-I InfoNCE: users (T, k), items (T, Q, k) of each task's query, ``positive`` and
    ``valid`` (T, Q). Each positive (t, i) is contrasted with every valid item of the other
    tasks; the mean over positives (0 when there is none)."""
    tasks, width = items.shape[0], items.shape[1]
    score = user @ items.reshape(-1, items.shape[-1]).T / tau  # (T, T * Q)
    task = torch.arange(tasks, device=user.device)
    negative = valid.reshape(1, -1) & (task.unsqueeze(1) != task.repeat_interleave(width))
    # The lowest finite value, not -inf: a task with no negatives gets loss 0, not NaN.
    negative_lse = score.masked_fill(~negative, torch.finfo(score.dtype).min).logsumexp(-1)
    own = score.view(tasks, tasks, width)[task, task]  # (T, Q)
    loss = torch.logaddexp(own, negative_lse.unsqueeze(-1)) - own
    return torch.where(positive, loss, 0.0).sum() / positive.sum().clamp(min=1)


WEIGHT = Range(0, 1)  # a share, either end included


class CLCRecNet(nn.Module):
    """Collaborative (ID) item embeddings and the content encoder; ``forward`` gives each
    item's representation: its ID embedding when meta-training rated it, else its content."""

    def __init__(self, tasks: ColdStartTasks, model: ModelConfig, settings: CLCRecSettings):
        super().__init__()
        count, mean = rated_items(tasks)
        seen = count > 0
        self.register_buffer("seen", seen)
        self.rating_mean = 0.0 if settings.residual else mean
        self.collaborative = nn.Embedding(len(seen), settings.factors)
        nn.init.normal_(self.collaborative.weight, std=settings.init_std)
        self.content = ContentEncoder(tasks.dataset.items, model, settings.factors)

    def forward(self, item: torch.Tensor) -> torch.Tensor:
        seen = self.seen[item].unsqueeze(-1)
        return torch.where(seen, self.collaborative(item), self.content(item))


@dataclass
class CLCRecSettings(LearnerConfig):
    """Sizes, temperature and weights of CLCRec's two contrastive losses."""

    factors: int = setting(16, "size of the item and user embeddings", domain=AT_LEAST_ONE)
    tau: float = setting(0.5, "InfoNCE temperature of both contrasts", domain=POSITIVE)
    lam: float = setting(0.5, "weight of R-E against U-I (1 - lam)", domain=WEIGHT)
    content_rate: float = setting(
        0.5, "share of U-I items represented by their content embedding", domain=WEIGHT
    )
    contrast_weight: float = setting(
        1.0, "weight of the contrastive losses beside the rating loss", domain=NON_NEGATIVE
    )
    ridge_l2: float = setting(
        3.0, "ridge penalty on the folded-in user bias and vector", domain=NON_NEGATIVE
    )
    init_std: float = setting(0.1, "std of the initial ID embeddings", domain=POSITIVE)
    outer_lr: float = setting(1e-2, "Adam learning rate of every weight", domain=POSITIVE)


@LEARNERS.register("clcrec")
class CLCRec(MetaLearner):
    """Each task's user is folded in on item representations; new items read their content."""

    Settings = CLCRecSettings
    units = ("user",)  # its contrasts are between a user and items

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: CLCRecSettings
    ) -> nn.Module:
        return CLCRecNet(tasks, model, settings)

    def adapt(self, support: Batch) -> torch.Tensor:
        """Per task ``[b_u, p_u]`` (T, 1 + k), ridge regression on its support ratings."""
        features = with_bias(self.net(support["item"]))
        residual = support["rating"] - self.net.rating_mean
        return fold_in(features, residual, support["mask"], self.cfg.ridge_l2)

    def predict(self, user: torch.Tensor, query: Batch) -> torch.Tensor:
        features = with_bias(self.net(query["item"]))
        return self.net.rating_mean + (features @ user.unsqueeze(-1)).squeeze(-1)

    def contrastive_loss(self, batch: Batch, user: torch.Tensor) -> torch.Tensor:
        """``lam * L_RE + (1 - lam) * L_UI`` on the meta-batch, ``user`` its folded-in users."""
        items = torch.cat([batch["support_item"], batch["query_item"]], 1)
        mask = torch.cat([batch["support_mask"], batch["query_mask"]], 1)
        warm = items[mask & self.net.seen[items]].unique()  # duplicates would be negatives
        representation = info_nce(
            self.net.collaborative(warm), self.net.content(warm), self.cfg.tau
        )
        query = batch["query_item"]
        replaced = torch.rand(query.shape, device=query.device) < self.cfg.content_rate
        vectors = torch.where(
            replaced.unsqueeze(-1), self.net.content(query), self.net.collaborative(query)
        )
        support_mask = batch["support_mask"].to(batch["support_rating"].dtype)
        mean = (batch["support_rating"] * support_mask).sum(1) / support_mask.sum(1).clamp(min=1)
        positive = batch["query_mask"] & (batch["query_rating"] >= mean.unsqueeze(-1))
        user_item = user_item_nce(user[:, 1:], vectors, positive, batch["query_mask"], self.cfg.tau)
        return self.cfg.lam * representation + (1 - self.cfg.lam) * user_item

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """Query loss after fold-in plus ``contrast_weight`` times the contrastive losses."""
        user = self.adapt(support_of(batch))
        pred = self.predict(user, query_of(batch))
        pred = pred.clamp(0.0, 1.0) if self.binary else pred
        rating = self.loss(pred, batch["query_rating"], batch["query_mask"]).mean()
        return rating + self.cfg.contrast_weight * self.contrastive_loss(batch, user)
