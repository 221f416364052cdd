"""Mean-rating baselines: no learning, the floor every learner must beat.

``kind`` picks the predictor: ``global`` (the mean meta-training rating), ``user`` (the mean of
the task's support ratings), ``item`` (the item's mean meta-training rating, the global mean for
an item never rated there), ``bias`` (item mean plus the user's mean offset on the support
set; ``metarec.bias``, the strong simple baseline) or ``shrunk`` (``bias`` with the
item means shrunk toward the global mean and the offset toward 0 by pseudo-counts, picked on
the validation tasks when not set). Predictions are clamped to the rating scale and kept in
float64, as ``bias.py`` computes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from metarec.bias import item_means, pick_pseudo_counts, predict_bias
from metarec.config.domain import NON_NEGATIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.errors import ConfigError
from metarec.learners.base import MetaLearner
from metarec.metrics.evaluate import metric_key
from metarec.registry import LEARNERS

log = logging.getLogger(__name__)


class MeanRatings(nn.Module):
    """Item means and the global mean of the meta-training ratings, as buffers (no weights).

    For ``kind: shrunk`` the item means are the shrunk ones, and the two pseudo-counts are
    buffers too (``item_pseudo``, ``user_pseudo``), so a checkpoint keeps what was picked.
    """

    def __init__(
        self,
        item_mean: torch.Tensor,
        global_mean: torch.Tensor,
        scale: tuple,
        pseudo_counts: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.register_buffer("item_mean", item_mean)
        self.register_buffer("global_mean", global_mean)
        self.rating_scale = tuple(scale)
        if pseudo_counts is not None:  # only then, so other kinds keep their state_dict keys
            for name, value in zip(("item_pseudo", "user_pseudo"), pseudo_counts, strict=True):
                self.register_buffer(name, torch.tensor(value, dtype=torch.float64))


@dataclass
class MeanSettings(LearnerConfig):
    """Which mean predicts a rating."""

    kind: str = setting(
        "bias",
        "global (training mean) | user (support mean) | item (item mean) | bias (item + user) "
        "| shrunk (bias, shrunk by learner.item_pseudo and learner.user_pseudo)",
        choices=("global", "user", "item", "bias", "shrunk"),
    )
    item_pseudo: float | None = setting(
        None,
        "kind shrunk: ratings at the global mean added to each item's mean; null: picked on "
        "the validation tasks from metarec.bias.ITEM_PSEUDO_GRID",
        domain=NON_NEGATIVE,
    )
    user_pseudo: float | None = setting(
        None,
        "kind shrunk: ratings with no offset added to the user's support set; null: picked on "
        "the validation tasks from metarec.bias.USER_PSEUDO_GRID",
        domain=NON_NEGATIVE,
    )

    def __post_init__(self) -> None:
        for name in ("item_pseudo", "user_pseudo"):
            if getattr(self, name) is not None and self.kind != "shrunk":
                raise ValueError(
                    f"key 'learner.{name}': applies to learner.kind=shrunk, not {self.kind}"
                )


@LEARNERS.register("mean")
class Mean(MetaLearner):
    """Predicts a mean rating; the adapted state is the support set itself."""

    Settings = MeanSettings
    reads_item_text = False  # IDs only: no item features for a text to join

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: MeanSettings
    ) -> nn.Module:
        """Item and global means of the meta-training ratings, computed once; for ``shrunk``,
        the pseudo-counts not set are picked first, on the validation tasks."""
        items, ratings = tasks.train_ratings()
        n_items, scale = len(tasks.dataset.items), tasks.dataset.rating_scale
        global_mean = ratings.double().mean()
        if settings.kind != "shrunk":
            return MeanRatings(item_means(items, ratings, n_items), global_mean, scale)
        item_pseudo, user_pseudo = settings.item_pseudo, settings.user_pseudo
        if item_pseudo is None or user_pseudo is None:
            if len(tasks.val) == 0:
                raise ConfigError(
                    "learner.kind=shrunk picks learner.item_pseudo and learner.user_pseudo on "
                    "validation tasks, and there are none: set both, or data.val_fraction > 0"
                )
            grids = {} if item_pseudo is None else {"item_grid": (item_pseudo,)}
            grids |= {} if user_pseudo is None else {"user_grid": (user_pseudo,)}
            item_pseudo, user_pseudo, mae = pick_pseudo_counts(
                items, ratings, n_items, tasks.val, scale, **grids
            )
            log.info(
                "mean (shrunk): item_pseudo=%g, user_pseudo=%g, picked on %d validation tasks "
                "(MAE %.4f)",
                item_pseudo,
                user_pseudo,
                len(tasks.val),
                mae,
            )
        means = item_means(items, ratings, n_items, item_pseudo)
        return MeanRatings(means, global_mean, scale, (item_pseudo, user_pseudo))

    @property
    def chosen_item_pseudo(self) -> float | None:
        """The item pseudo-count of ``kind: shrunk`` (set or picked); None for other kinds."""
        return float(self.net.item_pseudo) if hasattr(self.net, "item_pseudo") else None

    @property
    def chosen_user_pseudo(self) -> float | None:
        """The user pseudo-count of ``kind: shrunk`` (set or picked); None for other kinds."""
        return float(self.net.user_pseudo) if hasattr(self.net, "user_pseudo") else None

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.chosen_item_pseudo is not None:  # so the run's summary.json records the pick
            self.log(metric_key("val", None, "item_pseudo"), self.chosen_item_pseudo)
            self.log(metric_key("val", None, "user_pseudo"), self.chosen_user_pseudo)

    def adapt(self, support: Batch) -> Batch:
        return support

    def predict(self, support: Batch, query: Batch) -> torch.Tensor:
        net, kind = self.net, self.cfg.kind
        if kind == "bias":  # bias.py's own function, so the numbers equal the bias baseline's
            return predict_bias(support, query["item"], net.item_mean, net.rating_scale)
        if kind == "shrunk":  # net.item_mean holds the shrunk means
            return predict_bias(
                support, query["item"], net.item_mean, net.rating_scale, net.user_pseudo
            )
        if kind == "item":
            pred = net.item_mean[query["item"]]
        elif kind == "user":
            mask = support["mask"].double()
            count = mask.sum(1, keepdim=True)
            total = (support["rating"].double() * mask).sum(1, keepdim=True)
            user_mean = torch.where(count > 0, total / count.clamp(min=1), net.global_mean)
            pred = user_mean.expand(query["item"].shape)
        else:
            pred = net.global_mean.expand(query["item"].shape)
        return pred.clamp(*net.rating_scale)
