"""The MetaLearner LightningModule: the learner contract, and the steps every learner shares.

A learner implements ``adapt(support) -> state`` and ``predict(state, query) -> ratings`` over a
batch of tasks. ``predict`` never receives query ratings, so no learner can read them while
adapting. The training step, the optimiser and the Lightning hooks are here; scoring is the
evaluator's (``evaluator.py``), and learning residuals a wrapper's (``residual.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import nn

from metarec.config.schema import LearnerConfig, ModelConfig, TaskConfig
from metarec.data.batch import Batch, length_groups, query_of, support_of, take_tasks
from metarec.data.scenarios import ColdStartTasks
from metarec.distributed import share_of_meta_batch
from metarec.encoders.network import MeLUNet
from metarec.errors import TrainingDiverged
from metarec.learners.evaluator import Evaluator, learning_rates
from metarec.learners.losses import task_loss
from metarec.learners.residual import Residuals
from metarec.metrics.evaluate import Scoring, flat_metrics, metric_key


def adam(params, lr: float) -> torch.optim.Adam:
    """Adam over ``params``: torch's fused kernel where it has one for every parameter (floating
    point on the CPU or CUDA), one pass per tensor in place of about ten elementwise ops over
    each (a recommender's embedding tables are most of its weights, each updated whole at
    every step); the same update to within rounding."""
    params = list(params)
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


@dataclass
class LearnerContext:
    """What a learner is made with: the ``net`` it adapts (its ``build_network``'s), its
    ``settings`` (``learner.*``), what the tasks predict (``task.*``: with ``target: like``
    targets are 0/1, predictions like probabilities, trained with cross-entropy), the rating
    ``levels`` the metrics round to (``tasks.rating_levels()``), how the tasks are scored, and
    the baseline whose residuals it learns (``learner.residual``), if any."""

    net: nn.Module
    settings: LearnerConfig
    task: TaskConfig = field(default_factory=TaskConfig)
    levels: torch.Tensor | None = None
    scoring: Scoring = field(default_factory=Scoring)
    residual: Residuals | None = None


class MetaLearner(L.LightningModule, ABC):
    """Base class; subclasses implement :meth:`adapt` and :meth:`predict` (a class missing
    either cannot be made: ``TypeError``) and register with ``@LEARNERS.register(name)``.

    ``Settings`` is the learner's config dataclass (``learner.*`` in the YAML), extending
    ``LearnerConfig``; the learner reads them as ``self.cfg``. ``build_network`` makes the
    network it adapts (MeLU's by default), ``self.net``; ``self.loss`` is the per-task loss of
    the tasks' target. A learner may override :meth:`training_loss`. ``units`` lists the task
    units (``task.unit``) it supports; ``reads_item_text`` says whether ``item.text`` can
    change its predictions.
    """

    name = "base"
    Settings = LearnerConfig
    units: tuple[str, ...] = ("user", "item")
    reads_item_text = True  # False for ID-only models, which have no item features to join
    needs_item_text = False  # True for learners of item text alone (config load checks both)
    # Cost of one more adaptation pass, in padded support ratings (see ``length_groups``;
    # measured on MeLU's network, 2 CPU threads); 0 adapts the whole batch at once.
    group_overhead = 600.0

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: LearnerConfig
    ) -> nn.Module:
        """The network this learner adapts: MeLU's, output bias at the training mean rating.

        ``tasks`` gives the dataset and the meta-training ratings, never the test tasks' labels;
        ``settings`` are the learner's own, for networks sized by them.
        """
        _, ratings = tasks.train_ratings()
        mean = 0.0 if getattr(settings, "residual", False) else float(ratings.mean())
        return MeLUNet(tasks.dataset, model, rating_mean=mean)  # residuals start at 0

    def __init__(self, context: LearnerContext):
        super().__init__()
        self.net = context.net
        self.cfg = context.settings
        self.task = context.task
        self.residual = context.residual
        self.binary = self.task.target == "like"
        self.loss = task_loss(self.task.target)  # per-task loss: (pred, target, mask) -> (T,)
        self.evaluator = Evaluator(context.task, context.levels, context.scoring)

    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> MetaLearner:  # type: ignore[override]
        """Not this way: a metarec checkpoint holds a run config, from which
        ``metarec.api.load_learner(path)`` rebuilds the learner and its network."""
        raise TypeError(f"load a {cls.__name__} checkpoint with metarec.api.load_learner(path)")

    # -- what a learner implements ------------------------------------------------------------
    @abstractmethod
    def adapt(self, support: Batch) -> Any:
        """Adapt to each task of the batch from its support set; returns a per-task state."""

    @abstractmethod
    def predict(self, state: Any, query: Batch) -> torch.Tensor:
        """Predicted ratings (tasks, query) from the adapted state; query ratings are absent."""

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The meta-training loss: query loss (MSE or cross-entropy) after adapting on the
        support set. Each task weighs the same, as in the metrics, whatever its query size.
        """
        return self.loss(self(batch), batch["query_rating"], batch["query_mask"]).mean()

    # -- shared machinery ---------------------------------------------------------------------
    def forward(self, batch: Batch) -> torch.Tensor:
        """Query predictions of every task of ``batch``. Tasks are adapted in groups of similar
        support length, each padded only to its own longest (padding is masked, so the
        predictions are those of the whole padded batch, at a fraction of its cost)."""
        lengths = batch["support_mask"].sum(1)
        groups = length_groups(lengths, self.group_overhead) if self.group_overhead else []
        if len(groups) <= 1:
            pred = self.predict(self.adapt(support_of(batch)), query_of(batch))
        else:
            parts = []
            for index in groups:
                tasks = take_tasks(batch, index)
                parts.append(self.predict(self.adapt(support_of(tasks)), query_of(tasks)))
            pred = torch.cat(parts)[torch.argsort(torch.cat(groups))]
        return pred.clamp(0.0, 1.0) if self.binary else pred  # a probability for likes

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        return self.residual(batch) if self.residual is not None else batch

    @property
    def trainable(self) -> bool:
        """Whether there is anything to meta-train (a no-learning baseline has nothing)."""
        return any(p.requires_grad for p in self.parameters())

    def loss_count(self, batch: Batch) -> int | torch.Tensor:
        """How many units ``training_loss`` averages over (tasks); under several processes
        each rank's loss weighs by it, so the meta-gradient is the one-device one."""
        return len(batch["user"])

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop at once, with the settings to change, when the loss is no longer finite."""
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"meta-training diverged: train loss is {loss.item()} at epoch "
                f"{self.current_epoch}, step {self.global_step}; lower the learning rates "
                f"({learning_rates(self.cfg)})"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss, meta_batch_loss = share_of_meta_batch(
            self, self.training_loss(batch), self.loss_count(batch)
        )
        self.check_finite(meta_batch_loss)  # the same on every rank: all stop, or none
        self.log("train/loss", meta_batch_loss, prog_bar=True, batch_size=len(batch["user"]))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self.evaluator.add(self, batch, "val")

    def on_validation_epoch_end(self) -> None:
        for name, value in self.evaluator.summaries(self).get("val", {}).items():
            if name != "n_tasks":  # a count, not a metric (auc_n_tasks is kept in summary.json)
                prog_bar = name == self.evaluator.scoring.monitor
                self.log(metric_key("val", None, name), value, prog_bar=prog_bar)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluator.add(self, batch, self.trainer.datamodule.scenarios[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        self.evaluator.results = self.evaluator.summaries(self)
        for key, value in flat_metrics("test", self.evaluator.results).items():
            self.log(key, value, add_dataloader_idx=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), self.cfg.outer_lr)
