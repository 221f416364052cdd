"""Tasks adapted in groups of similar support length: the same predictions, less padding."""

from __future__ import annotations

import itertools

import pytest
import torch

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import length_groups, take_tasks
from metarec.registry import LEARNERS
from tests.conftest import SMALL, learner_overrides


def _cost(lengths: list[int], groups: list[list[int]], overhead: float) -> float:
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


def _best_cost(lengths: list[int], overhead: float) -> float:
    """Brute force: every way to cut the sorted tasks into consecutive groups."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(order) - 1):
        groups, current = [], [order[0]]
        for task, cut in zip(order[1:], cuts, strict=True):
            if cut:
                groups.append(current)
                current = []
            current.append(task)
        best = min(best, _cost(lengths, [*groups, current], overhead))
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("overhead", [0.0, 5.0, 40.0])
def test_groups_cover_every_task_once_at_least_cost(seed, overhead):
    lengths = torch.randint(1, 30, (9,), generator=torch.Generator().manual_seed(seed))
    groups = length_groups(lengths, overhead)
    assert sorted(torch.cat(groups).tolist()) == list(range(9))
    as_lists = [g.tolist() for g in groups]
    assert _cost(lengths.tolist(), as_lists, overhead) == _best_cost(lengths.tolist(), overhead)


def test_overhead_trades_groups_for_padding():
    lengths = torch.tensor([90, 3, 90, 4, 3, 88])
    assert len(length_groups(lengths, 1e6)) == 1
    assert [sorted(g.tolist()) for g in length_groups(lengths, 0.0)] == [[1, 4], [3], [5], [0, 2]]
    assert [sorted(g.tolist()) for g in length_groups(lengths, 20.0)] == [[1, 3, 4], [0, 2, 5]]


def test_take_tasks_cuts_support_padding_only(small_tasks):
    batch = small_tasks.test["new_user"][torch.arange(8)]
    lengths = batch["support_mask"].sum(1)
    index = torch.argsort(lengths)[:3]
    tasks = take_tasks(batch, index)
    assert tasks["support_item"].shape[1] == int(lengths[index].max()) < lengths.max()
    assert tasks["query_item"].shape == (3, batch["query_item"].shape[1])
    torch.testing.assert_close(tasks["support_mask"].sum(1), lengths[index])


@pytest.mark.parametrize("name", LEARNERS.names())
def test_grouped_predictions_equal_whole_batch_predictions(small_text_tasks, name):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, *learner_overrides(name)])
    learner = build_learner(cfg, small_text_tasks).double().eval()
    batch = small_text_tasks.test["new_user"][torch.arange(16)]
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    assert len(length_groups(batch["support_mask"].sum(1), 1.0)) > 2
    with torch.enable_grad():  # as in evaluation
        learner.group_overhead = 0.0
        whole = learner(batch).detach()
        learner.group_overhead = 1.0
        grouped = learner(batch).detach()
    torch.testing.assert_close(grouped, whole, rtol=1e-10, atol=1e-10)


def test_network_splits_its_first_layer_into_user_and_item_parts(small_tasks):
    torch.manual_seed(0)
    net = build_learner(load_config(None, SMALL), small_tasks).net.double()
    user, item = torch.tensor([[1], [2]]), torch.tensor([[3, 4, 5], [6, 7, 0]])
    u, i = torch.broadcast_tensors(user, item)
    joined = torch.cat([net.user_features(u), net.item_features(i)], -1)
    torch.testing.assert_close(net(user, item), net.decision(joined).squeeze(-1))
    torch.testing.assert_close(net(torch.tensor(2), item[1]), net(user, item)[1])
