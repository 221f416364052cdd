"""Tests for few-shot tasks: user filtering, support/query split, padding, seeds, splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from metarec.config.load import load_config
from metarec.data.scenarios import SCENARIOS, ColdStartTasks
from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.data.tasks import QUERY_KEYS, SUPPORT_KEYS, build_tasks, split_users
from metarec.datasets.synthetic import SyntheticConfig, SyntheticSettings, make_synthetic
from metarec.errors import DataError

N_ITEMS = 130
# User id -> number of warm ratings; 13 and 100 are the inclusive bounds of the defaults.
COUNTS = {"u12": 12, "u13": 13, "u40": 40, "u100": 100, "u101": 101, "u20": 20}
TENSOR_KEYS = ("user", *SUPPORT_KEYS, *QUERY_KEYS)


def hand_dataset() -> RecDataset:
    """Users with chosen rating counts; ids are not in row order, to catch row mix-ups."""
    rng = np.random.default_rng(123)
    item_ids = [f"i{k}" for k in rng.permutation(N_ITEMS)]
    items = FeatureTable(
        ids=item_ids,
        values={"genre": rng.integers(1, 4, size=(N_ITEMS, 1))},
        vocab={"genre": ["a", "b", "c"]},
    )
    user_ids = list(reversed(COUNTS))  # table order differs from the state's order
    users = FeatureTable(
        ids=user_ids,
        values={"gender": np.ones((len(user_ids), 1), dtype=np.int64)},
        vocab={"gender": ["F", "M"]},
    )
    warm = []
    for user, count in COUNTS.items():
        chosen = rng.choice(N_ITEMS, size=count, replace=False)
        warm.append(
            UserRatings(
                user=user,
                items=[item_ids[i] for i in chosen],
                ratings=rng.integers(1, 6, size=count).astype(np.float32),
            )
        )
    states = {state: [] for state in STATES}
    states["warm_state"] = warm
    return RecDataset(
        name="hand",
        users=users,
        items=items,
        item_text={item: item for item in item_ids},
        states=states,
    )


@pytest.fixture(scope="module")
def dataset():
    return hand_dataset()


@pytest.fixture(scope="module")
def tasks(dataset):
    return build_tasks(dataset, "warm_state", seed=0)


def ratings_of(dataset, user):
    return next(entry for entry in dataset.states["warm_state"] if entry.user == user)


def test_users_outside_the_bounds_are_dropped_bounds_inclusive(tasks):
    assert tasks.user_ids == ["u13", "u40", "u100", "u20"]  # kept, in the state's order
    assert len(tasks) == 4


def test_custom_bounds_are_applied(dataset):
    kept = build_tasks(dataset, "warm_state", seed=0, min_ratings=20, max_ratings=40)
    assert kept.user_ids == ["u40", "u20"]


def test_no_user_within_bounds_is_a_data_error(dataset):
    with pytest.raises(DataError, match="warm_state"):
        build_tasks(dataset, "warm_state", seed=0, min_ratings=41, max_ratings=99)


def test_user_field_is_the_user_table_row(dataset, tasks):
    for index, user in enumerate(tasks.user_ids):
        assert dataset.users.ids[int(tasks.user[index])] == user


def test_query_has_query_size_entries_and_support_the_rest(tasks):
    for index, user in enumerate(tasks.user_ids):
        assert int(tasks.query_mask[index].sum()) == 10
        assert int(tasks.support_mask[index].sum()) == COUNTS[user] - 10
    assert tasks.query_item.shape == (4, 10)
    assert tasks.support_item.shape == (4, max(COUNTS[u] for u in tasks.user_ids) - 10)


@pytest.mark.parametrize("query_size", [1, 5, 12])
def test_query_size_is_respected(dataset, query_size):
    built = build_tasks(dataset, "warm_state", seed=1, query_size=query_size)
    assert built.query_mask.sum(1).tolist() == [query_size] * len(built)
    for index, user in enumerate(built.user_ids):
        assert int(built.support_mask[index].sum()) == COUNTS[user] - query_size


def test_support_and_query_together_are_the_users_ratings(dataset, tasks):
    for index, user in enumerate(tasks.user_ids):
        entry = ratings_of(dataset, user)
        expected = Counter(
            (dataset.items.row_of[item], float(rating))
            for item, rating in zip(entry.items, entry.ratings, strict=True)
        )
        got = Counter()
        for kind in ("support", "query"):
            mask = getattr(tasks, f"{kind}_mask")[index]
            items = getattr(tasks, f"{kind}_item")[index][mask].tolist()
            ratings = getattr(tasks, f"{kind}_rating")[index][mask].tolist()
            got.update(zip(items, ratings, strict=True))
        assert got == expected, user
        # Support and query do not share an item.
        support = set(tasks.support_item[index][tasks.support_mask[index]].tolist())
        query = set(tasks.query_item[index][tasks.query_mask[index]].tolist())
        assert not support & query


def test_padding_is_masked_out_and_at_the_end(tasks):
    assert tasks.support_mask.dtype == torch.bool and tasks.query_mask.dtype == torch.bool
    for index, user in enumerate(tasks.user_ids):
        n_support = COUNTS[user] - 10
        mask = tasks.support_mask[index]
        assert mask[:n_support].all() and not mask[n_support:].any()
        # Padded entries hold the padding value, never a rating.
        assert (tasks.support_rating[index][~mask] == 0).all()
        assert (tasks.support_rating[index][mask] >= 1).all()
    assert (tasks.support_mask == 0).any()  # the fixture really has padding


def test_same_seed_gives_identical_tasks(dataset, tasks):
    again = build_tasks(dataset, "warm_state", seed=0)
    assert again.user_ids == tasks.user_ids
    for key in TENSOR_KEYS:
        assert torch.equal(getattr(again, key), getattr(tasks, key)), key


def test_another_seed_draws_another_query(dataset, tasks):
    other = build_tasks(dataset, "warm_state", seed=1)
    assert other.user_ids == tasks.user_ids
    differs = [
        set(other.query_item[index].tolist()) != set(tasks.query_item[index].tolist())
        for index in range(len(tasks))
    ]
    assert all(differs)


def test_list_seed_is_accepted_and_deterministic(dataset):
    first = build_tasks(dataset, "warm_state", seed=[0, 2])
    second = build_tasks(dataset, "warm_state", seed=[0, 2])
    third = build_tasks(dataset, "warm_state", seed=[0, 3])
    assert torch.equal(first.query_item, second.query_item)
    assert not torch.equal(first.query_item, third.query_item)


@pytest.mark.parametrize(("min_ratings", "query_size"), [(10, 10), (5, 10), (13, 13)])
def test_min_ratings_not_above_query_size_is_a_data_error(dataset, min_ratings, query_size):
    with pytest.raises(DataError, match="query_size"):
        build_tasks(dataset, "warm_state", seed=0, min_ratings=min_ratings, query_size=query_size)


@pytest.mark.parametrize(
    ("n_tasks", "fractions", "sizes"),
    [
        (100, (0.1, 0.2), (10, 20, 70)),
        (50, (0.1, 0.1), (5, 5, 40)),
        (10, (0.5,), (5, 5)),
        (7, (0.0, 0.0), (0, 0, 7)),
    ],
)
def test_split_users_is_disjoint_covering_with_the_requested_sizes(n_tasks, fractions, sizes):
    parts = split_users(n_tasks, fractions, seed=5)
    assert tuple(len(part) for part in parts) == sizes
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(n_tasks))
    for part in parts:
        assert (np.diff(part) > 0).all()  # each part in task order


def test_split_users_is_seeded():
    first = split_users(100, (0.1, 0.1), seed=0)
    again = split_users(100, (0.1, 0.1), seed=0)
    other = split_users(100, (0.1, 0.1), seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_subset_keeps_the_given_order(tasks):
    order = [3, 0, 2]
    sub = tasks.subset(order)
    assert sub.user_ids == [tasks.user_ids[i] for i in order]
    for key in TENSOR_KEYS:
        assert torch.equal(getattr(sub, key), getattr(tasks, key)[order]), key
    assert len(sub) == 3


def test_subset_accepts_numpy_indices(tasks):
    sub = tasks.subset(np.array([1, 3]))
    assert sub.user_ids == [tasks.user_ids[1], tasks.user_ids[3]]


def test_dataloader_collates_a_meta_batch_into_tensors(tasks):
    batch = next(iter(DataLoader(tasks, batch_size=3, shuffle=False)))
    assert set(batch) == set(TENSOR_KEYS)
    width = tasks.support_item.shape[1]
    assert batch["support_item"].shape == (3, width)
    assert batch["support_mask"].shape == (3, width)
    assert batch["query_rating"].shape == (3, 10)
    assert batch["user"].shape == (3,)
    for key in TENSOR_KEYS:
        assert torch.equal(batch[key], getattr(tasks, key)[:3]), key


def test_item_of_a_single_task_is_one_row(tasks):
    task = tasks[1]
    assert task["support_item"].shape == (tasks.support_item.shape[1],)
    assert torch.equal(task["query_rating"], tasks.query_rating[1])


# ColdStartTasks on a small synthetic dataset.

SMALL_DATA = SyntheticSettings(
    seed=2,
    synthetic=SyntheticConfig(n_users=150, n_items=80, min_ratings=30, max_ratings=60),
)


@pytest.fixture(scope="module")
def cold_start():
    return ColdStartTasks(make_synthetic(SMALL_DATA.synthetic, SMALL_DATA.seed), SMALL_DATA)


def test_train_val_and_warm_test_users_are_disjoint(cold_start):
    train = set(cold_start.train.user_ids)
    val = set(cold_start.val.user_ids)
    test = set(cold_start.test["warm"].user_ids)
    assert train and val and test
    assert not train & val and not train & test and not val & test


def test_warm_splits_cover_the_warm_users_in_the_requested_sizes(cold_start):
    warm = build_tasks(
        cold_start.dataset, "warm_state", seed=0, min_ratings=13, max_ratings=100
    ).user_ids
    train, val = cold_start.train.user_ids, cold_start.val.user_ids
    test = cold_start.test["warm"].user_ids
    assert sorted(train + val + test) == sorted(warm)
    assert len(val) == round(SMALL_DATA.val_fraction * len(warm))
    assert len(test) == round(SMALL_DATA.test_fraction * len(warm))


def test_every_scenario_has_a_test_set_from_its_state(cold_start):
    assert set(cold_start.test) == set(SCENARIOS)
    for scenario, state in SCENARIOS.items():
        users = set(cold_start.test[scenario].user_ids)
        assert users, scenario
        assert users <= {entry.user for entry in cold_start.dataset.states[state]}
    new_users = set(cold_start.test["new_user"].user_ids)
    assert not new_users & set(cold_start.train.user_ids)


def test_cold_start_tasks_are_identical_when_built_twice(cold_start):
    again = ColdStartTasks(make_synthetic(SMALL_DATA.synthetic, SMALL_DATA.seed), SMALL_DATA)
    pairs = [(cold_start.train, again.train), (cold_start.val, again.val)]
    pairs += [(cold_start.test[s], again.test[s]) for s in SCENARIOS]
    for first, second in pairs:
        assert first.user_ids == second.user_ids
        for key in TENSOR_KEYS:
            assert torch.equal(getattr(first, key), getattr(second, key)), key


def test_learner_settings_cannot_change_the_evaluation_tasks():
    base = ["data.synthetic.n_users=150", "data.synthetic.n_items=80",
            "data.synthetic.min_ratings=30", "data.synthetic.max_ratings=60"]  # fmt: skip
    one = load_config(None, [*base, "learner.inner_steps=1", "seed=1"])
    two = load_config(None, [*base, "learner.inner_steps=9", "learner.adapt=decision", "seed=8"])
    assert one.data == two.data
    built = [
        ColdStartTasks(make_synthetic(c.data.synthetic, c.data.seed), c.data) for c in (one, two)
    ]
    for scenario in SCENARIOS:
        first, second = built[0].test[scenario], built[1].test[scenario]
        assert first.user_ids == second.user_ids
        for key in TENSOR_KEYS:
            assert torch.equal(getattr(first, key), getattr(second, key)), (scenario, key)


def test_another_data_seed_changes_the_tasks(cold_start):
    other_cfg = SyntheticSettings(seed=3, synthetic=SMALL_DATA.synthetic)
    other = ColdStartTasks(make_synthetic(other_cfg.synthetic, other_cfg.seed), other_cfg)
    assert other.test["warm"].user_ids != cold_start.test["warm"].user_ids or not torch.equal(
        other.test["warm"].query_rating, cold_start.test["warm"].query_rating
    )


def test_train_ratings_are_every_masked_training_rating(cold_start):
    items, ratings = cold_start.train_ratings()
    train = cold_start.train
    expected = int(train.support_mask.sum() + train.query_mask.sum())
    assert items.shape == ratings.shape == (expected,)
    assert ratings.min() >= 1 and ratings.max() <= 5
    assert items.max() < len(cold_start.dataset.items)


def test_task_items_are_rows_of_the_item_table(cold_start):
    dataset = cold_start.dataset
    tasks = cold_start.test["new_item"]
    new_items = {
        dataset.items.row_of[item]
        for entry in dataset.states["item_cold_state"]
        for item in entry.items
    }
    used = set(tasks.query_item[tasks.query_mask].tolist())
    used |= set(tasks.support_item[tasks.support_mask].tolist())
    assert used <= new_items
