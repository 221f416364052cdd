"""Reptile's outer step against a hand-written loop; the global, finetune and LoRA baselines."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch
from torch.func import functional_call
from torch.utils.data import DataLoader

from metarec.build import build_learner
from metarec.catalog import LEARNERS
from metarec.config.load import load_config
from metarec.data.batch import query_of, support_of, whole_task
from metarec.errors import ConfigError
from metarec.learners.base import LearnerContext
from metarec.learners.losses import masked_mse

from .conftest import SMALL

TINY = [*SMALL, "model.hidden=[8,8]", "model.embedding_dim=4"]


def _learner(small_tasks, name, *overrides):
    torch.manual_seed(0)
    return build_learner(
        load_config(None, [*TINY, f"learner.name={name}", *overrides]), small_tasks
    )


def _settings(name, *overrides):
    return load_config(None, [*TINY, f"learner.name={name}", *overrides]).learner


def _double(task_set):
    return dataclasses.replace(
        task_set,
        support_rating=task_set.support_rating.double(),
        query_rating=task_set.query_rating.double(),
    )


def _reptile_by_hand(net, batch, steps, lr, epsilon):
    """θ + ε (mean φ − θ), each φ from plain autograd SGD on one whole task at a time."""
    slow = {name: p.detach().clone() for name, p in net.named_parameters()}
    task = whole_task(batch)
    solutions = []
    for t in range(len(batch["user"])):
        fast = {name: w.clone().requires_grad_() for name, w in slow.items()}
        for _ in range(steps):
            pred = functional_call(net, fast, (task["user"][t], task["item"][t]))
            loss = masked_mse(pred, task["rating"][t], task["mask"][t])
            grads = torch.autograd.grad(loss, list(fast.values()))
            fast = {
                name: (w - lr * g).detach().requires_grad_()
                for (name, w), g in zip(fast.items(), grads, strict=True)
            }
        solutions.append(fast)
    return {
        name: theta + epsilon * (torch.stack([phi[name] for phi in solutions]).mean(0) - theta)
        for name, theta in slow.items()
    }


def test_reptile_outer_step_matches_hand_interpolation(small_tasks):
    steps, lr, epsilon = 3, 0.3, 0.5
    learner = _learner(
        small_tasks,
        "reptile",
        f"learner.inner_steps={steps}",
        f"learner.inner_lr={lr}",
        f"learner.outer_lr={epsilon}",
    ).double()
    tasks = _double(small_tasks.train.subset(range(5)))
    expected = _reptile_by_hand(learner.net, tasks[torch.arange(5)], steps, lr, epsilon)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, inference_mode=False)  # fmt: skip
    trainer.fit(learner, train_dataloaders=DataLoader(tasks, batch_size=5))
    for name, param in learner.net.named_parameters():
        torch.testing.assert_close(param.detach(), expected[name], atol=1e-5, rtol=1e-5, msg=name)


def test_reptile_is_always_first_order():
    with pytest.raises(ConfigError, match="first_order"):
        _settings("reptile", "learner.first_order=false")


def _tuned_like(learner, name, *overrides):
    """A ``name`` learner around the same (trained) network as ``learner``."""
    return LEARNERS.get(name)(LearnerContext(learner.net, _settings(name, *overrides))).eval()


def _predict(learner, batch):
    with torch.enable_grad():  # as in evaluation
        return learner(batch).detach()


@pytest.mark.parametrize("name", ["finetune", "lora"])
def test_zero_steps_predict_like_global(small_tasks, name):
    pooled = _learner(small_tasks, "global").eval()
    batch = small_tasks.test["new_user"][torch.arange(6)]
    tuned = _tuned_like(pooled, name, "learner.inner_steps=0")
    # The same weights; per-task (vmapped) and pooled products may round differently.
    torch.testing.assert_close(_predict(tuned, batch), _predict(pooled, batch), atol=1e-6, rtol=0)


def test_finetune_lowers_every_support_loss(small_tasks):
    pooled = _learner(small_tasks, "global").eval()
    support = support_of(small_tasks.test["new_user"][torch.arange(6)])
    as_query = {"user": support["user"], "item": support["item"], "mask": support["mask"]}

    def support_mse(learner):
        with torch.enable_grad():
            pred = learner.predict(learner.adapt(support), as_query).detach()
        return masked_mse(pred, support["rating"], support["mask"])

    before = support_mse(_tuned_like(pooled, "finetune", "learner.inner_steps=0"))
    after = support_mse(
        _tuned_like(pooled, "finetune", "learner.inner_steps=3", "learner.inner_lr=0.02")
    )
    assert (after < before).all(), (before, after)


def test_lora_tunes_only_adapters_and_leaves_the_network(small_tasks):
    pooled = _learner(small_tasks, "global").eval()
    before = {name: p.detach().clone() for name, p in pooled.net.named_parameters()}
    batch = small_tasks.test["new_user"][torch.arange(6)]
    lora = _tuned_like(pooled, "lora", "learner.inner_steps=3", "learner.inner_lr=0.1")
    with torch.enable_grad():
        state = lora.adapt(support_of(batch))
        pred = lora.predict(state, query_of(batch)).detach()
    assert (pred - _predict(pooled, batch)).abs().max() > 1e-4
    for name, param in pooled.net.named_parameters():
        assert torch.equal(param, before[name]), f"{name} changed"
    # Per task: exactly the LoRA matrices; every other weight is the trained network's, shared.
    assert state.fast and all("lora_A" in name or "lora_B" in name for name in state.fast)
    assert all(weights.shape[0] == 6 for weights in state.fast.values())
    assert any(not torch.equal(w[0], w[1]) for w in state.fast.values())
    for name, weights in state.start.frozen.items():
        original = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(weights, before[original]), name


@pytest.mark.parametrize("name", ["finetune", "lora"])
def test_support_padding_never_changes_predictions(small_tasks, name):
    pooled = _learner(small_tasks, "global").eval()
    tuned = _tuned_like(pooled, name, "learner.inner_steps=2", "learner.inner_lr=0.1")
    scenario = small_tasks.test["new_user"]
    padded = (~scenario.support_mask).any(1).nonzero().squeeze(1)[:6]
    assert len(padded) > 1
    batch = scenario[padded]
    expected = _predict(tuned, batch)
    # Other values in the padded slots: exactly the same predictions.
    pad = ~batch["support_mask"]
    noisy = dict(batch)
    noisy["support_item"] = torch.where(pad, torch.randint_like(pad, 1, 50, dtype=torch.long),
                                        batch["support_item"])  # fmt: skip
    noisy["support_rating"] = torch.where(pad, 5.0, batch["support_rating"])
    torch.testing.assert_close(_predict(tuned, noisy), expected, atol=0, rtol=0)
    # More padding columns: the same up to summation order.
    wider = dict(batch)
    for key, fill in (("support_item", 7), ("support_rating", 1.0), ("support_mask", False)):
        extra = torch.full((len(padded), 5), fill, dtype=batch[key].dtype)
        wider[key] = torch.cat([batch[key], extra], dim=1)
    torch.testing.assert_close(_predict(tuned, wider), expected, atol=1e-6, rtol=1e-6)
