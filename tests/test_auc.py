"""metarec.metrics.auc against the definition: a loop over every (positive, negative) pair."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from metarec.metrics.auc import auc


def pairwise_auc(scores, positive, weights=None) -> float:
    """Correctly ordered pairs plus half the tied ones, over n_pos * n_neg; an item of weight w
    counts as w copies of itself. Exact (fractions), rounded once."""
    weights = [1] * len(scores) if weights is None else weights
    items = list(zip(scores, positive, weights, strict=True))
    ordered = Fraction(0)
    for s_pos, is_pos, w_pos in items:
        for s_neg, is_neg_pos, w_neg in items:
            if is_pos and not is_neg_pos:
                score = 1 if s_pos > s_neg else Fraction(1, 2) if s_pos == s_neg else 0
                ordered += w_pos * w_neg * score
    n_pos = sum(w for _, is_pos, w in items if is_pos)
    n_neg = sum(w for _, is_pos, w in items if not is_pos)
    return float(ordered / (n_pos * n_neg)) if n_pos and n_neg else math.nan


def same(got: float, want: float) -> bool:
    return (math.isnan(got) and math.isnan(want)) or got == want


@pytest.mark.parametrize("decimals", [None, 1, 0])
def test_one_row_equals_the_pairwise_count_exactly(decimals):
    gen = torch.Generator().manual_seed(0 if decimals is None else 1 + decimals)
    for n in (1, 2, 3, 7, 40, 150):
        scores = torch.randn(n, generator=gen, dtype=torch.float64)
        if decimals is not None:  # many ties
            scores = torch.round(scores, decimals=decimals)
        positive = torch.rand(n, generator=gen) < 0.4
        want = pairwise_auc(scores.tolist(), positive.tolist())
        assert same(float(auc(scores, positive)), want), n


def test_each_row_of_a_batch_with_a_mask_equals_the_pairwise_count():
    gen = torch.Generator().manual_seed(2)
    scores = torch.round(torch.rand(60, 12, generator=gen, dtype=torch.float64), decimals=1)
    positive = torch.rand(60, 12, generator=gen) < torch.rand(60, 1, generator=gen)
    mask = torch.rand(60, 12, generator=gen) < 0.7
    got = auc(scores, positive, mask)
    assert got.shape == (60,) and got.dtype == torch.float64
    for row in range(60):
        real = mask[row]
        want = pairwise_auc(scores[row][real].tolist(), positive[row][real].tolist())
        assert same(got[row].item(), want), row
    assert got.isnan().any()  # some rows lack a class


def test_resample_weights_count_each_item_that_many_times():
    gen = torch.Generator().manual_seed(3)
    scores = torch.round(torch.randn(30, generator=gen, dtype=torch.float64), decimals=1)
    positive = torch.rand(30, generator=gen) < 0.5
    weights = torch.randint(0, 4, (25, 30), generator=gen)
    got = auc(scores, positive, weights)
    assert got.shape == (25,)
    for row in range(25):
        want = pairwise_auc(scores.tolist(), positive.tolist(), weights[row].tolist())
        assert same(got[row].item(), want), row
        # the same as repeating each item as often as its weight says
        repeated = weights[row]
        copies = auc(scores.repeat_interleave(repeated), positive.repeat_interleave(repeated))
        assert same(float(copies), want), row


def test_hand_computed_cases():
    positive = torch.tensor([True, False, True, False])
    assert auc(torch.tensor([4.0, 1.0, 3.0, 2.0]), positive).item() == 1.0
    assert auc(torch.tensor([1.0, 4.0, 2.0, 3.0]), positive).item() == 0.0
    assert auc(torch.full((4,), 7.0), positive).item() == 0.5  # a constant: every pair ties
    # positives 3 and 1 against negatives 2 and 1: (1 + 1 + 0 + 1/2) / 4
    assert auc(torch.tensor([3.0, 2.0, 1.0, 1.0]), positive).item() == 0.625
    assert math.isnan(auc(torch.tensor([1.0, 2.0]), torch.tensor([True, True])).item())
