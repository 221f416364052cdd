"""Warm protocols (``task.warm``): held-out users, seen users (in-sample), and warm-up (seen
users, unseen ratings); no held-out warm-up rating may reach any learner in training."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import metarec.build
import metarec.pipeline
from metarec.catalog import load_dataset
from metarec.config.load import load_config
from metarec.data.scenarios import ColdStartTasks
from metarec.errors import ConfigError, DataError
from metarec.metrics.per_task import PER_TASK_FILE, read_per_task

from .conftest import SMALL


def _tasks(warm: str, dataset=None) -> ColdStartTasks:
    cfg = load_config(None, [*SMALL, f"task.warm={warm}"])
    return ColdStartTasks(dataset or load_dataset(cfg.data), cfg.data, cfg.task)


def _pairs(tasks, part: str) -> list[set[int]]:
    items, mask = getattr(tasks, f"{part}_item"), getattr(tasks, f"{part}_mask")
    return [set(row[keep].tolist()) for row, keep in zip(items, mask, strict=True)]


def test_heldout_and_seen_share_one_split_and_seen_scores_the_training_tasks():
    heldout, both = _tasks("[heldout]"), _tasks("[heldout,seen]")
    assert list(heldout.test) == ["warm", "new_user", "new_item", "new_user_item"]
    assert list(both.test) == ["warm", "warm_seen", "new_user", "new_item", "new_user_item"]
    assert heldout.train.user_ids == both.train.user_ids
    assert torch.equal(heldout.train.query_rating, both.train.query_rating)
    assert both.test["warm_seen"] is both.train  # in-sample: the very tasks trained on
    assert not set(both.test["warm"].user_ids) & set(both.train.user_ids)


def test_warmup_tests_seen_users_on_ratings_training_never_reads():
    heldout, warmup = _tasks("[heldout]"), _tasks("[warmup]")
    test = warmup.test["warm_warmup"]
    assert list(warmup.test)[0] == "warm_warmup" and "warm" not in warmup.test
    assert warmup.val.user_ids == heldout.val.user_ids  # the same validation users
    assert test.user_ids == warmup.train.user_ids  # every tested user is meta-trained on
    assert set(test.user_ids) == set(heldout.train.user_ids) | set(heldout.test["warm"].user_ids)
    assert bool((test.query_mask.sum(1) == 10).all())
    trained = [s | q for s, q in zip(_pairs(warmup.train, "support"),
                                     _pairs(warmup.train, "query"), strict=True)]  # fmt: skip
    for seen, support, held in zip(trained, _pairs(test, "support"), _pairs(test, "query"),
                                   strict=True):  # fmt: skip
        assert seen == support  # the test support set is the user's training ratings
        assert not seen & held  # no held-out rating is in a training task
    # Every training task keeps a query: min(10, half) of the training ratings.
    sizes = warmup.train.support_mask.sum(1) + warmup.train.query_mask.sum(1)
    assert torch.equal(warmup.train.query_mask.sum(1), torch.clamp(sizes // 2, max=10))


def _flip_held_out(dataset, tasks):
    """The dataset with every warm-up held-out rating changed (6 - r)."""
    test = tasks.test["warm_warmup"]
    item_ids = list(tasks.dataset.items.row_of)
    held = {(user, item_ids[int(row)])
            for user, items, mask in zip(test.user_ids, test.query_item, test.query_mask,
                                         strict=True)
            for row in items[mask]}  # fmt: skip
    users = []
    for user in dataset.states["warm_state"]:
        ratings = user.ratings.copy()
        for k, item in enumerate(user.items):
            if (user.user, item) in held:
                ratings[k] = 6.0 - ratings[k]
        users.append(replace(user, ratings=ratings))
    return replace(dataset, states={**dataset.states, "warm_state": users}), len(held)


@pytest.mark.parametrize("learner", ["maml", "mf"])
def test_held_out_warmup_ratings_never_reach_training(learner, tmp_path, monkeypatch):
    """Changing every held-out rating changes no training task, no trained weight, no
    validation or cold number: only the warm-up scenario's own scores move."""
    cfg = load_config(None, [*SMALL, "task.warm=[warmup]"])
    dataset = load_dataset(cfg.data)
    flipped, n_held = _flip_held_out(dataset, _tasks("[warmup]", dataset))
    assert n_held > 1000
    changed = _tasks("[warmup]", flipped)
    original = _tasks("[warmup]", dataset)
    for key in ("support_item", "support_rating", "query_item", "query_rating"):
        assert torch.equal(getattr(original.train, key), getattr(changed.train, key))
    assert not torch.equal(original.test["warm_warmup"].query_rating,
                           changed.test["warm_warmup"].query_rating)  # fmt: skip

    def run(data):
        monkeypatch.setattr(metarec.build, "load_dataset", lambda _: data)
        overrides = [*SMALL, "task.warm=[warmup]", f"learner.name={learner}",
                     "trainer.max_epochs=2", f"output_dir={tmp_path / str(id(data))}"]  # fmt: skip
        result = metarec.pipeline.train(load_config(None, overrides))
        state = torch.load(result.run_dir / "checkpoints" / "best.ckpt", weights_only=True)
        return result, state["state_dict"]

    (first, weights), (second, weights_again) = run(dataset), run(flipped)
    assert weights.keys() == weights_again.keys()
    for name in weights:
        assert torch.equal(weights[name], weights_again[name]), name
    assert first.val_mae == second.val_mae
    for scenario in ("new_user", "new_item", "new_user_item"):
        assert first.metrics[scenario] == second.metrics[scenario]
    assert first.metrics["warm_warmup"]["mae"] != second.metrics["warm_warmup"]["mae"]


def test_per_task_file_holds_every_task_and_averages_to_metrics(tmp_path):
    overrides = [*SMALL, "task.warm=[heldout,seen]", "learner.name=ridge",
                 "trainer.max_epochs=1", f"output_dir={tmp_path}"]  # fmt: skip
    result = metarec.pipeline.train(load_config(None, overrides))
    per_task = read_per_task(result.run_dir / PER_TASK_FILE)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert list(per_task) == list(metrics)
    tasks = metarec.build.prepare_tasks(load_config(None, overrides))
    for scenario, columns in per_task.items():
        assert columns["task"] == tasks.test[scenario].user_ids
        for name in ("mae", "mae_round", "rmse", "ndcg@3"):
            assert np.mean(columns[name]) == pytest.approx(metrics[scenario][name], abs=1e-12)


@pytest.mark.parametrize(
    "setting, message",
    [
        ("task.warm=[warmup,heldout]", "cannot be scored in the same run"),
        ("task.warm=[later]", "is not a list of heldout, seen, warmup"),
        ("task.warm=[]", "an empty list"),
    ],
)
def test_bad_warm_settings_name_the_key(setting, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [setting])


def test_item_tasks_take_only_heldout():
    with pytest.raises(ConfigError, match="item tasks"):
        load_config(None, ["task.unit=item", "task.warm=[seen]"])


def test_warmup_needs_ratings_beside_the_held_out_ones():
    cfg = load_config(None, [*SMALL, "task.warm=[warmup]", "data.min_ratings=11"])
    dataset = load_dataset(cfg.data)
    users = [replace(u, items=u.items[:11], ratings=u.ratings[:11])
             for u in dataset.states["warm_state"]]  # fmt: skip
    dataset = replace(dataset, states={**dataset.states, "warm_state": users})
    with pytest.raises(DataError, match="too few to meta-train on"):
        ColdStartTasks(dataset, cfg.data, cfg.task)
