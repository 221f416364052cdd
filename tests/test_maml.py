"""MAML's torch.func meta-gradient against a plain per-task autograd loop."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import query_of, support_of
from metarec.learners.losses import masked_mse

from .conftest import SMALL


def _learner(small_tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "model.hidden=[8,8]", "model.embedding_dim=4", *overrides])
    learner = build_learner(cfg, small_tasks)
    return learner.double().train()


def _batch(small_tasks, n=5):
    batch = small_tasks.train[torch.arange(n)]
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


def _loop_meta_grad(learner, batch, steps, lr, first_order):
    """The reference: one task at a time, autograd with create_graph (or not, first order)."""
    net = learner.net
    params = dict(net.named_parameters())
    adapted = set(learner.adapted_names())
    support, query = support_of(batch), query_of(batch)
    losses = []
    for t in range(len(batch["user"])):
        fast = {name: p for name, p in params.items() if name in adapted}
        for _ in range(steps):
            pred = functional_call(
                net, {**params, **fast}, (support["user"][t], support["item"][t])
            )
            loss = masked_mse(pred, support["rating"][t], support["mask"][t])
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
            fast = {name: w - lr * g for (name, w), g in zip(fast.items(), grads, strict=True)}
        pred = functional_call(net, {**params, **fast}, (query["user"][t], query["item"][t]))
        losses.append(masked_mse(pred, batch["query_rating"][t], query["mask"][t]))
    meta_loss = torch.stack(losses).mean()
    return torch.autograd.grad(meta_loss, list(params.values()), allow_unused=True)


def _vmap_meta_grad(learner, batch):
    pred = learner(batch)
    loss = masked_mse(pred, batch["query_rating"], batch["query_mask"]).mean()
    return torch.autograd.grad(loss, list(learner.net.parameters()), allow_unused=True)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("adapt", ["all", "decision"])
def test_meta_gradient_matches_per_task_autograd(small_tasks, first_order, adapt):
    steps, lr = 3, 0.3
    learner = _learner(
        small_tasks,
        f"learner.inner_steps={steps}",
        f"learner.inner_lr={lr}",
        f"learner.first_order={first_order}",
        f"learner.adapt={adapt}",
    )
    batch = _batch(small_tasks)
    expected = _loop_meta_grad(learner, batch, steps, lr, first_order)
    actual = _vmap_meta_grad(learner, batch)
    names = [name for name, _ in learner.net.named_parameters()]
    for name, want, got in zip(names, expected, actual, strict=True):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"meta-gradient {name}")
        assert got.abs().sum() > 0 or want.abs().sum() == 0


def test_second_order_differs_from_first_order(small_tasks):
    """The second-order terms are really there: dropping them changes the meta-gradient."""
    batch = _batch(small_tasks)
    second = _vmap_meta_grad(_learner(small_tasks, "learner.inner_lr=0.3"), batch)
    first = _vmap_meta_grad(
        _learner(small_tasks, "learner.inner_lr=0.3", "learner.first_order=true"), batch
    )
    gaps = [(a - b).abs().max().item() for a, b in zip(second, first, strict=True)]
    assert max(gaps) > 1e-6


def test_decision_adaptation_changes_only_decision_layers(small_tasks):
    learner = _learner(small_tasks, "learner.adapt=decision")
    assert learner.adapted_names()
    assert all(name.startswith("decision.") for name in learner.adapted_names())
    fast = learner.adapt(support_of(_batch(small_tasks, n=3))).fast
    assert set(fast) == set(learner.adapted_names())
    initial = dict(learner.net.named_parameters())
    for name, weights in fast.items():
        assert weights.shape == (3, *initial[name].shape)  # one copy per task
        assert not torch.allclose(weights[0], initial[name])


def test_meta_gradient_reaches_the_slow_weights(small_tasks):
    learner = _learner(small_tasks, "learner.adapt=decision")
    grads = _vmap_meta_grad(learner, _batch(small_tasks))
    named = dict(zip([name for name, _ in learner.net.named_parameters()], grads, strict=True))
    for name, grad in named.items():
        assert grad is not None and grad.abs().sum() > 0, name  # embeddings too, via the outer loss


def test_predictions_ignore_query_ratings(small_tasks):
    """Permuting the query ratings cannot change any prediction: adaptation never sees them."""
    learner = _learner(small_tasks).eval()
    batch = _batch(small_tasks, n=8)
    shuffled = dict(batch)
    shuffled["query_rating"] = batch["query_rating"][
        :, torch.randperm(batch["query_rating"].shape[1])
    ]
    shuffled["query_rating"] = 6.0 - shuffled["query_rating"]
    with torch.no_grad():
        torch.testing.assert_close(learner(batch), learner(shuffled), atol=0, rtol=0)


def test_support_ratings_change_predictions(small_tasks):
    """The converse: adaptation does read the support ratings."""
    learner = _learner(small_tasks, "learner.inner_lr=0.5").eval()
    batch = _batch(small_tasks, n=4)
    flipped = dict(batch, support_rating=6.0 - batch["support_rating"])
    with torch.no_grad():
        assert (learner(batch) - learner(flipped)).abs().max() > 1e-3
