"""Every metric a run reports per scenario: its name, which way is better, its label in tables.

The one list of metric names: the tables, the CSV columns, the plot and the sweep's check of
its metric all read it (``tests/test_sweep.py`` checks it against what the metric functions
of :mod:`metarec.metrics` return).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A per-task metric: its key in ``metrics.json`` and run rows, its table label, and
    whether lower values are better."""

    name: str
    label: str
    lower_is_better: bool

    @property
    def better(self) -> str:
        """``"lower is better"`` or ``"higher is better"``."""
        return f"{'lower' if self.lower_is_better else 'higher'} is better"


# In column order: rating errors, ranking, then classification (which-side-of-3.5 / likes).
METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("mae", "MAE", lower_is_better=True),
        Metric("mae_round", "MAE rounded", lower_is_better=True),
        Metric("rmse", "RMSE", lower_is_better=True),
        Metric("ndcg@1", "nDCG@1", lower_is_better=False),
        Metric("ndcg@3", "nDCG@3", lower_is_better=False),
        Metric("auc", "AUC", lower_is_better=False),
        Metric("precision", "precision", lower_is_better=False),
        Metric("recall", "recall", lower_is_better=False),
        Metric("f1", "F1", lower_is_better=False),
        # Next-item tasks (Scoring kind ranking): the positive among the query's negatives,
        # then (task.full_ranking) among every item.
        Metric("hr@10", "HR@10", lower_is_better=False),
        Metric("ndcg@10", "nDCG@10", lower_is_better=False),
        Metric("mrr", "MRR", lower_is_better=False),
        Metric("full_hr@10", "HR@10 (full)", lower_is_better=False),
        Metric("full_ndcg@10", "nDCG@10 (full)", lower_is_better=False),
        Metric("full_mrr", "MRR (full)", lower_is_better=False),
        # A dataset's own (metarec.metrics.evaluate.EXTRA_METRICS): the nDCG@5 of MetaHIN's
        # tables, standard and as MetaHIN's code computes it (metarec.metrics.metahin).
        Metric("ndcg@5", "nDCG@5", lower_is_better=False),
        Metric("ndcg@5_metahin", "nDCG@5 (MetaHIN's)", lower_is_better=False),
        # TaNP's top-k metrics of the query ranking at 5, 7, 10 (metarec.metrics.topk; its
        # nDCG@5 and @10 above): textbook precision, and precision and MAP as TaNP's code.
        Metric("ndcg@7", "nDCG@7", lower_is_better=False),
        *(Metric(f"precision@{k}", f"P@{k}", False) for k in (5, 7, 10)),
        *(Metric(f"tanp_precision@{k}", f"P@{k} (TaNP's)", False) for k in (5, 7, 10)),
        *(Metric(f"tanp_map@{k}", f"MAP@{k} (TaNP's)", False) for k in (5, 7, 10)),
    )
}
NAMES = tuple(METRICS)

# The metrics of next-item tasks (metarec.metrics.ranking), sampled then full ranking.
RANKING = ("hr@10", "ndcg@10", "mrr", "full_hr@10", "full_ndcg@10", "full_mrr")

# The selections the reports show, each a subset of NAMES.
# `metarec train`'s table with task.target rating, and with target like (probabilities:
# ranking and classification only).
RUN_TABLE = ("mae", "mae_round", "rmse", "ndcg@1", "ndcg@3", "auc", "f1")
LIKE_TABLE = ("auc", "precision", "recall", "f1", "ndcg@1", "ndcg@3")
# `metarec reproduce`'s columns per scoring kind, each estimated with a bootstrap interval from
# per-task values; the first is the primary metric (ranked, tested, plotted first).
ESTIMATED = {
    "rating": ("mae", "mae_round", "ndcg@1", "ndcg@3"),
    "ranking": ("ndcg@10", "hr@10", "mrr"),
}
# The reproduction plot's two rows per scoring kind: the primary metric and a second one.
HEADLINE = {"rating": ("mae", "ndcg@3"), "ranking": ("ndcg@10", "mrr")}


def label(name: str) -> str:
    """The metric's label in tables (``nDCG@3``)."""
    return METRICS[name].label
