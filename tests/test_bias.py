"""Tests for the item-mean + user-offset baseline, against hand-computed values."""

from __future__ import annotations

import torch

from metarec.baselines.bias import item_means, predict_bias
from metarec.data.tasks import TaskSet

SCALE = (1.0, 5.0)


def _predict(tasks, means, scale):
    """``predict_bias`` on a TaskSet's support sets and query items."""
    support = {
        "item": tasks.support_item,
        "rating": tasks.support_rating,
        "mask": tasks.support_mask,
    }
    return predict_bias(support, tasks.query_item, means, scale)


def test_item_means_by_hand():
    items = torch.tensor([0, 0, 2, 2, 2, 3])
    ratings = torch.tensor([1.0, 4.0, 5.0, 4.0, 3.0, 2.0])
    means = item_means(items, ratings, n_items=5)
    # Global mean of the ratings (not of the item means): 19 / 6.
    global_mean = 19.0 / 6.0
    expected = torch.tensor([2.5, global_mean, 4.0, 2.0, global_mean], dtype=torch.float64)
    assert means.shape == (5,)
    torch.testing.assert_close(means, expected)


def test_item_means_do_not_depend_on_rating_order():
    items = torch.tensor([1, 0, 1, 0, 1])
    ratings = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])
    order = torch.tensor([4, 2, 0, 3, 1])
    torch.testing.assert_close(
        item_means(items, ratings, 3), item_means(items[order], ratings[order], 3)
    )


def make_tasks(support_item, support_rating, support_mask, query_item) -> TaskSet:
    support_item = torch.tensor(support_item)
    query_item = torch.tensor(query_item)
    return TaskSet(
        user_ids=[f"u{i}" for i in range(len(support_item))],
        user=torch.arange(len(support_item)),
        support_item=support_item,
        support_rating=torch.tensor(support_rating),
        support_mask=torch.tensor(support_mask),
        query_item=query_item,
        query_rating=torch.zeros(query_item.shape),
        query_mask=torch.ones(query_item.shape, dtype=torch.bool),
    )


MEANS = torch.tensor([3.0, 4.5, 2.0, 1.5], dtype=torch.float64)


def test_predict_bias_is_item_mean_plus_mean_support_residual():
    tasks = make_tasks(
        support_item=[[0, 2, 1], [1, 3, 0]],
        support_rating=[[4.0, 3.0, 5.0], [4.0, 1.0, 0.0]],
        support_mask=[[True, True, True], [True, True, False]],
        query_item=[[3, 0], [2, 0]],
    )
    predicted = _predict(tasks, MEANS, SCALE)
    # Task 0 residuals: 4-3, 3-2, 5-4.5 -> mean 2.5/3. Task 1 (third entry padded): 4-4.5,
    # 1-1.5 -> mean -0.5.
    offset0, offset1 = 2.5 / 3, -0.5
    expected = torch.tensor(
        [[1.5 + offset0, 3.0 + offset0], [2.0 + offset1, 3.0 + offset1]], dtype=torch.float64
    )
    assert predicted.shape == (2, 2)
    torch.testing.assert_close(predicted.double(), expected)


def test_padded_support_entries_do_not_count():
    # The padded entry has a wild rating and points at an item with another mean; masking it
    # out must give the same prediction as leaving it out.
    padded = make_tasks(
        support_item=[[0, 2, 1]],
        support_rating=[[4.0, 3.0, 1.0]],
        support_mask=[[True, True, False]],
        query_item=[[1]],
    )
    trimmed = make_tasks(
        support_item=[[0, 2]],
        support_rating=[[4.0, 3.0]],
        support_mask=[[True, True]],
        query_item=[[1]],
    )
    got = _predict(padded, MEANS, SCALE)
    torch.testing.assert_close(got, _predict(trimmed, MEANS, SCALE))
    # offset = ((4 - 3) + (3 - 2)) / 2 = 1; the query item's mean is 4.5 -> 5.5, clamped to 5.
    torch.testing.assert_close(got.double(), torch.tensor([[5.0]], dtype=torch.float64))


def test_predictions_are_clamped_to_the_scale():
    tasks = make_tasks(
        support_item=[[3, 3], [1, 1]],
        support_rating=[[5.0, 5.0], [1.0, 1.0]],
        support_mask=[[True, True], [True, True]],
        query_item=[[1, 2], [3, 0]],
    )
    predicted = _predict(tasks, MEANS, SCALE).double()
    # Task 0: offset +3.5 -> 8.0 and 5.5, both clamped to 5. Task 1: offset -3.5 -> -2.0 and
    # -0.5, both clamped to 1.
    torch.testing.assert_close(
        predicted, torch.tensor([[5.0, 5.0], [1.0, 1.0]], dtype=torch.float64)
    )
    # Another scale clamps elsewhere.
    narrow = _predict(tasks, MEANS, (2.0, 4.0)).double()
    torch.testing.assert_close(narrow, torch.tensor([[4.0, 4.0], [2.0, 2.0]], dtype=torch.float64))


def test_empty_support_gives_the_item_mean():
    tasks = make_tasks(
        support_item=[[2, 0]],
        support_rating=[[5.0, 5.0]],
        support_mask=[[False, False]],
        query_item=[[0, 1, 3]],
    )
    predicted = _predict(tasks, MEANS, SCALE).double()
    torch.testing.assert_close(predicted, MEANS[[0, 1, 3]].unsqueeze(0))


def test_item_means_feed_predict_bias_end_to_end():
    # Item 0 rated 2 and 4 (mean 3), item 1 rated 5 (mean 5), item 2 unseen (global mean 11/3).
    means = item_means(torch.tensor([0, 0, 1]), torch.tensor([2.0, 4.0, 5.0]), n_items=3)
    tasks = make_tasks(
        support_item=[[0, 1]],
        support_rating=[[4.0, 4.0]],
        support_mask=[[True, True]],
        query_item=[[2]],
    )
    # offset = ((4 - 3) + (4 - 5)) / 2 = 0 -> the unseen item's global mean.
    predicted = _predict(tasks, means, SCALE).double()
    torch.testing.assert_close(predicted, torch.tensor([[11.0 / 3.0]], dtype=torch.float64))
