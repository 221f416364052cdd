"""Text similarity, no training: what the item descriptions alone say about a user's taste.

A user is the rating-weighted mean of the text embeddings of their support items (weights
centred on the user's mean rating, so a disliked item pushes the profile away from it); a query
item scores the cosine similarity of its embedding to that profile. Scores become ratings by a
per-task least-squares line through the support set's (similarity, rating) pairs, its slope
kept >= 0, so the ranking of the query items is the ranking by similarity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.errors import ConfigError
from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS


class ItemTexts(nn.Module):
    """Unit-length text embeddings of the item rows, as a buffer; no weights."""

    def __init__(self, text: torch.Tensor, scale: tuple[float, float]):
        super().__init__()
        self.register_buffer("text", nn.functional.normalize(text.float(), dim=-1))
        self.rating_scale = tuple(scale)


@dataclass
class TextSimSettings(LearnerConfig):
    """Text similarity has one choice: how support ratings weigh the profile."""

    center: bool = setting(True, "weigh support items by rating minus the user's mean rating")


@LEARNERS.register("textsim")
class TextSim(MetaLearner):
    """Cosine similarity of item texts to the user's rating-weighted text profile."""

    Settings = TextSimSettings
    units = ("user",)
    needs_item_text = True

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: TextSimSettings
    ) -> nn.Module:
        text = tasks.dataset.items.text
        if text is None:
            raise ConfigError(
                "key 'item.text': textsim needs the item text embeddings; set item.text=replace"
            )
        return ItemTexts(torch.as_tensor(text), tasks.dataset.rating_scale)

    def similarity(self, profile: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Cosine of each item's text (tasks, n) to its task's profile (tasks, dim)."""
        return (self.net.text[item] @ profile.unsqueeze(-1)).squeeze(-1)

    def adapt(self, support: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = support["mask"].to(self.net.text.dtype)
        rating = support["rating"].to(mask.dtype)
        count = mask.sum(1, keepdim=True).clamp(min=1)
        mean_rating = (rating * mask).sum(1, keepdim=True) / count
        weight = (rating - mean_rating if self.cfg.center else rating) * mask
        profile = nn.functional.normalize(
            (weight.unsqueeze(-1) * self.net.text[support["item"]]).sum(1), dim=-1
        )
        sim = self.similarity(profile, support["item"])
        mean_sim = (sim * mask).sum(1, keepdim=True) / count
        centred = (sim - mean_sim) * mask
        slope = (centred * (rating - mean_rating)).sum(1, keepdim=True) / (
            (centred**2).sum(1, keepdim=True).clamp(min=1e-12)
        )
        line = torch.stack([mean_rating, mean_sim, slope.clamp(min=0.0)], dim=-1)
        return profile, line.squeeze(1), mask.sum(1)

    def predict(self, state, query: Batch) -> torch.Tensor:
        profile, line, _ = state
        mean_rating, mean_sim, slope = line.unbind(-1)
        sim = self.similarity(profile, query["item"])
        pred = mean_rating.unsqueeze(-1) + slope.unsqueeze(-1) * (sim - mean_sim.unsqueeze(-1))
        return pred.clamp(*self.net.rating_scale)
