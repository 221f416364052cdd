"""A new user folded in from the task's support set: the ridge solution of the support ratings
(less a mean) on the support items' vectors and a constant, one batched solve for every task.
What MF and the content-based cold-start learners (DropoutNet, Heater, CLCRec, ALDI) share:
which item rows meta-training rated (the others are the new items), and item biases and
factors that read zero on those."""

from __future__ import annotations

import torch
from torch import nn

from metarec.data.scenarios import ColdStartTasks


def with_bias(vectors: torch.Tensor) -> torch.Tensor:
    """``[1, v]``: the constant the folded-in user bias reads, then the vector."""
    return torch.cat([torch.ones_like(vectors[..., :1]), vectors], dim=-1)


def fold_in(
    features: torch.Tensor, residual: torch.Tensor, mask: torch.Tensor, l2: float
) -> torch.Tensor:
    """Each task's ridge solution ``w`` (T, k) of ``residual ~ features . w`` over its
    unmasked support entries; ``features`` (T, S, k) (with :func:`with_bias`'s constant),
    ``residual`` and ``mask`` (T, S)."""
    weight = mask.to(features.dtype)
    features = features * weight.unsqueeze(-1)
    eye = torch.eye(features.shape[-1], dtype=features.dtype, device=features.device)
    gram = features.mT @ features + l2 * eye
    return torch.linalg.solve(gram, features.mT @ (residual * weight).unsqueeze(-1)).squeeze(-1)


def rated_items(tasks: ColdStartTasks) -> tuple[torch.Tensor, float]:
    """How often meta-training rated each item row (0: a new item), and its mean rating."""
    items, ratings = tasks.train_ratings()
    count = torch.bincount(items, minlength=len(tasks.dataset.items)).float()
    return count, float(ratings.mean())


class ItemFactors(nn.Module):
    """Item biases and factors over item rows; rows unseen in meta-training read as zero."""

    def __init__(
        self,
        seen: torch.Tensor,
        item_offset: torch.Tensor,
        rating_mean: float,
        factors: int,
        init_std: float,
    ):
        """Small random factors, biases at the item means' offsets; unseen items' rows zero."""
        super().__init__()
        self.register_buffer("seen", seen)
        self.register_buffer("rating_mean", torch.tensor(rating_mean))
        self.factors = nn.Embedding(len(seen), factors)
        self.bias = nn.Embedding(len(seen), 1)
        nn.init.normal_(self.factors.weight, std=init_std)  # all-zero factors are a saddle
        with torch.no_grad():
            self.bias.weight.copy_(item_offset.unsqueeze(-1))
            self.factors.weight[~self.seen] = 0.0
            self.bias.weight[~self.seen] = 0.0

    def forward(self, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``item`` rows of any shape -> biases ``item.shape``, features ``item.shape + (1+k,)``.

        The features are ``[1, q_i]``, so ``features @ [b_u, p_u]`` is the user's part.
        """
        seen = self.seen[item].to(self.factors.weight.dtype)
        factors = self.factors(item) * seen.unsqueeze(-1)
        features = torch.cat([torch.ones_like(factors[..., :1]), factors], dim=-1)
        return self.bias(item).squeeze(-1) * seen, features
