"""Tests for the item-mean + user-offset baseline, plain and shrunk, against hand-computed
values."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from metarec.bias import (
    ITEM_PSEUDO_GRID,
    USER_PSEUDO_GRID,
    item_means,
    pick_pseudo_counts,
    predict_bias,
)
from metarec.build import build_learner
from metarec.catalog import load_dataset
from metarec.cli import main
from metarec.config.load import load_config
from metarec.data.scenarios import ColdStartTasks
from metarec.data.tasks import TaskSet
from metarec.errors import ConfigError
from metarec.learners.evaluator import evaluate_all

from .conftest import SMALL

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


# -- shrinkage: pseudo-counts (learner.kind=shrunk) --------------------------------------------


def test_shrunk_item_means_by_hand():
    items = torch.tensor([0, 0, 2, 2, 2, 3])
    ratings = torch.tensor([1.0, 4.0, 5.0, 4.0, 3.0, 2.0])
    mu = 19.0 / 6.0
    # (sum + 2 mu) / (count + 2); an item without ratings stays at the global mean.
    expected = [(5 + 2 * mu) / 4, mu, (12 + 2 * mu) / 5, (2 + 2 * mu) / 3, mu]
    means = item_means(items, ratings, n_items=5, pseudo=2.0)
    torch.testing.assert_close(means, torch.tensor(expected, dtype=torch.float64))
    # Pseudo-counts as a column give one row of means per pseudo-count.
    rows = item_means(items, ratings, 5, pseudo=torch.tensor([[0.0], [2.0]], dtype=torch.float64))
    assert rows.shape == (2, 5)
    assert torch.equal(rows[0], item_means(items, ratings, 5))
    torch.testing.assert_close(rows[1], means)


def test_shrunk_offset_by_hand():
    tasks = make_tasks(
        support_item=[[0, 2, 1], [1, 3, 0]],
        support_rating=[[4.0, 3.0, 5.0], [4.0, 1.0, 0.0]],
        support_mask=[[True, True, True], [True, True, False]],
        query_item=[[3, 0], [2, 0]],
    )
    support = {"item": tasks.support_item, "rating": tasks.support_rating,
               "mask": tasks.support_mask}  # fmt: skip
    predicted = predict_bias(support, tasks.query_item, MEANS, SCALE, user_pseudo=1.0)
    # Residual sums 2.5 (3 ratings) and -1 (2 ratings), each over n_support + 1.
    offset0, offset1 = 2.5 / 4, -1.0 / 3
    expected = [[1.5 + offset0, 3.0 + offset0], [2.0 + offset1, 3.0 + offset1]]
    torch.testing.assert_close(predicted, torch.tensor(expected, dtype=torch.float64))


def test_shrunk_item_means_and_offset_end_to_end_by_hand():
    # Item 0 rated 2 and 4, item 1 rated 5, item 2 unseen; mu = 11/3, item pseudo-count 1:
    # item 0 (6 + mu) / 3, item 1 (5 + mu) / 2, item 2 mu.
    mu = 11.0 / 3.0
    mean0, mean1 = (6 + mu) / 3, (5 + mu) / 2
    means = item_means(torch.tensor([0, 0, 1]), torch.tensor([2.0, 4.0, 5.0]), 3, pseudo=1.0)
    tasks = make_tasks(
        support_item=[[0, 1]],
        support_rating=[[5.0, 5.0]],
        support_mask=[[True, True]],
        query_item=[[2, 0]],
    )
    support = {"item": tasks.support_item, "rating": tasks.support_rating,
               "mask": tasks.support_mask}  # fmt: skip
    predicted = predict_bias(support, tasks.query_item, means, SCALE, user_pseudo=2.0)
    offset = ((5 - mean0) + (5 - mean1)) / (2 + 2)
    expected = torch.tensor([[mu + offset, mean0 + offset]], dtype=torch.float64)
    torch.testing.assert_close(predicted, expected)


def _mean_learner(tasks, *overrides):
    cfg = load_config(None, [*SMALL, "learner.name=mean", *overrides])
    return build_learner(cfg, tasks)


def test_zero_pseudo_counts_reproduce_the_plain_bias_predictions_exactly(small_tasks):
    plain = _mean_learner(small_tasks, "learner.kind=bias")
    shrunk = _mean_learner(small_tasks, "learner.kind=shrunk", "learner.item_pseudo=0",
                           "learner.user_pseudo=0")  # fmt: skip
    assert torch.equal(plain.net.item_mean, shrunk.net.item_mean)
    for task_set in [small_tasks.val, *small_tasks.test.values()]:
        batch = task_set[torch.arange(len(task_set))]
        predicted = shrunk(batch)
        assert predicted.dtype == torch.float64
        assert torch.equal(predicted, plain(batch))


def test_set_pseudo_counts_are_used_and_kept_as_buffers(small_tasks):
    learner = _mean_learner(small_tasks, "learner.kind=shrunk", "learner.item_pseudo=3",
                            "learner.user_pseudo=1.5")  # fmt: skip
    assert (learner.chosen_item_pseudo, learner.chosen_user_pseudo) == (3.0, 1.5)
    items, ratings = small_tasks.train_ratings()
    expected = item_means(items, ratings, len(small_tasks.dataset.items), pseudo=3.0)
    assert torch.equal(learner.net.item_mean, expected)
    state = learner.state_dict()
    assert float(state["net.user_pseudo"]) == 1.5
    # A checkpoint loads into a learner built again (here one that picked other counts).
    again = _mean_learner(small_tasks, "learner.kind=shrunk")
    again.load_state_dict(state)
    assert (again.chosen_item_pseudo, again.chosen_user_pseudo) == (3.0, 1.5)
    assert _mean_learner(small_tasks, "learner.kind=bias").chosen_item_pseudo is None


def test_one_set_pseudo_count_is_kept_and_the_other_picked(small_tasks):
    learner = _mean_learner(small_tasks, "learner.kind=shrunk", "learner.item_pseudo=7")
    assert learner.chosen_item_pseudo == 7.0
    assert learner.chosen_user_pseudo in USER_PSEUDO_GRID


def test_the_grid_pick_is_the_best_pair_on_the_validation_tasks(small_tasks):
    """The vectorised grid agrees with evaluating each pair through the learner."""
    items, ratings = small_tasks.train_ratings()
    n_items, scale = len(small_tasks.dataset.items), small_tasks.dataset.rating_scale
    item_pseudo, user_pseudo, mae = pick_pseudo_counts(items, ratings, n_items,
                                                       small_tasks.val, scale)  # fmt: skip
    maes = {}
    for a in ITEM_PSEUDO_GRID[::3]:
        for b in USER_PSEUDO_GRID[::3]:
            pair = [f"learner.item_pseudo={a}", f"learner.user_pseudo={b}"]
            learner = _mean_learner(small_tasks, "learner.kind=shrunk", *pair)
            maes[a, b] = evaluate_all(learner, {"val": small_tasks.val})["val"]["mae"]
    assert mae <= min(maes.values()) + 1e-12
    picked = _mean_learner(small_tasks, "learner.kind=shrunk")
    assert (picked.chosen_item_pseudo, picked.chosen_user_pseudo) == (item_pseudo, user_pseudo)
    assert evaluate_all(picked, {"val": small_tasks.val})["val"]["mae"] == pytest.approx(mae)


def _with_ratings(task_set: TaskSet, support_rating, query_rating) -> TaskSet:
    return dataclasses.replace(task_set, support_rating=support_rating, query_rating=query_rating)


def test_the_pick_reads_validation_tasks_only(small_tasks):
    picked = _mean_learner(small_tasks, "learner.kind=shrunk")
    choice = (picked.chosen_item_pseudo, picked.chosen_user_pseudo)
    generator = torch.Generator().manual_seed(0)

    def scrambled(task_set: TaskSet) -> TaskSet:
        return _with_ratings(
            task_set,
            torch.randint(1, 6, task_set.support_rating.shape, generator=generator).float(),
            torch.randint(1, 6, task_set.query_rating.shape, generator=generator).float(),
        )

    # Other test ratings: the same pick, the same item means.
    tasks = copy.copy(small_tasks)
    tasks.test = {name: scrambled(task_set) for name, task_set in small_tasks.test.items()}
    again = _mean_learner(tasks, "learner.kind=shrunk")
    assert (again.chosen_item_pseudo, again.chosen_user_pseudo) == choice
    assert torch.equal(again.net.item_mean, picked.net.item_mean)

    # Validation query ratings that the (100, 20) model predicts exactly: that pair is picked.
    items, ratings = small_tasks.train_ratings()
    means = item_means(items, ratings, len(small_tasks.dataset.items), pseudo=100.0)
    val = small_tasks.val
    support = {"item": val.support_item, "rating": val.support_rating, "mask": val.support_mask}
    target = predict_bias(support, val.query_item, means, SCALE, user_pseudo=20.0)
    tasks = copy.copy(small_tasks)
    tasks.val = _with_ratings(val, val.support_rating, target.float())
    moved = _mean_learner(tasks, "learner.kind=shrunk")
    assert (moved.chosen_item_pseudo, moved.chosen_user_pseudo) == (100.0, 20.0) != choice


def test_shrunk_validation_mae_is_at_most_the_plain_one(small_tasks):
    def val_mae(kind: str) -> float:
        learner = _mean_learner(small_tasks, f"learner.kind={kind}")
        return evaluate_all(learner, {"val": small_tasks.val})["val"]["mae"]

    assert val_mae("shrunk") <= val_mae("bias") + 1e-12


def test_shrunk_on_item_tasks_predicts_within_the_scale():
    cfg = load_config(None, [*SMALL, "learner.name=mean", "learner.kind=shrunk",
                             "task.unit=item"])  # fmt: skip
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    learner = build_learner(cfg, tasks)
    assert learner.chosen_item_pseudo in ITEM_PSEUDO_GRID
    low, high = tasks.dataset.rating_scale
    for scenario, task_set in tasks.test.items():
        predicted = learner(task_set[torch.arange(len(task_set))])
        assert torch.isfinite(predicted).all() and low <= predicted.min(), scenario
        assert predicted.max() <= high, scenario


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["learner.kind=shrunk", "learner.item_pseudo=-1"], "learner.item_pseudo"),
        (["learner.kind=shrunk", "learner.user_pseudo=nan"], "learner.user_pseudo"),
        (["learner.kind=bias", "learner.user_pseudo=2"], "learner.user_pseudo"),
    ],
)
def test_bad_pseudo_counts_fail_at_load(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, ["learner.name=mean", *overrides])


def test_no_validation_tasks_to_pick_on_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"key 'data.val_fraction': 0.0 is not allowed; it must be in \(0, 1\)"
    ):
        load_config(None, [*SMALL, "learner.name=mean", "learner.kind=shrunk",
                           "data.val_fraction=0"])  # fmt: skip


def test_a_shrunk_run_records_the_pick_in_its_summary(tmp_path):
    args = ["train", "experiments/synthetic/shrunk.yaml", *SMALL, f"output_dir={tmp_path}"]
    assert main(args) == 0
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val/item_pseudo"] in ITEM_PSEUDO_GRID
    assert summary["val/user_pseudo"] in USER_PSEUDO_GRID
