"""One evaluation batch's per-task metrics, their columns over a task set, and the names a
run reports them by (``val/mae``, ``test/new_user/ndcg@3``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from metarec.metrics.binary import binary_task_metrics
from metarec.metrics.metahin import METAHIN_METRICS
from metarec.metrics.names import METRICS
from metarec.metrics.pooled import pooled_auc
from metarec.metrics.ranking import ranking_metrics
from metarec.metrics.rating import summarize, task_metrics
from metarec.metrics.topk import TOPK_METRICS

# Per-task columns of pooled scoring: each task's one prediction and its 0/1 label.
POOLED_COLUMNS = ("score", "label")
# Per-task metrics a dataset adds to its scoring's (``DataSource.extra_metrics``), by name:
# ``f(pred, target, mask) -> (T,)``. Both define ndcg@5, the same standard nDCG.
EXTRA_METRICS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    **TOPK_METRICS,
    **METAHIN_METRICS,
}


@dataclass(frozen=True)
class Scoring:
    """How a dataset's tasks are scored, beyond the per-task rating and like metrics.

    ``kind``: ``rating`` (MeLU's: per-task metrics averaged over tasks); ``ranking``
    (next-item tasks, :mod:`metarec.data.implicit`: the query's one positive ranked against
    its negatives, HR@10, NDCG@10, MRR); ``pooled`` (one query per task, as TALLRec's samples:
    AUC over every task's prediction at once, :mod:`metarec.metrics.pooled`).
    ``full_ranking`` (``task.full_ranking``, ranking only) also ranks each test target
    against all ``n_items`` items. ``extra`` names the dataset's own further metrics
    (:data:`EXTRA_METRICS`). The checkpoint kept is the epoch best on ``monitor``.
    """

    kind: str = "rating"
    n_items: int = 0
    full_ranking: bool = False
    extra: tuple[str, ...] = ()
    primary: str = ""  # the dataset's own validation metric (``DataSource.table``'s first)

    KINDS = ("rating", "ranking", "pooled")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"scoring kind {self.kind!r} is not one of {', '.join(self.KINDS)}")
        unknown = [name for name in self.extra if name not in EXTRA_METRICS]
        if unknown:
            raise ValueError(f"extra metrics {unknown} are not among {', '.join(EXTRA_METRICS)}")

    @property
    def monitor(self) -> str:
        """The validation metric that picks the epoch kept: the dataset's ``primary``, else
        MAE, NDCG@10 or pooled AUC by kind."""
        return self.primary or {"rating": "mae", "ranking": "ndcg@10", "pooled": "auc"}[self.kind]

    def names(self, target: str, test: bool) -> tuple[str, ...]:
        """The metrics a scenario's summary holds under this scoring, for ``task.target``
        (``mae_round`` only with ratings; where the scale is not discrete it is missing)."""
        rating = ("mae", *(("mae_round",) if target == "rating" else ()), "rmse")
        if self.kind == "pooled":
            return (*rating, "auc", *self.extra)
        names = (*rating, "ndcg@1", "ndcg@3", "auc", "precision", "recall", "f1")
        if self.kind == "ranking":
            full = ("full_hr@10", "full_ndcg@10", "full_mrr") if self.full_ranking and test else ()
            names += ("hr@10", "ndcg@10", "mrr", *full)
        return (*names, *self.extra)

    @property
    def mode(self) -> str:
        """``min`` when lower ``monitor`` is better, else ``max``."""
        return "min" if METRICS[self.monitor].lower_is_better else "max"


def batch_metrics(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    levels: Tensor | None,
    likes: bool,
    like_threshold: float,
    scoring: Scoring | None = None,
) -> dict[str, Tensor]:
    """Every per-task metric (``(T,)`` each) of predictions ``pred`` of ``target`` (T, Q)
    where ``mask`` is true: the rating metrics (``mae_round`` with the rating ``levels``),
    then AUC, precision, recall and F1 of likes, then the scoring's ``extra`` metrics.

    With ``likes`` the targets are 0/1 and the predictions like probabilities, a like
    predicted at 0.5 or more; else a like is a rating >= ``like_threshold``, predicted when
    the predicted rating rounds to one (>= ``like_threshold - 0.5``). ``scoring`` adds the
    ranking metrics, or the ``score`` and ``label`` columns of pooled scoring.
    """
    metrics = task_metrics(pred, target, mask, levels=levels)
    if likes:
        labels, threshold = target, 0.5
    else:
        labels = (target >= like_threshold).to(pred.dtype)
        threshold = like_threshold - 0.5
    metrics.update(binary_task_metrics(pred, labels, mask, threshold))
    kind = scoring.kind if scoring is not None else "rating"
    if kind == "ranking":
        metrics.update(ranking_metrics(pred, labels, mask))
    elif kind == "pooled":
        if not bool((mask.sum(1) == 1).all()):
            raise ValueError("pooled scoring needs exactly one query per task")
        first = mask.to(torch.int64).argmax(1, keepdim=True)
        metrics["score"] = pred.gather(1, first).squeeze(1)
        metrics["label"] = labels.gather(1, first).squeeze(1)
    for name in scoring.extra if scoring is not None else ():
        metrics[name] = EXTRA_METRICS[name](pred, target, mask)
    return metrics


def summarize_columns(columns: dict[str, Tensor]) -> dict[str, float | int]:
    """A scenario's summary of its per-task columns (:func:`summarize`); with pooled
    scoring's ``score`` and ``label`` columns, ``auc`` is the AUC of all tasks' predictions
    at once (a task of one query has no AUC of its own); the per-task metrics a single query
    makes meaningless (its AUC, nDCG, precision, recall, F1) are left out."""
    if not all(name in columns for name in POOLED_COLUMNS):
        return summarize(columns)
    dropped = (*POOLED_COLUMNS, "auc", "ndcg@1", "ndcg@3", "precision", "recall", "f1")
    summary = summarize({name: v for name, v in columns.items() if name not in dropped})
    summary["auc"] = pooled_auc(columns["score"], columns["label"])
    return summary


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
