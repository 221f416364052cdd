"""Tests for the embedded synthetic dataset: determinism, ranges, the four states, features."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from metarec.data.schema import STATES
from metarec.datasets.synthetic import SyntheticConfig, make_synthetic

SMALL = SyntheticConfig(n_users=150, n_items=80, min_ratings=30, max_ratings=60)
OLD_USER_STATES = ("warm_state", "item_cold_state")
NEW_USER_STATES = ("user_cold_state", "user_and_item_cold_state")
OLD_ITEM_STATES = ("warm_state", "user_cold_state")
NEW_ITEM_STATES = ("item_cold_state", "user_and_item_cold_state")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SMALL, seed=3)


def flatten(dataset):
    """(state, user, item, rating) rows of every rating."""
    return [
        (state, entry.user, item, float(rating))
        for state in STATES
        for entry in dataset.states[state]
        for item, rating in zip(entry.items, entry.ratings, strict=True)
    ]


def year_of(dataset, item: str) -> int:
    match = re.search(r"\((\d{4})\)", dataset.item_text[item])
    assert match, dataset.item_text[item]
    return int(match.group(1))


def test_same_seed_gives_identical_data(data):
    again = make_synthetic(SMALL, seed=3)
    assert flatten(again) == flatten(data)
    assert again.item_text == data.item_text
    assert again.users.ids == data.users.ids and again.items.ids == data.items.ids
    for table, other in ((data.users, again.users), (data.items, again.items)):
        assert table.values.keys() == other.values.keys()
        for name in table.values:
            np.testing.assert_array_equal(table.values[name], other.values[name])
        assert table.vocab == other.vocab


def test_another_seed_gives_different_data(data):
    other = make_synthetic(SMALL, seed=4)
    assert flatten(other) != flatten(data)
    assert other.item_text != data.item_text
    assert any(
        not np.array_equal(data.items.values[name], other.items.values[name])
        for name in data.items.values
    )


def test_ratings_are_whole_stars_within_the_scale(data):
    low, high = data.rating_scale
    ratings = np.array([row[3] for row in flatten(data)])
    assert ratings.size > 0
    assert ratings.min() >= low and ratings.max() <= high
    np.testing.assert_array_equal(ratings, np.rint(ratings))
    # Not degenerate: more than one star value is used.
    assert len(np.unique(ratings)) >= 3
    for state in STATES:
        for entry in data.states[state]:
            assert entry.ratings.dtype == np.float32
            assert len(entry.items) == len(entry.ratings) > 0


def test_every_state_has_users(data):
    for state in STATES:
        assert data.states[state], state


def test_users_and_items_exist_in_the_tables(data):
    users, items = set(data.users.ids), set(data.items.ids)
    for _state, user, item, _rating in flatten(data):
        assert user in users and item in items


def test_states_are_disjoint_in_user_item_pairs(data):
    pairs = Counter((user, item) for _state, user, item, _rating in flatten(data))
    repeated = [pair for pair, count in pairs.items() if count > 1]
    assert not repeated, repeated[:5]


def test_each_user_appears_at_most_once_per_state(data):
    for state in STATES:
        users = [entry.user for entry in data.states[state]]
        assert len(users) == len(set(users)), state


def _items_of(data, states) -> set[str]:
    """Every item rated in any of ``states``."""
    return {item for state in states for entry in data.states[state] for item in entry.items}


def test_new_users_and_old_users_are_disjoint(data):
    old = {entry.user for state in OLD_USER_STATES for entry in data.states[state]}
    new = {entry.user for state in NEW_USER_STATES for entry in data.states[state]}
    assert old and new
    assert not old & new


def test_new_items_and_old_items_are_disjoint(data):
    old, new = _items_of(data, OLD_ITEM_STATES), _items_of(data, NEW_ITEM_STATES)
    assert old and new
    assert not old & new


def test_new_items_are_the_newest_released(data):
    old, new = _items_of(data, OLD_ITEM_STATES), _items_of(data, NEW_ITEM_STATES)
    assert max(year_of(data, item) for item in old) < min(year_of(data, item) for item in new)


def test_new_item_share_is_close_to_the_requested_fraction():
    cfg = SyntheticConfig(n_users=200, n_items=300, min_ratings=60, max_ratings=90)
    dataset = make_synthetic(cfg, seed=0)
    new = {
        item for state in NEW_ITEM_STATES for entry in dataset.states[state] for item in entry.items
    }
    rated = {item for _state, _user, item, _rating in flatten(dataset)}
    # Years are whole numbers, so ties may push the share a little over the fraction.
    share = len(new) / len(rated)
    assert cfg.new_item_fraction - 0.05 <= share <= cfg.new_item_fraction + 0.08


def test_zero_new_item_fraction_gives_no_new_items():
    cfg = SyntheticConfig(
        n_users=60, n_items=80, min_ratings=30, max_ratings=60, new_item_fraction=0.0
    )
    dataset = make_synthetic(cfg, seed=0)
    assert not dataset.states["item_cold_state"]
    assert not dataset.states["user_and_item_cold_state"]


def test_zero_new_user_fraction_gives_no_new_users():
    cfg = SyntheticConfig(
        n_users=60, n_items=80, min_ratings=30, max_ratings=60, new_user_fraction=0.0
    )
    dataset = make_synthetic(cfg, seed=0)
    assert not dataset.states["user_cold_state"]
    assert not dataset.states["user_and_item_cold_state"]
    assert dataset.states["warm_state"]


def test_each_user_rates_between_min_and_max_items(data):
    per_user = Counter(user for _state, user, _item, _rating in flatten(data))
    assert set(per_user) <= set(data.users.ids)
    assert min(per_user.values()) >= SMALL.min_ratings
    assert max(per_user.values()) <= SMALL.max_ratings
    # The counts are spread over the range, not all one value.
    assert len(set(per_user.values())) > 1


def test_every_item_has_a_text_naming_it(data):
    assert set(data.item_text) == set(data.items.ids)
    for item, text in data.item_text.items():
        assert text.strip()
        assert f"Movie {item} " in text


@pytest.mark.parametrize("table_name", ["users", "items"])
def test_feature_arrays_match_table_rows_and_vocab(data, table_name):
    table = getattr(data, table_name)
    sizes = table.vocab_sizes()
    assert set(table.values) == set(sizes)
    assert len(table.ids) == len(set(table.ids))
    expected_rows = SMALL.n_users if table_name == "users" else SMALL.n_items
    assert len(table) == expected_rows
    for name, values in table.values.items():
        assert values.ndim == 2 and values.shape[0] == len(table), name
        assert np.issubdtype(values.dtype, np.integer), name
        assert values.min() >= 0 and values.max() < sizes[name], name
        # Every row has at least one real (non-padding) value, in the first column.
        assert (values[:, 0] > 0).all(), name


def test_multi_valued_item_features_are_left_aligned_and_distinct(data):
    for name in ("genre", "actors"):
        values = data.items.values[name]
        assert values.shape[1] > 1, name
        for row in values:
            real = row[row > 0]
            # Padding only after the real values, and no value repeated within a row.
            assert (row[: len(real)] > 0).all() and (row[len(real) :] == 0).all()
            assert len(set(real.tolist())) == len(real)


def test_item_text_agrees_with_genre_features(data):
    genres = data.items.vocab["genre"]
    for row, item in enumerate(data.items.ids):
        listed = {genres[i - 1] for i in data.items.values["genre"][row] if i > 0}
        match = re.search(r"-rated (.+) film directed by", data.item_text[item])
        assert match, data.item_text[item]
        assert set(match.group(1).split(", ")) == listed


def test_user_means_vary_so_adaptation_can_help(data):
    ratings: dict[str, list[float]] = {}
    for _state, user, _item, rating in flatten(data):
        ratings.setdefault(user, []).append(rating)
    user_means = np.array([np.mean(values) for values in ratings.values()])
    assert user_means.std() > 0.3
    # A user's own mean tells more than the global mean: predicting each rating by the user's
    # mean has clearly lower squared error than predicting it by the global mean.
    all_ratings = np.concatenate([np.array(values) for values in ratings.values()])
    global_mse = np.mean((all_ratings - all_ratings.mean()) ** 2)
    user_mse = np.mean(np.concatenate([(np.array(v) - np.mean(v)) ** 2 for v in ratings.values()]))
    assert user_mse < 0.9 * global_mse
