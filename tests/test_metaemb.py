"""Meta-Embedding: warm items read their learned ID embeddings and new items the generator's,
the two-phase loss by hand, the base model frozen for the generator, and a run that learns."""

from __future__ import annotations

import copy

import pytest
import torch

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.learners.losses import masked_mse
from metarec.learners.metaemb import two_phase_loss

from .conftest import SMALL, assert_base_gets_only_its_own_gradient, fit, scenario_mse


def _learner(tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=metaemb", *overrides])
    return build_learner(cfg, tasks).eval()


def _seen(tasks):
    """Items rated in meta-training, read from the task set itself."""
    train = tasks.train
    rated = torch.cat([train.support_item[train.support_mask], train.query_item[train.query_mask]])
    seen = torch.zeros(len(tasks.dataset.items), dtype=torch.bool)
    seen[rated] = True
    return seen


def test_warm_items_read_their_id_embedding_new_items_the_generator(small_tasks):
    net = _learner(small_tasks).net
    seen = _seen(small_tasks)
    assert seen.any() and (~seen[1:]).any(), "the test needs warm and new items"
    rows = torch.arange(1, len(seen))
    with torch.no_grad():
        embedding = net.embedding(rows)
        content = net.base.item_features(rows)
        first, _, last = net.generator
        hand = torch.relu(content @ first.weight.T + first.bias) @ last.weight.T + last.bias
    warm = seen[rows]
    assert torch.equal(embedding[warm], net.base.item_id.weight[rows[warm]])
    torch.testing.assert_close(embedding[~warm], hand[~warm], atol=1e-6, rtol=1e-6)


def test_new_items_predictions_ignore_their_id_rows(small_tasks):
    learner = _learner(small_tasks)
    batch = small_tasks.test["new_item"][torch.arange(8)]
    new = ~_seen(small_tasks)[batch["query_item"]] & batch["query_mask"]
    assert new.sum() > 10
    before = learner(batch).detach()
    with torch.no_grad():
        learner.net.base.item_id.weight[~_seen(small_tasks)] = 5.0
    after = learner(batch).detach()
    assert torch.equal(after[new], before[new])
    with torch.no_grad():
        learner.net.generator[-1].bias += 1.0
    assert (learner(batch).detach()[new] - before[new]).abs().min() > 1e-6


def test_two_phase_loss_by_hand():
    """Scores e . (1, 2); items 0 and 1 have support ratings, item 2 only a query rating."""
    table = torch.tensor([[0.5, -0.2], [1.0, 0.3], [0.0, 1.0]], requires_grad=True)
    direction = torch.tensor([1.0, 2.0])
    support = {
        "index": torch.tensor([[0, 0, 1]]),
        "rating": torch.tensor([[1.0, 2.0, 3.0]]),
        "mask": torch.ones(1, 3, dtype=torch.bool),
    }
    query = {
        "index": torch.tensor([[0, 1, 1, 2]]),
        "rating": torch.tensor([[2.0, 1.0, 4.0, 2.0]]),
        "mask": torch.tensor([[True, True, False, True]]),
    }
    support["phi"], query["phi"] = table[support["index"]], table[query["index"]]

    def predict(part, embeddings):
        return embeddings @ direction

    loss = two_phase_loss(support, query, predict, 3, masked_mse, 0.1, alpha=0.3)
    # Scores 0.1 (item 0), 1.6 (item 1), 2.0 (item 2).
    cold = ((0.81 + 3.61) / 2 + 1.96) / 2  # item means: 2.21 and 1.96
    # Gradients: item 0 mean(2 (0.1 - y)) v = -2.8 v, item 1 2 (1.6 - 3) v = -2.8 v;
    # a step of 0.1 adds 0.28 |v|^2 = 1.4 to both scores: 1.5 and 3.0; item 2 stays at 2.0.
    warm = (0.25 + 4.0 + 0.0) / 3
    assert loss.item() == pytest.approx(0.3 * cold + 0.7 * warm, rel=1e-6)


def test_base_model_is_frozen_for_the_generator(small_tasks):
    learner = _learner(small_tasks).train()
    generator = list(learner.net.generator.parameters())
    assert len(generator) == 4
    assert_base_gets_only_its_own_gradient(learner, small_tasks, generator)


def test_meta_training_predicts_new_items_better(small_tasks):
    """Held-out new items' ratings: after a short meta-training, well below an untrained
    copy's. (On this dataset the content reaches the base model directly, so the gain may be
    mostly the base model's: the generator's own share is not separated here.)"""
    learner = _learner(small_tasks, "learner.outer_lr=0.01").train()
    untrained = scenario_mse(copy.deepcopy(learner).eval(), small_tasks, "new_item")
    fit(learner, small_tasks, epochs=4)
    assert scenario_mse(learner.eval(), small_tasks, "new_item") < 0.9 * untrained
