"""MWUF: warm items keep their ID embeddings, identity meta networks leave the cold embedding,
the shift read from the item's users' mean embedding (brute force), the losses kept apart,
and a run that learns."""

from __future__ import annotations

import copy

import torch

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.learners.mwuf import item_users

from .conftest import SMALL, assert_base_gets_only_its_own_gradient, fit, scenario_mse


def _learner(tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=mwuf", *overrides])
    return build_learner(cfg, tasks).eval()


def _raters(tasks):
    """item row -> the set of user rows that rated it in meta-training, by a loop."""
    train, raters = tasks.train, {}
    for task in range(len(train)):
        user = int(train.user[task])
        for prefix in ("support", "query"):
            items = getattr(train, f"{prefix}_item")[task][getattr(train, f"{prefix}_mask")[task]]
            for item in items.tolist():
                raters.setdefault(item, set()).add(user)
    return raters


def _identity(net):
    """Meta networks at scale 1 and shift 0, whatever they read."""
    with torch.no_grad():
        net.scaling[-1].weight.zero_()
        net.scaling[-1].bias.fill_(1.0)
        net.shifting[-1].weight.zero_()
        net.shifting[-1].bias.zero_()


def test_identity_meta_networks_leave_the_cold_embedding(small_tasks):
    net = _learner(small_tasks).net
    _identity(net)
    raters = _raters(small_tasks)
    seen = torch.tensor([row in raters for row in range(len(small_tasks.dataset.items))])
    batch = small_tasks.test["new_item"][torch.arange(6)]
    item, user = batch["query_item"], batch["user"]
    cold = torch.randn(*item.shape, net.base.item_id.embedding_dim)
    with torch.no_grad():
        assert torch.equal(net.warmed(item, user, cold), cold)
        embedding = net.embedding(item, user)
    new = ~seen[item]
    assert new.sum() > 10
    warm_mean = net.base.item_id.weight[seen].mean(0)
    torch.testing.assert_close(embedding[new], warm_mean.expand(int(new.sum()), -1))


def test_warm_items_keep_their_id_embeddings_exactly(small_tasks):
    net = _learner(small_tasks).net
    with torch.no_grad():  # meta networks far from identity
        net.scaling[-1].bias.fill_(3.0)
        net.shifting[-1].bias.fill_(2.0)
    raters = _raters(small_tasks)
    batch = small_tasks.test["warm"][torch.arange(6)]
    item, user = batch["query_item"], batch["user"]
    warm = torch.tensor([[row in raters for row in task] for task in item.tolist()])
    assert warm.sum() > 10
    with torch.no_grad():
        embedding = net.embedding(item, user)
    assert torch.equal(embedding[warm], net.base.item_id.weight[item[warm]])


def test_shift_is_the_shifting_network_of_the_users_mean_embedding(small_tasks):
    net = _learner(small_tasks, "learner.max_users=1000").net
    raters = _raters(small_tasks)
    batch = small_tasks.train[torch.arange(4)]
    item, user = batch["support_item"], batch["user"]
    with torch.no_grad():
        shift = net.shift(item, user)
        for task in range(len(item)):
            for position, row in enumerate(item[task].tolist()):
                others = sorted(raters.get(row, set()) - {int(user[task])})
                if not others:  # no users: no shift
                    assert not shift[task, position].any()
                    continue
                mean = net.base.user_features(torch.tensor(others)).mean(0)
                expected = net.shifting(mean)
                torch.testing.assert_close(shift[task, position], expected, atol=1e-5, rtol=1e-5)


def test_item_users_are_a_sample_of_the_raters(small_tasks):
    raters = _raters(small_tasks)
    table = item_users(small_tasks, 3)
    for row, users in enumerate(table.tolist()):
        kept = [user for user in users if user >= 0]
        assert len(kept) == min(3, len(raters.get(row, ()))) == len(set(kept))
        assert set(kept) <= raters.get(row, set())


def test_cold_loss_trains_the_base_and_warm_loss_the_meta_networks(small_tasks):
    learner = _learner(small_tasks).train()
    meta = [*learner.net.scaling.parameters(), *learner.net.shifting.parameters()]
    assert_base_gets_only_its_own_gradient(learner, small_tasks, meta)


def test_meta_training_predicts_new_items_better(small_tasks):
    """Held-out new items' ratings: after a short meta-training, well below an untrained
    copy's (most of it may be the base model's: content reaches it directly)."""
    learner = _learner(small_tasks, "learner.outer_lr=0.01").train()
    untrained = scenario_mse(copy.deepcopy(learner).eval(), small_tasks, "new_item")
    fit(learner, small_tasks, epochs=4)
    assert scenario_mse(learner.eval(), small_tasks, "new_item") < 0.9 * untrained
