"""Evaluation metrics for few-shot rating prediction (per task, then averaged over tasks)."""

from metarec.metrics.rating import confidence_interval, summarize, t_quantile_975, task_metrics

__all__ = ["confidence_interval", "summarize", "t_quantile_975", "task_metrics"]
