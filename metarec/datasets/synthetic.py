"""An embedded, seeded dataset shaped like MeLU's MovieLens-1M, where adaptation helps.

Ratings come from a hidden model: ``r = 3.2 + b_user + b_item + p_user . v_item + noise``,
rounded and clipped to 1..5. Item vectors ``v_item`` follow from the item's genres and
director, so a network can learn them from features; user preferences ``p_user`` are mostly
individual (only a small part follows from age and gender), so a model that does not look at
the user's own support ratings cannot know them. Items released last are the new items;
a seeded share of users are the new users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metarec.config.domain import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, setting
from metarec.config.schema import DataConfig
from metarec.data.itemtext import render_item_text
from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.data.source import DataSource
from metarec.registry import DATASETS


@dataclass
class SyntheticConfig:
    """Sizes and noise of the embedded synthetic dataset."""

    n_users: int = setting(1000, "users in all states", domain=AT_LEAST_ONE)
    n_items: int = setting(500, "items in all states", domain=AT_LEAST_ONE)
    new_item_fraction: float = setting(
        0.35, "share of items that are 'new' (released last)", domain=FRACTION
    )
    new_user_fraction: float = setting(0.2, "share of users that are 'new'", domain=FRACTION)
    min_ratings: int = setting(20, "fewest ratings a user gives", domain=AT_LEAST_ONE)
    max_ratings: int = setting(90, "most ratings a user gives", domain=AT_LEAST_ONE)
    latent_dim: int = setting(4, "dimension of the hidden preference model", domain=AT_LEAST_ONE)
    noise: float = setting(0.3, "std of the rating noise before rounding", domain=NON_NEGATIVE)

    def __post_init__(self) -> None:
        if self.min_ratings > self.max_ratings:
            raise ValueError(
                f"key 'data.synthetic.max_ratings': {self.max_ratings} is below "
                f"data.synthetic.min_ratings ({self.min_ratings})"
            )


@dataclass
class SyntheticSettings(DataConfig):
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


RATES = ["G", "PG", "PG-13", "R", "NC-17", "UNRATED"]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi",
          "Thriller", "Animation", "Documentary", "Fantasy", "Crime", "Family"]  # fmt: skip
TEXT_TEMPLATE = (
    "{title} ({year}). A {rate}-rated {genre} film directed by {director}, starring {actors}."
)


def _pad(rows: list[list[int]]) -> np.ndarray:
    width = max(1, max(len(row) for row in rows))
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _items(rng: np.random.Generator, cfg: SyntheticConfig):
    n_directors, n_actors = max(4, cfg.n_items // 8), max(8, cfg.n_items // 3)
    genre_vecs = rng.normal(0, 1, (len(GENRES), cfg.latent_dim))
    director_vecs = rng.normal(0, 0.5, (n_directors, cfg.latent_dim))
    director_bias = rng.normal(0, 0.3, n_directors)
    rows = {"rate": [], "genre": [], "director": [], "actors": []}
    vectors, biases, text, years, fields = [], [], {}, [], {}
    for item in range(cfg.n_items):
        genres = rng.choice(len(GENRES), size=rng.integers(1, 4), replace=False)
        director = int(rng.integers(n_directors))
        actors = rng.choice(n_actors, size=rng.integers(2, 5), replace=False)
        rate = int(rng.integers(len(RATES)))
        rows["rate"].append([rate + 1])
        rows["genre"].append([int(g) + 1 for g in genres])
        rows["director"].append([director + 1])
        rows["actors"].append([int(a) + 1 for a in actors])
        vectors.append(genre_vecs[genres].mean(0) + director_vecs[director])
        biases.append(director_bias[director] + rng.normal(0, 0.15))
        years.append(int(rng.integers(1970, 2001)))
        fields[str(item + 1)] = {
            "title": f"Movie {item + 1}",
            "year": str(years[-1]),
            "rate": RATES[rate],
            "genre": ", ".join(GENRES[g] for g in genres),
            "director": f"Director {director + 1}",
            "actors": ", ".join(f"Actor {a + 1}" for a in actors),
        }
        text[str(item + 1)] = render_item_text(fields[str(item + 1)], TEXT_TEMPLATE)
    vocab = {
        "rate": RATES,
        "genre": GENRES,
        "director": [f"Director {d + 1}" for d in range(n_directors)],
        "actors": [f"Actor {a + 1}" for a in range(n_actors)],
    }
    ids = [str(i + 1) for i in range(cfg.n_items)]
    table = FeatureTable(ids, {k: _pad(v) for k, v in rows.items()}, vocab)
    return table, np.array(vectors), np.array(biases), np.array(years), text, fields


def _users(rng: np.random.Generator, cfg: SyntheticConfig):
    n_zip = max(4, cfg.n_users // 16)
    values = {
        "gender": rng.integers(2, size=cfg.n_users),
        "age": rng.integers(7, size=cfg.n_users),
        "occupation": rng.integers(21, size=cfg.n_users),
        "zip": rng.integers(n_zip, size=cfg.n_users),
    }
    group_pref = rng.normal(0, 0.4, (2, 7, cfg.latent_dim))  # what demographics tell
    prefs = group_pref[values["gender"], values["age"]]
    prefs = prefs + rng.normal(0, 0.8, (cfg.n_users, cfg.latent_dim))  # what only ratings tell
    biases = rng.normal(0, 0.5, cfg.n_users)
    vocab = {
        "gender": ["F", "M"],
        "age": [str(a) for a in (1, 18, 25, 35, 45, 50, 56)],
        "occupation": [str(o) for o in range(21)],
        "zip": [f"{z:05d}" for z in range(n_zip)],
    }
    ids = [str(u + 1) for u in range(cfg.n_users)]
    table = FeatureTable(
        ids, {k: (v + 1)[:, None].astype(np.int64) for k, v in values.items()}, vocab
    )
    return table, prefs, biases


def make_synthetic(cfg: SyntheticConfig, seed: int = 0) -> RecDataset:
    """Generate the synthetic dataset; the same config and seed give the same data."""
    rng = np.random.default_rng(seed)
    items, item_vecs, item_bias, years, text, fields = _items(rng, cfg)
    users, user_prefs, user_bias = _users(rng, cfg)
    newest_first = np.argsort(-years, kind="stable")
    new_items = np.zeros(cfg.n_items, dtype=bool)
    new_items[newest_first[: int(round(cfg.new_item_fraction * cfg.n_items))]] = True
    new_users = rng.random(cfg.n_users) < cfg.new_user_fraction
    popularity = rng.gamma(1.0, 1.0, cfg.n_items)
    popularity /= popularity.sum()
    states: dict[str, list[UserRatings]] = {state: [] for state in STATES}
    for user in range(cfg.n_users):
        n_rated = int(rng.integers(cfg.min_ratings, cfg.max_ratings + 1))
        rated = rng.choice(cfg.n_items, size=min(n_rated, cfg.n_items), replace=False, p=popularity)
        score = 3.2 + user_bias[user] + item_bias[rated] + item_vecs[rated] @ user_prefs[user]
        ratings = np.clip(np.rint(score + rng.normal(0, cfg.noise, len(rated))), 1, 5)
        for new_item in (False, True):
            keep = new_items[rated] == new_item
            if not keep.any():
                continue
            state = STATES[int(new_users[user]) + 2 * int(new_item)]
            states[state].append(
                UserRatings(
                    user=users.ids[user],
                    items=[items.ids[i] for i in rated[keep]],
                    ratings=ratings[keep].astype(np.float32),
                )
            )
    return RecDataset(name="synthetic", users=users, items=items, item_text=text, states=states,
                      meta={"item_fields": fields}, source=Synthetic)  # fmt: skip


@DATASETS.register("synthetic")
class Synthetic(DataSource):
    """The embedded synthetic dataset (``data.synthetic``): no files, made from its seed."""

    Settings = SyntheticSettings
    on_disk = False

    @classmethod
    def load(cls, cfg: SyntheticSettings, root: Path) -> RecDataset:
        return make_synthetic(cfg.synthetic, seed=cfg.seed)
