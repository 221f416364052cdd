"""R2-D2 (Bertinetto et al., ICLR 2019) for ratings: the output layer is solved in closed form.

Each task fits a ridge regression from the network's last hidden features to the support
ratings; the rest of the network is meta-learned through that differentiable solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarec.config.domain import POSITIVE, setting
from metarec.config.schema import LearnerConfig
from metarec.data.batch import Batch
from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS


@dataclass
class RidgeSettings(LearnerConfig):
    ridge_l2: float = setting(1.0, "ridge penalty of the per-task output layer", domain=POSITIVE)


@LEARNERS.register("ridge")
class Ridge(MetaLearner):
    """Per-task ridge regression on the last hidden layer (plus a bias), solved exactly."""

    Settings = RidgeSettings

    def features(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """The network's last hidden layer for (user, item) pairs, with a constant 1 appended."""
        hidden = self.net.features(user.unsqueeze(-1), item)
        return torch.cat([hidden, torch.ones_like(hidden[..., :1])], dim=-1)

    def adapt(self, support: Batch) -> torch.Tensor:
        x = self.features(support["user"], support["item"]) * support["mask"].unsqueeze(-1)
        # Ridge around the global output layer: solve for the offset from it.
        head = self.net.head
        prior = torch.cat([head.weight[0], head.bias])
        residual = (support["rating"] - x @ prior) * support["mask"]
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        gram = x.transpose(1, 2) @ x + self.cfg.ridge_l2 * eye
        offset = torch.linalg.solve(gram, (x.transpose(1, 2) @ residual.unsqueeze(-1)))
        return prior + offset.squeeze(-1)  # (tasks, hidden + 1)

    def predict(self, weights: torch.Tensor, query: Batch) -> torch.Tensor:
        x = self.features(query["user"], query["item"])
        return (x @ weights.unsqueeze(-1)).squeeze(-1)
