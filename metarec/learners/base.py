"""The MetaLearner LightningModule: steps, logging, optimiser and evaluation for every learner.

A learner implements ``adapt(support) -> state`` and ``predict(state, query) -> ratings`` over a
batch of tasks. ``predict`` never receives query ratings, so no learner can read them while
adapting. Evaluation adapts on the support set, so it runs with gradients enabled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from metarec.bias import item_means, pick_pseudo_counts
from metarec.config.schema import LearnerConfig, ModelConfig, TaskConfig
from metarec.data.batch import (  # noqa: F401  (re-exported: the names' old home)
    Batch,
    length_groups,
    query_of,
    support_of,
    take_tasks,
    whole_task,
)
from metarec.data.scenarios import ColdStartTasks
from metarec.distributed import gather_rows, share_of_meta_batch
from metarec.encoders.network import MeLUNet
from metarec.errors import TrainingDiverged  # also importable from here, as before
from metarec.learners.functional import task_loss
from metarec.metrics.evaluate import (
    Scoring,
    batch_metrics,
    flat_metrics,
    metric_key,
    summarize_columns,
    task_columns,
)
from metarec.metrics.ranking import learner_full_ranking


class MetaLearner(L.LightningModule, ABC):
    """Base class; subclasses implement :meth:`adapt` and :meth:`predict` (a class missing
    either cannot be made: ``TypeError``) and register with ``@LEARNERS.register(name)``.

    ``Settings`` is the learner's config dataclass (``learner.*`` in the YAML), extending
    ``LearnerConfig``. ``build_network`` makes the network it adapts (MeLU's by default).
    ``task`` (``task.*`` of the run config) says what the tasks predict: with
    ``task.target: like`` the targets are 0/1 and predictions are like probabilities, trained
    with cross-entropy (``self.loss``). ``levels`` are the rating scale's levels
    (``tasks.rating_levels()``), with which the metrics add ``mae_round``.
    ``units`` lists the task units (``task.unit``) the learner supports; ``reads_item_text``
    says whether ``item.text`` can change its predictions.
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

    def __init__(
        self,
        net: nn.Module,
        cfg: LearnerConfig,
        task: TaskConfig | None = None,
        levels: torch.Tensor | None = None,
        scoring: Scoring | None = None,
    ):
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.task = task if task is not None else TaskConfig()
        self.rating_levels = levels
        self.scoring = scoring if scoring is not None else Scoring()
        self.binary = self.task.target == "like"
        self.loss = task_loss(self.task.target)  # per-task loss: (pred, target, mask) -> (T,)
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}
        self.test_results: dict[str, dict[str, float | int]] = {}
        # Each test scenario's per-task metrics (float64 columns, in task order).
        self.test_per_task: dict[str, dict[str, torch.Tensor]] = {}

    # The resolved run config (YAML) under this key of the checkpoint's "hyper_parameters".
    CONFIG_KEY = "metarec_config"

    def keep_run_config(self, run_config: str) -> MetaLearner:
        """Save the resolved run config (``to_yaml``) with this learner's checkpoints, so that
        :meth:`load_from_checkpoint` can rebuild it; returns the learner."""
        self.save_hyperparameters({self.CONFIG_KEY: run_config}, logger=False)
        return self

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device | None = None,
        hparams_file: None = None,
        strict: bool = True,
        weights_only: bool | None = True,
        tasks: ColdStartTasks | None = None,
        **overrides: Any,
    ) -> MetaLearner:
        """The learner of a metarec checkpoint, its weights loaded, in evaluation mode.

        Lightning's signature, but the network is built anew from the run config saved in the
        checkpoint (:meth:`keep_run_config`; else the run folder's ``config.yaml``), which
        needs the run's dataset: ``data.root`` for files, changed by ``overrides`` such as
        ``data={"root": PATH}``, or given ``tasks``. The file is always read with
        ``weights_only=True``; ``hparams_file`` is not supported. Called on a learner class,
        the checkpoint must hold that learner (or a subclass).
        """
        from metarec.api import learner_from_checkpoint  # the api imports this module

        if hparams_file is not None or weights_only is False:
            raise ValueError("metarec checkpoints carry their config; they load weights_only")
        learner = learner_from_checkpoint(checkpoint_path, tasks=tasks, strict=strict,
                                          **overrides)  # fmt: skip
        if not isinstance(learner, cls):
            raise TypeError(
                f"{checkpoint_path} holds a '{learner.name}' learner "
                f"({type(learner).__name__}), not a {cls.__name__}"
            )
        return learner.to(map_location) if map_location is not None else learner

    def learn_residuals(self, tasks: ColdStartTasks) -> MetaLearner:
        """From now on every batch's ratings are residuals of the shrunk bias baseline
        (``learner.residual``): item means of the meta-training ratings and the user's offset on
        the support set, both shrunk by pseudo-counts picked on the validation tasks. The
        baseline's query predictions are added back before any metric; returns the learner."""
        if self.task.target != "rating":
            raise ValueError("learner.residual needs task.target=rating")
        items, ratings = tasks.train_ratings()
        n_items, scale = len(tasks.dataset.items), tasks.dataset.rating_scale
        item_pseudo, user_pseudo, _ = pick_pseudo_counts(items, ratings, n_items, tasks.val, scale)
        self.register_buffer("bias_item_mean", item_means(items, ratings, n_items, item_pseudo))
        self.register_buffer("bias_user_pseudo", torch.tensor(user_pseudo, dtype=torch.float64))
        return self

    def residualize(self, batch: Batch) -> Batch:
        """The batch with ratings minus the shrunk bias baseline's predictions, and
        ``query_offset`` (those predictions) and ``query_target`` (the ratings) beside them;
        the batch itself when the learner does not learn residuals or it is done already."""
        if not hasattr(self, "bias_item_mean") or "query_offset" in batch:
            return batch
        mask, query_mask = batch["support_mask"], batch["query_mask"]
        dtype = batch["support_rating"].dtype
        means = self.bias_item_mean.to(dtype)
        support_base = means[batch["support_item"]]
        residual = (batch["support_rating"] - support_base) * mask
        count = (mask.sum(1, keepdim=True) + self.bias_user_pseudo.to(dtype)).clamp(min=1)
        offset = residual.sum(1, keepdim=True) / count
        query_base = means[batch["query_item"]] + offset
        return {
            **batch,
            "support_rating": (residual - offset) * mask,
            "query_rating": (batch["query_rating"] - query_base) * query_mask,
            "query_offset": query_base,
            "query_target": batch["query_rating"],
        }

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        return self.residualize(batch)

    # -- what a learner implements ------------------------------------------------------------
    @abstractmethod
    def adapt(self, support: Batch) -> Any:
        """Adapt to each task of the batch from its support set; returns a per-task state."""

    @abstractmethod
    def predict(self, state: Any, query: Batch) -> torch.Tensor:
        """Predicted ratings (tasks, query) from the adapted state; query ratings are absent."""

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

    @property
    def trainable(self) -> bool:
        """Whether there is anything to meta-train (a no-learning baseline has nothing)."""
        return any(p.requires_grad for p in self.parameters())

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The meta-training loss: query loss (MSE or cross-entropy) after adapting on the
        support set. Each task weighs the same, as in the metrics, whatever its query size.
        """
        return self.loss(self(batch), batch["query_rating"], batch["query_mask"]).mean()

    def loss_count(self, batch: Batch) -> int | torch.Tensor:
        """How many units ``training_loss`` averages over (tasks); under several processes
        each rank's loss weighs by it, so the meta-gradient is the one-device one."""
        return len(batch["user"])

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
        loss, meta_batch_loss = share_of_meta_batch(
            self, self.training_loss(batch), self.loss_count(batch)
        )
        self.check_finite(meta_batch_loss)  # the same on every rank: all stop, or none
        self.log("train/loss", meta_batch_loss, prog_bar=True, batch_size=len(batch["user"]))
        return loss

    def evaluate_all(self, task_sets: dict) -> dict[str, dict[str, float | int]]:
        """Metrics of every task set (by name) in one batch each, without a Trainer; the
        per-task rows are kept in ``test_per_task``."""
        for scenario, task_set in task_sets.items():
            self._evaluate(task_set[torch.arange(len(task_set))], scenario)
        return self._summaries()

    def _evaluate(self, batch: Batch, scenario: str) -> None:
        batch = self.residualize(batch)
        with torch.enable_grad():
            pred = self(batch).detach()
        if "query_offset" in batch:  # residuals: the bias baseline's predictions added back
            pred = pred + batch["query_offset"]
            batch = {**batch, "query_rating": batch["query_target"]}
        if not torch.isfinite(pred).all():
            raise TrainingDiverged(
                f"{self.name}: predictions for '{scenario}' are not finite; adapting on the "
                f"support sets diverged, lower the adaptation learning rates ({self._rates()})"
            )
        metrics = batch_metrics(
            pred,
            batch["query_rating"],
            batch["query_mask"],
            levels=self.rating_levels,
            likes=self.binary,
            like_threshold=self.task.like_threshold,
            scoring=self.scoring,
        )
        if self.scoring.full_ranking and scenario != "val":  # every item competes
            with torch.enable_grad():
                full = learner_full_ranking(self, batch, self.scoring.n_items)
            metrics.update(full)
        self._outputs.setdefault(scenario, []).append({k: v.cpu() for k, v in metrics.items()})

    def _summaries(self) -> dict[str, dict[str, float | int]]:
        """Each scenario's summary over all its tasks: under several processes every rank
        evaluated its own shard, and the per-task rows are gathered (in task order) first."""
        summaries, self.test_per_task = {}, {}
        for scenario, chunks in self._outputs.items():
            columns = task_columns(chunks, gather=lambda rows: gather_rows(self, rows))
            self.test_per_task[scenario] = columns
            summaries[scenario] = summarize_columns(columns)
        self._outputs = {}
        return summaries

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        for name, value in self._summaries().get("val", {}).items():
            if name != "n_tasks":  # auc_n_tasks is logged: summary.json has always had it
                prog_bar = name == self.scoring.monitor
                self.log(metric_key("val", None, name), value, prog_bar=prog_bar)

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.trainer.datamodule.scenarios[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        self.test_results = self._summaries()
        for key, value in flat_metrics("test", self.test_results).items():
            self.log(key, value, add_dataloader_idx=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.cfg.outer_lr)
