"""The MetaLearner contract (abstract ``adapt``/``predict``, one constructor), the inner loop's
weight split, and the metric names evaluation reports by."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from metarec.catalog import LEARNERS
from metarec.config.schema import LearnerConfig, TaskConfig
from metarec.learners.base import LearnerContext, MetaLearner
from metarec.learners.functional import InnerLoop, Weights, inner_loop, split_params
from metarec.learners.losses import masked_bce, masked_mse
from metarec.metrics import binary_task_metrics, task_metrics
from metarec.metrics.evaluate import batch_metrics, flat_metrics, metric_key, task_columns


class Scorer(nn.Module):
    """A dot product of user and item embeddings plus a bias, with a buffer."""

    def __init__(self):
        super().__init__()
        self.users = nn.Embedding(4, 3)
        self.items = nn.Embedding(6, 3)
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return (self.users(user) * self.items(item)).sum(-1) * self.scale + self.bias


def _learner_class(**methods):
    return type("Partial", (MetaLearner,), methods)


@pytest.mark.parametrize("missing", ["adapt", "predict"])
def test_a_learner_missing_adapt_or_predict_cannot_be_made_and_names_it(missing):
    methods = {"adapt": lambda self, support: support, "predict": lambda self, state, query: 0}
    del methods[missing]
    with pytest.raises(TypeError, match=f"abstract.*{missing}"):
        _learner_class(**methods)(LearnerContext(Scorer(), LearnerConfig()))


def test_every_registered_learner_implements_adapt_and_predict():
    abstract = [name for name in LEARNERS.names() if inspect.isabstract(LEARNERS.get(name))]
    assert not abstract  # those that do not adapt (mean, widedeep, ...) too


def test_a_learner_with_both_is_made_from_one_context():
    learner_cls = _learner_class(adapt=lambda self, s: s, predict=lambda self, st, q: 0)
    levels = torch.arange(1.0, 6.0)
    like = learner_cls(LearnerContext(Scorer(), LearnerConfig(), TaskConfig(target="like"), levels))
    assert like.binary and like.loss is masked_bce and like.evaluator.levels is levels
    rating = learner_cls(LearnerContext(Scorer(), LearnerConfig()))  # a rating task by default
    assert rating.task == TaskConfig() and not rating.binary and rating.loss is masked_mse
    assert rating.evaluator.levels is None and rating.residual is None


def test_split_params_splits_by_name_and_parameter_in_order():
    net = Scorer()
    net.items.weight.requires_grad_(False)
    weights = split_params(net, lambda name, _: name != "bias")
    assert list(weights.fast) == ["users.weight", "items.weight"]
    assert list(weights.frozen) == ["bias"] and list(weights.buffers) == ["scale"]
    assert weights.fast["users.weight"] is net.users.weight  # the parameters themselves
    default = split_params(net)  # by default the trainable weights are fast
    order = [name for name, _ in net.named_parameters()]  # the net's own "bias" first
    assert list(default.fast) == [name for name in order if name != "items.weight"]
    assert list(default.frozen) == ["items.weight"]


def test_split_params_detached_keeps_no_graph_to_the_parameters():
    net = Scorer()
    weights = split_params(net, lambda name, param: param.requires_grad, detach=True)
    assert all(not p.requires_grad for p in [*weights.fast.values(), *weights.frozen.values()])
    assert torch.equal(weights.fast["users.weight"], net.users.weight)
    assert weights.fast["users.weight"].data_ptr() == net.users.weight.data_ptr()  # no copy


def _support():
    return {
        "user": torch.tensor([[1], [2]]).expand(2, 3),
        "item": torch.tensor([[0, 3, 5], [1, 2, 2]]),
        "rating": torch.tensor([[4.0, 2.0, 0.0], [1.0, 5.0, 3.0]]),
        "mask": torch.tensor([[True, True, False], [True, True, True]]),
    }


def test_inner_loop_takes_plain_sgd_steps_on_the_support_loss():
    torch.manual_seed(0)
    net = Scorer()
    weights = split_params(net, detach=True)
    task = {key: value[0] for key, value in _support().items()}
    adapted = inner_loop(net, weights, task, InnerLoop(steps=1, lr=0.1))
    params = {name: p.detach().clone().requires_grad_() for name, p in weights.fast.items()}
    pred = torch.func.functional_call(
        net, ({**params}, weights.buffers), (task["user"], task["item"])
    )
    masked_mse(pred, task["rating"], task["mask"]).backward()
    for name, param in params.items():
        torch.testing.assert_close(adapted[name], param - 0.1 * param.grad)


def test_inner_loop_adapt_adapts_each_task_as_the_inner_loop_alone_does():
    torch.manual_seed(0)
    net = Scorer()
    weights = split_params(net, lambda name, _: name != "items.weight", detach=True)
    support, inner = _support(), InnerLoop(steps=3, lr=0.2, first_order=True)
    state = inner.adapt(net, support, weights)
    assert set(state.fast) == set(weights.fast)
    for t in range(2):
        alone = inner_loop(net, weights, {k: v[t] for k, v in support.items()}, inner)
        for name, value in alone.items():
            torch.testing.assert_close(state.fast[name][t], value)
    assert isinstance(weights, Weights) and weights._replace(fast={}).fast == {}


def test_batch_metrics_are_the_rating_and_like_metrics_of_one_batch():
    pred = torch.tensor([[4.2, 2.9, 1.0], [3.6, 4.8, 2.0]], dtype=torch.float64)
    target = torch.tensor([[5.0, 3.0, 1.0], [3.0, 4.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    levels = torch.arange(1.0, 6.0, dtype=torch.float64)
    metrics = batch_metrics(pred, target, mask, levels=levels, likes=False, like_threshold=4.0)
    expected = task_metrics(pred, target, mask, levels=levels)
    expected |= binary_task_metrics(pred, (target >= 4.0).double(), mask, 3.5)
    assert list(metrics) == list(expected)
    for name, value in expected.items():
        torch.testing.assert_close(metrics[name], value, equal_nan=True)
    probs, labels = pred / 5, (target >= 4).double()
    likes = batch_metrics(probs, labels, mask, levels=None, likes=True, like_threshold=4.0)
    torch.testing.assert_close(likes["auc"], binary_task_metrics(probs, labels, mask, 0.5)["auc"])


def test_task_columns_stack_batches_in_task_order_as_float64():
    chunks = [
        {"mae": torch.tensor([1.0, 2.0]), "auc": torch.tensor([0.5, 0.6])},
        {"mae": torch.tensor([3.0]), "auc": torch.tensor([0.7])},
    ]
    columns = task_columns(chunks)
    assert list(columns) == ["mae", "auc"] and columns["mae"].dtype == torch.float64
    assert columns["mae"].tolist() == [1.0, 2.0, 3.0]
    doubled = task_columns(chunks, gather=lambda rows: torch.cat([rows, rows]))
    assert doubled["auc"].shape == (6,)


def test_metric_keys_and_flat_summaries():
    assert metric_key("val", None, "mae") == "val/mae"
    assert metric_key("test", "new_user", "ndcg@3") == "test/new_user/ndcg@3"
    summaries = {
        "warm": {"mae": 0.9, "n_tasks": 10, "auc": 0.7, "auc_n_tasks": 9},
        "new_item": {"mae": 1.0, "n_tasks": 5},
    }
    assert flat_metrics("test", summaries) == {
        "test/warm/mae": 0.9,
        "test/warm/auc": 0.7,
        "test/new_item/mae": 1.0,
    }
