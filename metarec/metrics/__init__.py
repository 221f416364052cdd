"""Evaluation metrics for few-shot recommendation (per task, then averaged over tasks)."""

from metarec.metrics.binary import binary_task_metrics, nanmean_with_count
from metarec.metrics.evaluate import batch_metrics, flat_metrics, metric_key, task_columns
from metarec.metrics.rating import (
    confidence_interval,
    snap,
    summarize,
    t_quantile_975,
    task_metrics,
)

__all__ = [
    "batch_metrics",
    "binary_task_metrics",
    "confidence_interval",
    "flat_metrics",
    "metric_key",
    "nanmean_with_count",
    "snap",
    "summarize",
    "t_quantile_975",
    "task_columns",
    "task_metrics",
]
