"""DropoutNet: with the item preference input dropped, predictions come from content alone; new
items never read their ID embedding; it learns new items from content on synthetic data."""

from __future__ import annotations

import torch

import metarec.learners.dropoutnet  # noqa: F401  (registers the learner)
from metarec.build import build_learner
from metarec.config.load import load_config

from .conftest import SMALL, support_mean_error


def make(tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=dropoutnet", *overrides])
    return build_learner(cfg, tasks)


def all_tasks(task_set):
    return task_set[torch.arange(len(task_set))]


def predict(learner, batch, training):
    learner.train(training)
    with torch.no_grad():
        return learner(batch)


def test_dropped_preference_inputs_leave_content_alone(small_tasks):
    learner = make(small_tasks, "learner.dropout=1.0")
    batch = all_tasks(small_tasks.test["warm"])  # items rated in meta-training: IDs learned
    seen = learner.net.preference.seen[batch["query_item"][batch["query_mask"]]]
    assert seen.float().mean() > 0.9
    table = learner.net.preference.vectors.weight
    dropped = predict(learner, batch, training=True)
    with torch.no_grad():
        table.normal_(std=1.0)  # other ID embeddings for every item
    assert torch.equal(predict(learner, batch, training=True), dropped)
    # The same as evaluating a copy whose items have no preference vectors at all ...
    with torch.no_grad():
        table.zero_()
    torch.testing.assert_close(predict(learner, batch, training=False), dropped)
    # ... which is not what the learner predicts for these items when they keep theirs.
    with torch.no_grad():
        table.normal_(std=1.0)
    assert (predict(learner, batch, training=False) - dropped).abs().max() > 1e-3


def test_new_items_are_scored_from_content(small_tasks):
    learner = make(small_tasks)
    batch = all_tasks(small_tasks.test["new_item"])
    seen = learner.net.preference.seen
    assert not seen[batch["query_item"][batch["query_mask"]]].any()  # all new items
    assert not seen[batch["support_item"][batch["support_mask"]]].any()
    before = predict(learner, batch, training=False)
    with torch.no_grad():
        learner.net.preference.vectors.weight[~seen] = 5.0  # new items' unused ID rows
    assert torch.equal(predict(learner, batch, training=False), before)
    with torch.no_grad():  # another genre embedding: the items' content
        learner.net.item_content.embeddings["genre"].weight.normal_()
    assert (predict(learner, batch, training=False) - before).abs().max() > 1e-3


def test_each_preference_input_is_dropped_at_the_given_rate(small_tasks):
    learner = make(small_tasks, "learner.dropout=0.3")
    seen_rows = learner.net.preference.seen.nonzero().squeeze(-1)
    item = seen_rows[torch.randint(len(seen_rows), (20_000,))]
    inputs = []
    learner.net.preference.register_forward_hook(lambda module, args, out: inputs.append(out))
    with torch.no_grad():
        learner.net.items(item, training=True)
        learner.net.items(item, training=False)
    dropped, kept = (out.abs().sum(-1) == 0 for out in inputs)
    assert abs(dropped.float().mean().item() - 0.3) < 0.02  # binomial sd 0.003
    assert not kept.any()  # evaluation drops nothing


def mse(learner, batch):
    pred = predict(learner, batch, training=False)
    mask = batch["query_mask"]
    return float(((pred - batch["query_rating"]) ** 2 * mask).sum() / mask.sum())


def check_learns_new_items(make, tasks) -> None:
    """Synthetic items' latent vectors follow from their genres and director, so after
    meta-training new items' ratings beat the user's support mean by a clear margin."""
    learner = make(tasks)
    untrained = make(tasks)
    optimiser = torch.optim.Adam(learner.parameters(), lr=3e-3)
    train = tasks.train
    for _ in range(8):
        learner.train()
        for index in torch.randperm(len(train)).split(16):
            loss = learner.training_loss(train[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    batch = all_tasks(tasks.test["new_item"])
    baseline = support_mean_error(tasks.test["new_item"], power=2)
    assert mse(learner, batch) < 0.85 * baseline
    assert mse(learner, batch) < 0.7 * mse(untrained, batch)


def test_learns_new_items_from_content(small_tasks):
    check_learns_new_items(make, small_tasks)
