"""Classic baselines: mean ratings, biased MF with fold-in, Wide & Deep."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from metarec.baselines.mean import Mean, MeanRatings, MeanSettings
from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import query_of, support_of
from metarec.data.datamodule import ColdStartDataModule
from metarec.learners.base import LearnerContext
from metarec.pipeline import bias_baseline, evaluate

from .conftest import SMALL

MEANS = torch.tensor([3.0, 4.5, 2.0, 1.5], dtype=torch.float64)
SUPPORT = {
    "user": torch.tensor([0, 1]),
    "item": torch.tensor([[0, 2, 1], [1, 3, 0]]),
    "rating": torch.tensor([[4.0, 3.0, 5.0], [4.0, 1.0, 0.0]]),
    "mask": torch.tensor([[True, True, True], [True, True, False]]),
}
QUERY = {"user": SUPPORT["user"], "item": torch.tensor([[3, 0], [2, 0]]),
         "mask": torch.ones(2, 2, dtype=torch.bool)}  # fmt: skip
# Task 0 support residuals from the item means: 1, 1, 0.5 -> offset 2.5 / 3. Task 1 (third
# entry padded): -0.5, -0.5 -> offset -0.5. Support means: 4 and 2.5.
EXPECTED = {
    "global": [[3.2, 3.2], [3.2, 3.2]],
    "user": [[4.0, 4.0], [2.5, 2.5]],
    "item": [[1.5, 3.0], [2.0, 3.0]],
    "bias": [[1.5 + 2.5 / 3, 3.0 + 2.5 / 3], [1.5, 2.5]],
}


def _config(name, *overrides):
    return load_config(None, [*SMALL, f"learner.name={name}", *overrides])


def _fit(learner, tasks, steps: int) -> None:
    """A few outer steps without a Trainer."""
    optimizer = learner.configure_optimizers()
    loader = ColdStartDataModule(tasks, 16, 16, seed=0).train_dataloader()
    batches = (batch for _ in range(steps) for batch in loader)  # epochs until enough steps
    learner.train()
    for batch in islice(batches, steps):
        optimizer.zero_grad()
        learner.training_loss(batch).backward()
        optimizer.step()


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_mean_kinds_by_hand(kind):
    net = MeanRatings(MEANS, torch.tensor(3.2, dtype=torch.float64), (1.0, 5.0))
    learner = Mean(LearnerContext(net, MeanSettings(kind=kind)))
    assert not learner.trainable
    predicted = learner.predict(learner.adapt(SUPPORT), QUERY)
    torch.testing.assert_close(predicted, torch.tensor(EXPECTED[kind], dtype=torch.float64))


def test_mean_item_kind_gives_new_items_the_global_mean(small_tasks):
    learner = build_learner(_config("mean", "learner.kind=item"), small_tasks)
    _, ratings = small_tasks.train_ratings()
    new_items = small_tasks.test["new_item"][torch.arange(4)]
    predicted = learner(new_items)
    torch.testing.assert_close(
        predicted, torch.full_like(predicted, float(ratings.double().mean()))
    )


def test_mean_bias_is_exactly_the_bias_baseline(small_tasks):
    cfg = _config("mean")
    assert cfg.learner.kind == "bias"
    metrics = evaluate(build_learner(cfg, small_tasks), small_tasks, cfg)
    assert metrics == bias_baseline(small_tasks)


@pytest.fixture(scope="module")
def trained_mf(small_tasks):
    torch.manual_seed(0)
    learner = build_learner(_config("mf"), small_tasks)
    _fit(learner, small_tasks, steps=20)
    return learner.eval()


def test_mf_fold_in_is_the_ridge_solution_per_task(trained_mf, small_tasks):
    learner = trained_mf.double()
    try:
        net, l2 = learner.net, learner.cfg.ridge_l2
        support = support_of(small_tasks.test["new_user"][torch.arange(5)])
        support["rating"] = support["rating"].double()
        folded = learner.adapt(support)
        for task in range(len(folded)):
            items = support["item"][task][support["mask"][task]]
            factors = net.factors.weight[items] * net.seen[items].unsqueeze(-1)
            x = torch.cat([torch.ones(len(items), 1, dtype=torch.float64), factors], dim=1)
            y = support["rating"][task][support["mask"][task]] - net.rating_mean
            y = y - net.bias.weight[items, 0] * net.seen[items]
            # Ridge as least squares on the system augmented with sqrt(l2) * I rows.
            a = torch.cat([x, l2**0.5 * torch.eye(x.shape[1], dtype=torch.float64)])
            b = torch.cat([y, torch.zeros(x.shape[1], dtype=torch.float64)])
            expected = torch.linalg.lstsq(a, b.unsqueeze(-1)).solution.squeeze(-1)
            torch.testing.assert_close(folded[task], expected.detach())
    finally:
        learner.float()


def test_mf_ignores_padded_support_entries(trained_mf, small_tasks):
    batch = small_tasks.test["new_user"][torch.arange(6)]
    support, query = support_of(batch), query_of(batch)
    padded = dict(support)
    extra = 7
    padded["item"] = torch.cat([support["item"], torch.randint(0, 50, (6, extra))], dim=1)
    padded["rating"] = torch.cat([support["rating"], torch.full((6, extra), 40.0)], dim=1)
    padded["mask"] = torch.cat([support["mask"], torch.zeros(6, extra, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        expected = trained_mf.predict(trained_mf.adapt(support), query)
        actual = trained_mf.predict(trained_mf.adapt(padded), query)
    torch.testing.assert_close(actual, expected)


def test_mf_unseen_items_have_no_bias_or_factors(trained_mf, small_tasks):
    net = trained_mf.net
    unseen = torch.nonzero(~net.seen).flatten()
    assert len(unseen) > 0  # the new items
    # Training moved the seen rows only.
    assert net.factors.weight[unseen].abs().sum() == 0 and net.bias.weight[unseen].sum() == 0
    assert net.factors.weight[net.seen].abs().sum() > 0 and net.bias.weight[net.seen].ne(0).any()
    batch = small_tasks.test["new_user"][torch.arange(3)]
    query = dict(query_of(batch), item=unseen[:4].expand(3, 4))
    with torch.no_grad():
        user = trained_mf.adapt(support_of(batch))
        predicted = trained_mf.predict(user, query)
    expected = (net.rating_mean + user[:, :1]).expand(3, 4)
    torch.testing.assert_close(predicted, expected)


def test_widedeep_quick_fit_lowers_training_mse(small_tasks):
    torch.manual_seed(0)
    learner = build_learner(_config("widedeep", "learner.outer_lr=0.01"), small_tasks)
    everything = small_tasks.train[torch.arange(len(small_tasks.train))]
    with torch.no_grad():
        before = learner.training_loss(everything)
    _fit(learner, small_tasks, steps=30)
    with torch.no_grad():
        after = learner.training_loss(everything)
    assert after < 0.9 * before
