"""Evaluation of a learner: its query predictions scored per task, the per-task rows gathered
from every process, and each scenario summarized over its tasks.

Evaluation adapts on the support sets, so it runs with gradients enabled.
"""

from __future__ import annotations

from typing import Any

import torch

from metarec.bias import add_baseline
from metarec.config.schema import LearnerConfig, TaskConfig
from metarec.data.batch import Batch
from metarec.distributed import gather_rows
from metarec.errors import TrainingDiverged
from metarec.metrics.evaluate import Scoring, batch_metrics, summarize_columns, task_columns
from metarec.metrics.ranking import learner_full_ranking

Summaries = dict[str, dict[str, float | int]]


def learning_rates(settings: LearnerConfig) -> str:
    """The learning-rate settings as overrides (``learner.outer_lr=0.001, ...``): what to
    lower when training diverges."""
    return ", ".join(f"learner.{k}={v}" for k, v in vars(settings).items() if "lr" in k)


def query_predictions(learner: Any, batch: Batch) -> tuple[torch.Tensor, Batch]:
    """A learner's query predictions for a batch of tasks as the tasks give them, after
    adapting on each support set (with gradients, even in evaluation), detached; with the
    batch whose query ratings they predict. A learner of residuals (``learner.residual``) sees
    the residuals, and the baseline's predictions are added back to its own."""
    if learner.residual is not None:
        batch = learner.residual(batch)
    with torch.enable_grad():
        pred = learner(batch).detach()
    return add_baseline(pred, batch)


class Evaluator:
    """Scores query predictions per task, batch by batch and scenario by scenario, then
    summarizes each scenario over its tasks.

    ``levels`` are the rating scale's levels (``tasks.rating_levels()``), with which the
    metrics add ``mae_round``; ``task`` says whether predictions are like probabilities and
    where ratings become likes; ``scoring`` adds the ranking metrics a dataset asks for.
    ``per_task`` holds each scenario's per-task metrics (float64 columns, in task order) of
    the last summaries, ``results`` the last test summaries.
    """

    def __init__(self, task: TaskConfig, levels: torch.Tensor | None, scoring: Scoring):
        self.task, self.levels, self.scoring = task, levels, scoring
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}
        self.per_task: dict[str, dict[str, torch.Tensor]] = {}
        self.results: Summaries = {}

    def add(self, learner: Any, batch: Batch, scenario: str) -> None:
        """Score ``learner`` on a batch of the ``scenario``'s tasks."""
        pred, batch = query_predictions(learner, batch)
        if not torch.isfinite(pred).all():
            raise TrainingDiverged(
                f"{learner.name}: predictions for '{scenario}' are not finite; adapting on the "
                "support sets diverged, lower the adaptation learning rates "
                f"({learning_rates(learner.cfg)})"
            )
        metrics = batch_metrics(
            pred,
            batch["query_rating"],
            batch["query_mask"],
            levels=self.levels,
            likes=self.task.target == "like",
            like_threshold=self.task.like_threshold,
            scoring=self.scoring,
        )
        if self.scoring.full_ranking and scenario != "val":  # every item competes
            with torch.enable_grad():
                full = learner_full_ranking(learner, batch, self.scoring.n_items)
            metrics.update(full)
        self._outputs.setdefault(scenario, []).append({k: v.cpu() for k, v in metrics.items()})

    def summaries(self, module: Any) -> Summaries:
        """Each scenario's summary over all the tasks scored since the last summaries: under
        several processes (``module``'s trainer) every rank scored its own shard, and the
        per-task rows are gathered (in task order) first."""
        summaries, self.per_task = {}, {}
        for scenario, chunks in self._outputs.items():
            columns = task_columns(chunks, gather=lambda rows: gather_rows(module, rows))
            self.per_task[scenario] = columns
            summaries[scenario] = summarize_columns(columns)
        self._outputs = {}
        return summaries


def evaluate_all(learner: Any, task_sets: dict) -> Summaries:
    """Metrics of every task set (by name) in one batch each, without a Trainer; the per-task
    rows are kept in ``learner.evaluator.per_task``."""
    for scenario, task_set in task_sets.items():
        learner.evaluator.add(learner, task_set[torch.arange(len(task_set))], scenario)
    return learner.evaluator.summaries(learner)
