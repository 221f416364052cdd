"""MAMO: the personalised start is the attention-weighted read of the memories, derived by
hand; users with the same features start the same; the memories are written by moving
averages while meta-training only; and a short meta-training run learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import support_of
from metarec.learners.mamo import MAMO
from metarec.pipeline import train

from .conftest import SMALL, global_mean_mae


def _learner(small_tasks, *overrides) -> MAMO:
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=mamo", *overrides])
    learner = build_learner(cfg, small_tasks)
    net = learner.net
    net.bias_memory = torch.randn_like(net.bias_memory)  # memories as if written already
    net.preference_memory = torch.randn_like(net.preference_memory)
    return learner


def test_start_is_the_attention_weighted_memory_read(small_tasks):
    learner = _learner(small_tasks, "learner.tau=0.3")
    net = learner.net
    users = torch.arange(5)
    attention, profile, user_start, preference = learner.personalised_start(users)
    torch.testing.assert_close(attention.sum(-1), torch.ones(5))
    phi_u = [p.detach().flatten().tolist() for p in net.user_embedding.parameters()]
    phi_u = sum(phi_u, [])
    keys, bias_rows = net.profile_memory.tolist(), net.bias_memory.tolist()
    for task in range(5):
        p_u = profile[task].tolist()
        cosines = [
            sum(a * b for a, b in zip(p_u, key, strict=True))
            / math.sqrt(sum(a * a for a in p_u) * sum(b * b for b in key))
            for key in keys
        ]
        weights = [math.exp(c) / sum(math.exp(d) for d in cosines) for c in cosines]
        assert attention[task].tolist() == pytest.approx(weights, rel=1e-5)
        bias = [
            sum(w * row[j] for w, row in zip(weights, bias_rows, strict=True))
            for j in range(len(phi_u))
        ]
        expected = torch.tensor([phi - 0.3 * b for phi, b in zip(phi_u, bias, strict=True)])
        torch.testing.assert_close(user_start[task].detach(), expected, rtol=1e-5, atol=1e-5)
        read = sum(w * net.preference_memory[k] for k, w in enumerate(weights))
        torch.testing.assert_close(preference[task].detach(), read, rtol=1e-5, atol=1e-5)


def _users_with_same_features(small_tasks) -> tuple[int, int]:
    values = small_tasks.dataset.users.values
    rows = np.concatenate([np.asarray(values[name]) for name in sorted(values)], 1)
    for first in range(len(rows)):
        same = np.flatnonzero((rows == rows[first]).all(1))
        if len(same) > 1:
            return int(same[0]), int(same[1])
    raise AssertionError("the synthetic users all differ in their features")


def test_users_with_the_same_features_start_the_same(small_tasks):
    learner = _learner(small_tasks)
    first, second = _users_with_same_features(small_tasks)
    other = next(u for u in range(10) if u not in (first, second))
    _, _, user_start, preference = learner.personalised_start(torch.tensor([first, second, other]))
    torch.testing.assert_close(user_start[0], user_start[1], rtol=0, atol=0)
    torch.testing.assert_close(preference[0], preference[1], rtol=0, atol=0)
    assert not torch.allclose(user_start[0], user_start[2])


def test_meta_training_writes_the_memories_by_moving_averages(small_tasks):
    learner = _learner(small_tasks, "learner.alpha=0.3", "learner.beta=0.2", "learner.gamma=0.1")
    net = learner.net.train()
    learner.train()
    batch = small_tasks.test["new_user"][torch.arange(1)]  # one task: one write
    before = {k: v.clone() for k, v in net.named_buffers() if k.endswith("_memory")}
    state = learner.adapt(support_of(batch))
    learner.training_loss(batch)
    a, p_u = state.attention[0].detach(), state.profile[0].detach()
    expected = 0.7 * before["profile_memory"] + 0.3 * a[:, None] * p_u[None, :]
    torch.testing.assert_close(net.profile_memory, expected)
    adapted = state.fast["preference_weight"][0].detach()
    expected = 0.9 * before["preference_memory"] + 0.1 * a[:, None, None] * adapted
    torch.testing.assert_close(net.preference_memory, expected)
    assert not torch.equal(net.bias_memory, before["bias_memory"])

    learner.eval()  # evaluation reads the memories, never writes them
    written = {k: v.clone() for k, v in net.named_buffers() if k.endswith("_memory")}
    with torch.enable_grad():
        learner(batch)
    for key, value in written.items():
        assert torch.equal(getattr(net, key), value), key


def test_short_meta_training_beats_the_global_mean(small_tasks, tmp_path):
    overrides = ["learner.name=mamo", "trainer.max_epochs=3", "learner.outer_lr=0.003"]
    cfg = load_config(None, [*SMALL, *overrides, f"output_dir={tmp_path}"])
    result = train(cfg)
    assert result.metrics["new_user"]["mae"] < global_mean_mae(small_tasks, "new_user") - 0.1
