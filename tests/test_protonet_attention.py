"""Prototypical networks and in-context attention: hand-checked predictions, set semantics,
padding that never matters, and a short meta-training run that learns."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import query_of, support_of
from metarec.metrics import summarize, task_metrics
from metarec.pipeline import train

from .conftest import SMALL


def _learner(small_tasks, name, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, f"learner.name={name}", *overrides])
    return build_learner(cfg, small_tasks).eval()


def _batch(small_tasks, n=6):
    batch = small_tasks.test["new_user"][torch.arange(n)]
    assert (~batch["support_mask"]).any(), "the padding tests need padded support entries"
    return batch


def _predict(learner, batch):
    with torch.enable_grad():  # as in evaluation
        return learner(batch).detach()


# -- protonet ---------------------------------------------------------------------------------
def test_protonet_support_of_one_level_predicts_that_level(small_tasks):
    learner = _learner(small_tasks, "protonet")
    batch = _batch(small_tasks)
    only_fours = torch.where(batch["support_mask"], 4.0, 0.0)
    pred = _predict(learner, dict(batch, support_rating=only_fours))
    assert torch.equal(pred, torch.full_like(pred, 4.0))


def test_protonet_prototypes_are_the_mean_embedding_of_each_level(small_tasks):
    learner = _learner(small_tasks, "protonet")
    support = support_of(_batch(small_tasks, n=1))
    prototypes, present = learner.adapt(support)
    mask = support["mask"][0]
    embedded = learner.net(support["user"][0], support["item"][0][mask])
    ratings = support["rating"][0][mask]
    for index, level in enumerate(learner.net.levels.tolist()):
        assert bool(present[0, index]) == bool((ratings == level).any())
        if present[0, index]:
            expected = embedded[ratings == level].mean(0)
            torch.testing.assert_close(prototypes[0, index], expected)


def test_protonet_expected_rating_by_hand(small_tasks):
    """Prototypes of levels 3 (on the query) and 5 (squared distance 2) only: others absent."""
    learner = _learner(small_tasks, "protonet", "learner.temperature=0.5")
    query = query_of(_batch(small_tasks, n=1))
    embedded = learner.net(query["user"][0], query["item"][0, 0]).detach()
    prototypes = torch.zeros(1, len(learner.net.levels), embedded.numel())
    prototypes[0, 2], prototypes[0, 4] = embedded, embedded + 1.0
    prototypes[0, 4, 2:] = embedded[2:]  # offset of 1 in two coordinates: distance 2
    present = torch.tensor([[False, False, True, False, True]])
    pred = learner.predict((prototypes, present), query)[0, 0]
    weight = math.exp(-2.0 / 0.5)
    assert pred.item() == pytest.approx((3 + 5 * weight) / (1 + weight), rel=1e-5)


def test_protonet_absent_levels_get_no_probability(small_tasks):
    learner = _learner(small_tasks, "protonet")
    batch = _batch(small_tasks)
    alternating = 2.0 + 2.0 * (torch.arange(batch["support_rating"].shape[1]) % 2)
    twos_and_fours = torch.where(batch["support_mask"], alternating, 0.0)
    pred = _predict(learner, dict(batch, support_rating=twos_and_fours))
    assert pred.min() >= 2.0 and pred.max() <= 4.0
    low, high = small_tasks.dataset.rating_scale
    pred = _predict(learner, batch)
    assert pred.min() >= low and pred.max() <= high


# -- attention --------------------------------------------------------------------------------
def test_attention_support_is_a_set(small_tasks):
    learner = _learner(small_tasks, "attention")
    batch = _batch(small_tasks)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(batch["support_item"].shape[1], generator=generator)
    shuffled = dict(batch, **{key: batch[key][:, order] for key in
                              ("support_item", "support_rating", "support_mask")})  # fmt: skip
    torch.testing.assert_close(_predict(learner, shuffled), _predict(learner, batch),
                               atol=1e-5, rtol=1e-5)  # fmt: skip


# -- both -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["protonet", "attention"])
def test_padded_support_entries_never_matter(name, small_tasks):
    learner = _learner(small_tasks, name)
    batch = _batch(small_tasks)
    padding = ~batch["support_mask"]
    garbage = dict(batch)
    garbage["support_item"] = torch.where(padding, len(small_tasks.dataset.items) - 1,
                                          batch["support_item"])  # fmt: skip
    garbage["support_rating"] = torch.where(padding, 5.0, batch["support_rating"])
    torch.testing.assert_close(_predict(learner, garbage), _predict(learner, batch),
                               atol=1e-6, rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("name", ["protonet", "attention"])
def test_support_ratings_change_predictions(name, small_tasks):
    learner = _learner(small_tasks, name)
    batch = _batch(small_tasks)
    flipped = torch.where(batch["support_mask"], 6.0 - batch["support_rating"], 0.0)
    change = _predict(learner, dict(batch, support_rating=flipped)) - _predict(learner, batch)
    assert change.abs().max() > 1e-3


@pytest.mark.parametrize("name", ["protonet", "attention"])
def test_empty_support_gives_finite_predictions(name, small_tasks):
    learner = _learner(small_tasks, name)
    batch = _batch(small_tasks)
    batch["support_mask"] = batch["support_mask"].clone()
    batch["support_mask"][0] = False  # a task with no support at all: no NaN anywhere
    assert torch.isfinite(_predict(learner, batch)).all()


@pytest.mark.parametrize(
    "name, overrides",
    [("protonet", ["trainer.max_epochs=3"]),
     ("attention", ["trainer.max_epochs=8", "learner.outer_lr=0.003"])],
)  # fmt: skip
def test_short_meta_training_beats_the_global_mean(name, overrides, small_tasks, tmp_path):
    cfg = load_config(None, [*SMALL, f"learner.name={name}", f"output_dir={tmp_path}", *overrides])
    result = train(cfg)
    new_user = small_tasks.test["new_user"]
    mean_rating = float(small_tasks.train_ratings()[1].mean())
    global_mean = torch.full_like(new_user.query_rating, mean_rating)
    reference = summarize(task_metrics(global_mean, new_user.query_rating, new_user.query_mask))
    assert result.metrics["new_user"]["mae"] < reference["mae"] - 0.1
    with open(result.run_dir / "logs" / "metrics.csv") as rows:
        val_mae = [float(row["val/mae"]) for row in csv.DictReader(rows) if row["val/mae"]]
    assert min(val_mae[1:]) < val_mae[0]
