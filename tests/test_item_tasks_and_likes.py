"""Items as tasks (``task.unit: item``), like targets (``task.target: like``) and item text
embeddings joined to or replacing the categorical features."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from metarec.build import build_learner
from metarec.catalog import LEARNERS
from metarec.cli import main
from metarec.config.load import load_config
from metarec.config.schema import TaskConfig
from metarec.data.scenarios import ITEM_SCENARIOS, SCENARIOS, ColdStartTasks
from metarec.datasets.synthetic import SyntheticConfig, SyntheticSettings, make_synthetic
from metarec.encoders.features import FeatureEmbedding
from metarec.errors import ConfigError, DataError
from metarec.learners.losses import masked_bce, masked_mse

from .conftest import SMALL

DATA = SyntheticSettings(seed=3, synthetic=SyntheticConfig(n_users=200, n_items=60))


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(DATA.synthetic, DATA.seed)


@pytest.fixture(scope="module")
def item_tasks(dataset):
    return ColdStartTasks(dataset, DATA, TaskConfig(unit="item", support_size=7))


def _ratings_by_item(dataset, state):
    table = {}
    for user in dataset.states[state]:
        for item, rating in zip(user.items, user.ratings.tolist(), strict=True):
            table[(item, user.user)] = rating
    return table


def test_item_tasks_are_items_with_k_raters_in_support_and_others_in_query(dataset, item_tasks):
    assert list(item_tasks.test) == list(ITEM_SCENARIOS)
    users, items = dataset.users.ids, dataset.items.ids
    for scenario, task_set in item_tasks.test.items():
        truth = _ratings_by_item(dataset, SCENARIOS[scenario])
        assert len(task_set) > 0
        assert task_set.support_mask.sum(1).eq(7).all()  # exactly K users per support set
        assert task_set.query_mask.sum(1).eq(DATA.query_size).all()
        for t in range(len(task_set)):
            item = items[int(task_set.user[t])]
            assert task_set.user_ids[t] == item
            raters = [users[int(u)] for u in task_set.support_item[t][task_set.support_mask[t]]]
            others = [users[int(u)] for u in task_set.query_item[t][task_set.query_mask[t]]]
            assert not set(raters) & set(others)
            got = task_set.support_rating[t][task_set.support_mask[t]].tolist()
            assert got == [truth[(item, user)] for user in raters]
            got = task_set.query_rating[t][task_set.query_mask[t]].tolist()
            assert got == [truth[(item, user)] for user in others]


def test_new_item_tasks_are_items_never_seen_in_meta_training(dataset, item_tasks):
    train_items = set(item_tasks.train.user_ids) | set(item_tasks.val.user_ids)
    assert not train_items & set(item_tasks.test["new_item"].user_ids)
    warm_items = {item for user in dataset.states["warm_state"] for item in user.items}
    assert not warm_items & set(item_tasks.test["new_item"].user_ids)


def test_item_tasks_keep_items_with_enough_ratings_only(dataset):
    tasks = ColdStartTasks(dataset, DATA, TaskConfig(unit="item", support_size=30))
    counts = {}
    for user in dataset.states["item_cold_state"]:
        for item in user.items:
            counts[item] = counts.get(item, 0) + 1
    kept = {item for item, count in counts.items() if count >= 30 + DATA.query_size}
    assert set(tasks.test["new_item"].user_ids) == kept


def test_like_targets_are_the_thresholded_ratings_of_the_same_tasks(dataset):
    ratings = ColdStartTasks(dataset, DATA)
    likes = ColdStartTasks(dataset, DATA, TaskConfig(target="like", like_threshold=4.0))
    assert likes.dataset.binary and likes.dataset.rating_scale == (0.0, 1.0)
    for scenario in SCENARIOS:
        a, b = ratings.test[scenario], likes.test[scenario]
        assert torch.equal(a.query_item, b.query_item)
        expected = (a.query_rating >= 4.0).float() * a.query_mask
        assert torch.equal(b.query_rating * b.query_mask, expected)


@pytest.mark.parametrize("threshold", [1.0, 5.5, 0.0])
def test_like_threshold_outside_the_scale_is_a_data_error(dataset, threshold):
    with pytest.raises(DataError, match="like_threshold"):
        ColdStartTasks(dataset, DATA, TaskConfig(target="like", like_threshold=threshold))


def test_bce_is_the_mean_cross_entropy_of_the_real_entries():
    torch.manual_seed(0)
    prob, target = torch.rand(4, 6), (torch.rand(4, 6) > 0.5).float()
    mask = torch.rand(4, 6) > 0.3
    mask[:, 0] = True
    expected = torch.stack([
        torch.nn.functional.binary_cross_entropy(prob[t][mask[t]], target[t][mask[t]])
        for t in range(4)
    ])  # fmt: skip
    torch.testing.assert_close(masked_bce(prob, target, mask), expected)


@pytest.mark.parametrize("name", ["maml", "protonet", "mean", "mf", "ridge", "finetune"])
def test_like_predictions_are_probabilities_trained_with_bce(name, tmp_path):
    cfg = load_config(None, [*SMALL, f"learner.name={name}", "task.target=like"])
    tasks = ColdStartTasks(make_synthetic(cfg.data.synthetic, 0), cfg.data, cfg.task)
    learner = build_learner(cfg, tasks).eval()
    assert learner.loss is masked_bce
    batch = tasks.test["new_user"][torch.arange(8)]
    with torch.enable_grad():
        pred = learner(batch)
    assert pred.min() >= 0 and pred.max() <= 1
    rating_learner = build_learner(load_config(None, [*SMALL, f"learner.name={name}"]), tasks)
    assert rating_learner.loss is masked_mse


def test_like_run_reports_auc_precision_recall_f1(tmp_path):
    args = ["train", "experiments/synthetic/maml.yaml", *SMALL, "task.target=like",
            f"output_dir={tmp_path}", "trainer.max_epochs=2"]  # fmt: skip
    assert main(args) == 0
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for values in metrics.values():
        assert 0 <= values["precision"] <= 1 and 0 <= values["recall"] <= 1
        assert 0 <= values["f1"] <= 1 and 0 <= values["auc"] <= 1
    # Warm users' item means carry signal: MAML ranks likes above chance there.
    assert metrics["warm"]["auc"] > 0.55
    table = (run_dir / "table.md").read_text()
    assert "| auc | precision | recall | f1 |" in table and "target: like" in table


def test_item_task_run_through_the_cli(tmp_path):
    args = ["train", "experiments/synthetic/maml.yaml", *SMALL, "task.unit=item",
            f"output_dir={tmp_path}", "trainer.max_epochs=2"]  # fmt: skip
    assert main(args) == 0
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    baseline = json.loads((run_dir / "baseline_metrics.json").read_text())
    assert list(metrics) == list(baseline) == list(ITEM_SCENARIOS)


def test_a_user_only_learner_refuses_item_tasks(capsys):
    assert LEARNERS.get("textsim").units == ("user",)
    code = main(["train", "experiments/synthetic/maml.yaml", *SMALL, "task.unit=item",
                 "learner.name=textsim"])  # fmt: skip
    assert code == 2
    assert "task.unit" in capsys.readouterr().err


# -- text embeddings in the item features -----------------------------------------------------


def _with_text(dataset, mode: str, dim: int = 8, seed: int = 0):
    text = np.random.default_rng(seed).normal(size=(len(dataset.items), dim)).astype(np.float32)
    items = replace(dataset.items, text=text, text_only=mode == "replace")
    return replace(dataset, items=items)


@pytest.mark.parametrize("mode", ["join", "replace"])
def test_text_embedding_joins_or_replaces_the_categorical_features(dataset, mode):
    plain = FeatureEmbedding(dataset.items, dim=4)
    torch.manual_seed(0)
    embed = FeatureEmbedding(_with_text(dataset, mode).items, dim=4)
    assert embed.out_dim == (plain.out_dim if mode == "join" else 0) + 4
    rows = torch.tensor([1, 2, 3])
    out = embed(rows)
    projected = embed.text_projection(embed.text[rows])
    torch.testing.assert_close(out[:, -4:], projected)
    assert embed.names == ([] if mode == "replace" else plain.names)


def test_predictions_follow_an_items_text(dataset):
    cfg = load_config(None, [*SMALL, "learner.name=maml"])
    tasks = ColdStartTasks(_with_text(dataset, "join"), DATA)
    learner = build_learner(cfg, tasks).eval()
    batch = tasks.test["new_item"][torch.arange(4)]
    with torch.enable_grad():
        before = learner(batch)
        text = learner.net.item_features.text
        text[batch["query_item"][0, 0]] += 5.0  # another description for one query item
        after = learner(batch)
    changed = (before - after).abs() > 1e-6
    assert changed[0, 0] and changed.sum() >= 1
    assert "item_features.text" not in learner.state_dict()  # rebuilt from the cache, not saved


def test_textsim_ranks_items_by_similarity_to_the_liked_texts(dataset):
    # Two clusters of texts; a task that loves cluster A and hates B ranks A's items first.
    n_items = len(dataset.items)
    text = np.zeros((n_items, 4), dtype=np.float32)
    text[: n_items // 2, 0], text[n_items // 2 :, 1] = 1.0, 1.0
    text += np.random.default_rng(0).normal(0, 0.05, text.shape).astype(np.float32)
    items = replace(dataset.items, text=text, text_only=True)
    tasks = ColdStartTasks(replace(dataset, items=items), DATA)
    cfg = load_config(None, [*SMALL, "learner.name=textsim", "item.text=replace"])
    learner = build_learner(cfg, tasks)
    a, b = torch.arange(0, 6), torch.arange(n_items // 2, n_items // 2 + 6)
    support = {"user": torch.tensor([0]), "item": torch.cat([a, b])[None],
               "rating": torch.tensor([[5.0] * 6 + [1.0] * 6]),
               "mask": torch.ones(1, 12, dtype=torch.bool)}  # fmt: skip
    query = {"user": torch.tensor([0]), "item": torch.tensor([[n_items - 1, 10, n_items - 2, 11]]),
             "mask": torch.ones(1, 4, dtype=torch.bool)}  # fmt: skip
    pred = learner.predict(learner.adapt(support), query)[0]
    assert pred[1] > pred[0] and pred[3] > pred[2]  # cluster A above cluster B
    assert pred[1] > 4 and pred[0] < 2  # the support's line maps similarity to its ratings


def test_textsim_without_text_names_the_key(dataset):
    with pytest.raises(ConfigError, match="key 'item.text': learner 'textsim' needs"):
        load_config(None, [*SMALL, "learner.name=textsim"])  # caught as the config loads
    # Tasks built without the embeddings the config asks for: caught as the network is built.
    cfg = load_config(None, [*SMALL, "learner.name=textsim", "item.text=replace"])
    with pytest.raises(ConfigError, match="item.text"):
        build_learner(cfg, ColdStartTasks(dataset, DATA))


@pytest.mark.parametrize("value", ["none", "join", "replace"])
def test_item_text_values_survive_yaml_and_overrides(value, tmp_path):
    # YAML 1.1 reads off/on/no as booleans: the choices are words it leaves alone.
    path = tmp_path / "run.yaml"
    path.write_text(f"item:\n  text: {value}\n")
    assert load_config(path).item.text == value
    assert load_config(None, [f"item.text={value}"]).item.text == value


def test_rating_levels_are_the_discrete_training_ratings_and_none_for_likes(dataset):
    tasks = ColdStartTasks(dataset, DATA)
    assert tasks.rating_levels().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert ColdStartTasks(dataset, DATA, TaskConfig(target="like")).rating_levels() is None
    many = replace(dataset, states={
        state: [replace(user, ratings=user.ratings + np.linspace(0, 0.9, len(user.ratings),
                                                                 dtype=np.float32))
                for user in users]
        for state, users in dataset.states.items()
    })  # fmt: skip
    assert ColdStartTasks(many, DATA).rating_levels() is None  # a continuous scale


def test_a_feature_embedding_is_the_mean_of_its_present_values(dataset):
    torch.manual_seed(0)
    values = np.array([[2, 5, 0], [0, 0, 0], [1, 0, 0]])  # a row without any value
    table = replace(dataset.items, values={"tags": values, "kind": np.array([[1], [0], [2]])},
                    vocab={"tags": list("abcde"), "kind": ["x", "y"]})  # fmt: skip
    embed = FeatureEmbedding(table, dim=3)
    out = embed(torch.tensor([0, 1, 2]))
    kind, tags = embed.embeddings["kind"].weight, embed.embeddings["tags"].weight
    torch.testing.assert_close(out[:, :3], torch.stack([kind[1], kind[0] * 0, kind[2]]))
    torch.testing.assert_close(out[:, 3:], torch.stack([(tags[2] + tags[5]) / 2, tags[0] * 0,
                                                        tags[1]]))  # fmt: skip


def test_adapting_with_item_text_cuts_the_text_to_each_tasks_items(dataset):
    from metarec.data.batch import query_of, support_of
    from metarec.learners.functional import InnerLoop, Weights, inner_loop, localize

    cfg = load_config(None, [*SMALL, "learner.name=finetune"])
    tasks = ColdStartTasks(_with_text(dataset, "join"), DATA)
    torch.manual_seed(0)
    net = build_learner(cfg, tasks).net.double()
    fast = {k: p.detach() for k, p in net.named_parameters()}
    buffers = dict(net.named_buffers())
    batch = tasks.test["new_item"][torch.arange(5)]
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    support, query = support_of(batch), query_of(batch)
    local = localize(net, fast, buffers, support["user"], support["item"])
    assert local.buffers["item_features.text"].shape[:2] == support["item"].shape
    with torch.enable_grad():
        weights, inner = Weights(fast, {}, buffers), InnerLoop(3, 0.3, first_order=True)
        sparse = inner.adapt(net, support, weights).predict(query)
        for t in range(5):  # one task at a time, whole tables
            task = {k: v[t] for k, v in support.items()}
            adapted = inner_loop(net, weights, task, inner)
            dense = torch.func.functional_call(net, (adapted, buffers),
                                               (query["user"][t], query["item"][t]))  # fmt: skip
            torch.testing.assert_close(sparse[t], dense, rtol=1e-10, atol=1e-10)
