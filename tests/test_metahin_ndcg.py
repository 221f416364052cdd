"""MetaHIN's nDCG@5 variant (metarec.metrics.metahin) against hand-computed values, a per-task
transcription of its definition, and metarec's standard nDCG@5, and its hook into the scoring
of the metahin datasets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarec.catalog import DATASETS
from metarec.metrics.evaluate import Scoring, batch_metrics
from metarec.metrics.metahin import metahin_ndcg, standard_ndcg


def metahin(preds, targets, mask=None) -> float:
    preds, targets = torch.tensor([preds], dtype=torch.float64), torch.tensor([targets])
    mask = torch.ones_like(preds, dtype=torch.bool) if mask is None else torch.tensor([mask])
    return float(metahin_ndcg(preds, targets.to(torch.float64), mask))


def test_metahin_ndcg_by_hand():
    # The 5 best true ratings are at positions 1, 5, 3, 0, 4 (rating 1 at 2 left out); back in
    # query order 0, 1, 3, 4, 5 their predictions 1, 2, 4, 5, 6 weigh 1, 1, 1/log2 3, 1/2, 1/log2 5.
    dcg = 1 + 2 + 4 / math.log2(3) + 5 / 2 + 6 / math.log2(5)
    idcg = 5 + 5 + 4 / math.log2(3) + 3 / 2 + 2 / math.log2(5)
    assert metahin([1, 2, 3, 4, 5, 6], [3, 5, 1, 4, 2, 5]) == pytest.approx(dcg / idcg)
    # Ties at the cut-off: the later positions are taken (MetaHIN's reversed stable argsort).
    ideal = 4 * (2 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5))
    assert metahin([10, 0, 0, 0, 0, 0], [4] * 6) == 0.0
    assert metahin([0, 0, 0, 0, 0, 10], [4] * 6) == pytest.approx(10 / math.log2(5) / ideal)
    # Fewer than 5 real items: all of them; padding is never read.
    padded = metahin([3, 1, 2, 99], [2, 5, 4, 5], [True, True, True, False])
    assert padded == pytest.approx((3 + 1 + 2 / math.log2(3)) / (5 + 4 + 2 / math.log2(3)))


def test_metahin_ndcg_follows_its_definition_on_random_tasks_with_ties():
    """Against a per-task transcription of MetaHIN's Evaluation.ranking (numpy's stable argsort
    reversed, as theirs on small arrays), over padded tasks with many tied ratings."""
    rng = np.random.default_rng(0)
    preds, targets = rng.normal(3, 1, (50, 12)), rng.integers(1, 6, (50, 12)).astype(float)
    mask = torch.from_numpy(np.arange(12) < rng.integers(1, 13, (50, 1)))
    expected = []
    for pred, true, real in zip(preds, targets, mask.numpy(), strict=True):
        pred, true = pred[real], true[real]
        chosen = sorted(np.argsort(true, kind="stable")[::-1][:5])
        weights = [1.0] + [1 / math.log2(p) for p in range(2, len(chosen) + 1)]
        ideal = sum(w * r for w, r in zip(weights, sorted(true[chosen])[::-1], strict=True))
        expected.append(sum(w * p for w, p in zip(weights, pred[chosen], strict=True)) / ideal)
    got = metahin_ndcg(torch.from_numpy(preds), torch.from_numpy(targets), mask)
    assert got.tolist() == pytest.approx(expected)


def test_metahin_ndcg_is_not_the_standard_ndcg():
    targets = torch.tensor([[3.0, 5, 1, 4, 2, 5]], dtype=torch.float64)
    mask = torch.ones_like(targets, dtype=torch.bool)
    # Predicting the ratings exactly is a perfect ranking: the standard nDCG is 1, MetaHIN's
    # is below 1 since the query is not sorted, and scaling the predictions scales it.
    assert float(standard_ndcg(targets, targets, mask)) == pytest.approx(1.0)
    exact = float(metahin_ndcg(targets, targets, mask))
    assert exact < 1.0 and float(metahin_ndcg(2 * targets, targets, mask)) == 2 * exact > 1.0
    assert float(standard_ndcg(2 * targets, targets, mask)) == pytest.approx(1.0)
    # Ranking backwards lowers the standard nDCG; MetaHIN's just sums the predictions (3, 1,
    # 2, 4, 1 in query order) of the same five items.
    backwards = 6 - targets
    assert float(standard_ndcg(backwards, targets, mask)) < 0.8
    dcg = 3 + 1 + 2 / math.log2(3) + 4 / 2 + 1 / math.log2(5)
    idcg = 5 + 5 + 4 / math.log2(3) + 3 / 2 + 2 / math.log2(5)
    assert float(metahin_ndcg(backwards, targets, mask)) == pytest.approx(dcg / idcg)


def test_the_metahin_datasets_score_both_ndcgs():
    for name in ("metahin-dbook", "metahin-ml1m"):
        scoring = Scoring(DATASETS.get(name).scoring, extra=DATASETS.get(name).extra_metrics)
        assert scoring.names("rating", True)[-2:] == ("ndcg@5", "ndcg@5_metahin")
    preds = torch.tensor([[1.0, 2, 3, 4, 5, 6], [4, 4, 1, 0, 0, 0]])
    target = torch.tensor([[3.0, 5, 1, 4, 2, 5], [1, 2, 3, 0, 0, 0]])
    mask = target > 0
    scoring = Scoring("rating", extra=DATASETS.get("metahin-ml1m").extra_metrics)
    got = batch_metrics(
        preds, target, mask, levels=None, likes=False, like_threshold=4.0, scoring=scoring
    )
    assert got["ndcg@5_metahin"].tolist() == pytest.approx(
        [metahin([1, 2, 3, 4, 5, 6], [3, 5, 1, 4, 2, 5]), metahin([4, 4, 1], [1, 2, 3])]
    )
    with pytest.raises(ValueError, match="extra metrics \\['ndcg@9'\\]"):
        Scoring("rating", extra=("ndcg@9",))
