"""The MetaLearner LightningModule: steps, logging, optimiser and evaluation for every learner.

A learner implements ``adapt(support) -> state`` and ``predict(state, query) -> ratings`` over a
batch of tasks. ``predict`` never receives query ratings, so no learner can read them while
adapting. Evaluation adapts on the support set, so it runs with gradients enabled.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.datamodule import SCENARIOS, ColdStartTasks
from metarec.encoders.network import MeLUNet
from metarec.learners.functional import masked_mse
from metarec.metrics import summarize, task_metrics

Batch = dict[str, torch.Tensor]


def whole_task(batch: Batch) -> Batch:
    """Support and query ratings of training tasks as one (masked) set, for learners that fit
    the whole task: Reptile's inner loop and the pooled baselines. Never used on test tasks."""
    return {
        "user": batch["user"],
        "item": torch.cat([batch["support_item"], batch["query_item"]], dim=1),
        "rating": torch.cat([batch["support_rating"], batch["query_rating"]], dim=1),
        "mask": torch.cat([batch["support_mask"], batch["query_mask"]], dim=1),
    }


class TrainingDiverged(FloatingPointError):
    """The meta-training loss stopped being finite; no number from such a run is reported."""


def support_of(batch: Batch) -> Batch:
    """The support half of a task batch: user, item, rating, mask."""
    return {
        "user": batch["user"],
        "item": batch["support_item"],
        "rating": batch["support_rating"],
        "mask": batch["support_mask"],
    }


def query_of(batch: Batch) -> Batch:
    """The query half of a task batch, without its ratings."""
    return {"user": batch["user"], "item": batch["query_item"], "mask": batch["query_mask"]}


class MetaLearner(L.LightningModule):
    """Base class; subclasses register with ``@LEARNERS.register(name)``.

    ``Settings`` is the learner's config dataclass (``learner.*`` in the YAML), extending
    ``LearnerConfig``. ``build_network`` makes the network it adapts (MeLU's by default).
    """

    name = "base"
    Settings = LearnerConfig

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: LearnerConfig
    ) -> nn.Module:
        """The network this learner adapts: MeLU's, output bias at the training mean rating.

        ``tasks`` gives the dataset and the meta-training ratings, never the test tasks' labels;
        ``settings`` are the learner's own, for networks sized by them.
        """
        _, ratings = tasks.train_ratings()
        return MeLUNet(tasks.dataset, model, rating_mean=float(ratings.mean()))

    def __init__(self, net: nn.Module, cfg: LearnerConfig):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}
        self.test_results: dict[str, dict[str, float | int]] = {}

    # -- what a learner implements ------------------------------------------------------------
    def adapt(self, support: Batch) -> Any:
        """Adapt to each task of the batch from its support set; returns a per-task state."""
        raise NotImplementedError

    def predict(self, state: Any, query: Batch) -> torch.Tensor:
        """Predicted ratings (tasks, query) from the adapted state; query ratings are absent."""
        raise NotImplementedError

    # -- shared machinery ---------------------------------------------------------------------
    def forward(self, batch: Batch) -> torch.Tensor:
        return self.predict(self.adapt(support_of(batch)), query_of(batch))

    @property
    def trainable(self) -> bool:
        """Whether there is anything to meta-train (a no-learning baseline has nothing)."""
        return any(p.requires_grad for p in self.parameters())

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The meta-training loss: query MSE after adapting on the support set.

        Each task weighs the same, as in the metrics, whatever its query size.
        """
        return masked_mse(self(batch), batch["query_rating"], batch["query_mask"]).mean()

    def _rates(self) -> str:
        return ", ".join(f"learner.{k}={v}" for k, v in vars(self.cfg).items() if "lr" in k)

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop at once, with the settings to change, when the loss is no longer finite."""
        if not torch.isfinite(loss):
            rates = self._rates()
            raise TrainingDiverged(
                f"meta-training diverged: train loss is {loss.item()} at epoch "
                f"{self.current_epoch}, step {self.global_step}; lower the learning rates "
                f"({rates})"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["user"]))
        return loss

    def _evaluate(self, batch: Batch, scenario: str) -> None:
        with torch.enable_grad():
            pred = self(batch).detach()
        if not torch.isfinite(pred).all():
            raise TrainingDiverged(
                f"{self.name}: predictions for '{scenario}' are not finite; adapting on the "
                f"support sets diverged, lower the adaptation learning rates ({self._rates()})"
            )
        metrics = task_metrics(pred, batch["query_rating"], batch["query_mask"])
        self._outputs.setdefault(scenario, []).append({k: v.cpu() for k, v in metrics.items()})

    def _summaries(self) -> dict[str, dict[str, float | int]]:
        summaries = {}
        for scenario, chunks in self._outputs.items():
            per_task = {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
            summaries[scenario] = summarize(per_task)
        self._outputs = {}
        return summaries

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        for key, value in self._summaries().get("val", {}).items():
            if key != "n_tasks":
                self.log(f"val/{key}", value, prog_bar=key == "mae")

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, list(SCENARIOS)[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        self.test_results = self._summaries()
        for scenario, summary in self.test_results.items():
            for key, value in summary.items():
                if key != "n_tasks":
                    self.log(f"test/{scenario}/{key}", value, add_dataloader_idx=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.outer_lr)
