"""One evaluation batch's per-task metrics, their columns over a task set, and the names a
run reports them by (``val/mae``, ``test/new_user/ndcg@3``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from metarec.metrics.binary import binary_task_metrics
from metarec.metrics.rating import task_metrics


def batch_metrics(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    levels: Tensor | None,
    likes: bool,
    like_threshold: float,
) -> dict[str, Tensor]:
    """Every per-task metric (``(T,)`` each) of predictions ``pred`` of ``target`` (T, Q)
    where ``mask`` is true: the rating metrics (``mae_round`` with the rating ``levels``),
    then AUC, precision, recall and F1 of likes.

    With ``likes`` the targets are 0/1 and the predictions like probabilities, a like
    predicted at 0.5 or more; else a like is a rating >= ``like_threshold``, predicted when
    the predicted rating rounds to one (>= ``like_threshold - 0.5``).
    """
    metrics = task_metrics(pred, target, mask, levels=levels)
    if likes:
        labels, threshold = target, 0.5
    else:
        labels = (target >= like_threshold).to(pred.dtype)
        threshold = like_threshold - 0.5
    metrics.update(binary_task_metrics(pred, labels, mask, threshold))
    return metrics


def task_columns(
    chunks: list[dict[str, Tensor]], gather: Callable[[Tensor], Tensor] | None = None
) -> dict[str, Tensor]:
    """One float64 column per metric over every task of ``chunks`` (the
    :func:`batch_metrics` of consecutive batches), in task order. ``gather`` turns this
    process's rows (tasks, metrics) into every process's, in task order."""
    names = list(chunks[0])
    rows = torch.cat([torch.stack([chunk[name] for name in names], 1) for chunk in chunks])
    rows = rows.to(torch.float64)
    if gather is not None:
        rows = gather(rows)
    return dict(zip(names, rows.unbind(1), strict=True))


def metric_key(split: str, scenario: str | None, name: str) -> str:
    """The name a run logs a metric by: ``val/mae`` (no scenario), ``test/new_user/mae``."""
    return f"{split}/{name}" if scenario is None else f"{split}/{scenario}/{name}"


def is_count(name: str) -> bool:
    """Whether a summary entry counts tasks (``n_tasks``, ``auc_n_tasks``) rather than
    measuring them."""
    return name.endswith("n_tasks")


def flat_metrics(
    split: str, summaries: dict[str, dict[str, float | int]]
) -> dict[str, float | int]:
    """Each scenario's summary under :func:`metric_key` names, in one flat dict, without the
    task counts."""
    return {
        metric_key(split, scenario, name): value
        for scenario, summary in summaries.items()
        for name, value in summary.items()
        if not is_count(name)
    }
