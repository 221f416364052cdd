"""Evaluation metrics for few-shot recommendation (per task, then averaged over tasks)."""

from metarec.metrics.binary import binary_task_metrics, nanmean_with_count
from metarec.metrics.rating import (
    confidence_interval,
    snap,
    summarize,
    t_quantile_975,
    task_metrics,
)

__all__ = [
    "binary_task_metrics",
    "confidence_interval",
    "nanmean_with_count",
    "snap",
    "summarize",
    "t_quantile_975",
    "task_metrics",
]
