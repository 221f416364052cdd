"""Per-task embedding rows (``InnerLoop.adapt``): the same adaptation as whole per-task tables."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import query_of, support_of, whole_task
from metarec.encoders.features import local_rows
from metarec.learners.functional import InnerLoop, Weights, call, inner_loop
from tests.conftest import SMALL


def _learner(tasks, name, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, f"learner.name={name}", *overrides])
    return build_learner(cfg, tasks).double()


def _batch(tasks, n=6):
    batch = tasks.test["new_item"][torch.arange(n)]
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


def _whole_tables(net, fast, frozen, buffers, support, steps, lr):
    """The plain way: every task adapts a whole copy of every table."""

    def one_task(task):
        return inner_loop(net, Weights(fast, frozen, buffers), task, InnerLoop(steps, lr, True))

    return vmap(one_task)(support)


def test_local_rows_are_each_tasks_distinct_rows_with_padding_first():
    local = local_rows(torch.tensor([[3, 1, 3], [0, 2, 2]]))
    assert local.rows.tolist() == [[0, 1, 3], [0, 2, 0]]  # sorted; padded with row 0
    assert local.count.tolist() == [3, 2]
    position, found = local.find(torch.tensor([[3, 2, 0, 4], [2, 0, 3, 1]]))
    assert found.tolist() == [[True, False, True, False], [True, True, False, False]]
    assert position.tolist() == [[2, 0, 0, 0], [1, 0, 0, 0]]  # 0 where not found


def test_adapted_predictions_equal_whole_table_adaptation(small_tasks):
    learner = _learner(small_tasks, "finetune").eval()
    net = learner.net
    fast = {k: p.detach() for k, p in net.named_parameters()}
    buffers = dict(net.named_buffers())
    batch = _batch(small_tasks)
    support, query = support_of(batch), query_of(batch)
    with torch.enable_grad():
        state = InnerLoop(4, 0.3, True).adapt(net, support, Weights(fast, {}, buffers))
        whole = _whole_tables(net, fast, {}, buffers, support, 4, 0.3)
    assert any(state.fast[k].shape[1] < fast[k].shape[0] for k in state.tables)  # cut tables
    # and small tables (no more rows than a task reads) whole: both ways are checked here
    assert any(state.fast[k].shape[1] == fast[k].shape[0] for k in state.tables)
    sparse = state.predict(query)
    dense = vmap(lambda w, u, i: call(net, w, {}, buffers, u, i))(
        whole, query["user"], query["item"]
    )
    torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-10)
    assert (dense - net(query["user"].unsqueeze(-1), query["item"])).abs().max() > 1e-3


def test_reptile_outer_step_equals_the_mean_of_whole_table_solutions(small_tasks):
    learner = _learner(small_tasks, "reptile", "learner.inner_lr=0.3")
    net = learner.net
    slow = {k: p.detach() for k, p in net.named_parameters()}
    buffers = dict(net.named_buffers())
    task = whole_task(_batch(small_tasks))
    solutions = InnerLoop(3, 0.3, True).adapt(net, task, Weights(slow, {}, buffers))
    whole = _whole_tables(net, slow, {}, buffers, task, 3, 0.3)
    deltas = learner.deltas(slow, solutions)
    for name, phi in whole.items():
        torch.testing.assert_close(deltas[name], slow[name] - phi.mean(0), rtol=1e-10, atol=1e-12)
    moved = [name for name in solutions.tables if deltas[name].abs().max() > 0]
    assert moved  # the embedding rows the tasks used did move


@pytest.mark.parametrize("name", ["maml", "metasgd"])
def test_second_order_meta_gradient_equals_whole_tables(small_tasks, name):
    learner = _learner(small_tasks, name, "learner.adapt=all", "learner.inner_steps=2")
    learner.train()
    net, batch = learner.net, _batch(small_tasks)
    params = dict(net.named_parameters())
    lr = learner.inner_lr()

    def whole_loss():
        def one_task(task, user, item):
            weights = Weights(params, {}, dict(net.named_buffers()))
            adapted = inner_loop(net, weights, task, InnerLoop(2, lr))
            return call(net, adapted, {}, dict(net.named_buffers()), user, item)

        pred = vmap(one_task)(support_of(batch), batch["user"].unsqueeze(-1), batch["query_item"])
        return learner.loss(pred, batch["query_rating"], batch["query_mask"]).mean()

    weights = list(learner.parameters())
    sparse = torch.autograd.grad(learner.training_loss(batch), weights)
    dense = torch.autograd.grad(whole_loss(), weights)
    for a, b in zip(sparse, dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
