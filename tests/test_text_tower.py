"""``encoder.trainable: full | lora``: the text encoder inside the network, tuned with it."""

from __future__ import annotations

import pytest
import torch

from metarec.build import build_learner, prepare_tasks
from metarec.config.load import load_config

from .conftest import SMALL


def _learner(folder, name, trainable):
    cfg = load_config(None, [*SMALL, f"learner.name={name}", "item.text=join",
                             f"encoder.model={folder}", f"encoder.trainable={trainable}",
                             "encoder.max_length=32"])  # fmt: skip
    tasks = prepare_tasks(cfg)
    torch.manual_seed(0)
    return build_learner(cfg, tasks), tasks


def _encoder_params(learner):
    return {name: p for name, p in learner.net.named_parameters() if ".text_model.encoder." in name}


def test_full_meta_training_reaches_the_encoder_weights(tiny_text_model):
    learner, tasks = _learner(tiny_text_model, "maml", "full")
    params = _encoder_params(learner)
    assert params and all(p.requires_grad for p in params.values())
    learner.train()
    learner.training_loss(tasks.train[torch.arange(4)]).backward()  # second order, vmapped
    attention = [p for name, p in params.items() if "attention.self.query.weight" in name]
    assert attention and all(p.grad is not None and p.grad.abs().sum() > 0 for p in attention)


def test_finetune_tunes_the_encoder_per_task(tiny_text_model):
    learner, tasks = _learner(tiny_text_model, "finetune", "full")
    _, (fast, frozen, _) = learner.tuning_weights()
    assert set(_encoder_params(learner)) <= set(fast) and not frozen
    learner.eval()
    batch = tasks.test["new_item"][torch.arange(3)]
    with torch.enable_grad():
        state = learner.adapt({"user": batch["user"], "item": batch["support_item"],
                               "rating": batch["support_rating"],
                               "mask": batch["support_mask"]})  # fmt: skip
    name = next(n for n in fast if "attention.self.query.weight" in n)
    tuned = state.fast[name]  # one copy per task, moved away from the trained weights
    assert tuned.shape[0] == 3 and not torch.equal(tuned[0], fast[name])
    assert not torch.equal(tuned[0], tuned[1])


def test_lora_adapts_only_query_value_adapters_of_the_encoder(tiny_text_model):
    learner, tasks = _learner(tiny_text_model, "lora", "lora")
    params = _encoder_params(learner)
    trainable = {name for name, p in params.items() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert all(".query." in name or ".value." in name for name in trainable)
    assert all(not p.requires_grad for name, p in params.items() if "lora_" not in name)
    _, (fast, _, _) = learner.tuning_weights()
    assert any("text_model" in name and "lora_" in name for name in fast)
    frozen_before = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    optimiser = torch.optim.SGD([p for p in learner.parameters() if p.requires_grad], lr=0.1)
    learner.train()
    learner.training_loss(tasks.train[torch.arange(4)]).backward()
    optimiser.step()
    for name, before in frozen_before.items():
        assert torch.equal(params[name], before), name  # pretrained weights never move


@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_trainable_encoder_is_saved_with_the_network(tiny_text_model, trainable):
    learner, _ = _learner(tiny_text_model, "maml", trainable)
    state = learner.state_dict()
    assert any(".text_model.encoder." in name for name in state)
    assert not any(name.endswith(("text_model.tokens", "text_model.token_mask")) for name in state)
