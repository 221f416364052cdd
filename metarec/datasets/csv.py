"""A researcher's own data (``data.name: csv``): a ratings table, optional item and user tables.

Files live under ``data.root`` and are named by ``data.csv.*``:

* ratings (required): one rating per line with at least the user, item and rating columns
  and, optionally, a timestamp (a number, e.g. Unix seconds); a header row names the columns,
  or, with ``data.csv.header: false``, ``data.csv.columns`` names them in file order;
* items (optional): a header row, the item id column, then feature columns (a cell may hold
  several values separated by ``data.csv.list_sep``) and the ``data.csv.text_columns`` joined
  into its text;
* users (optional): a header row, the user id column, then feature columns.

Separated by ``data.csv.sep`` (default: tab for ``.tsv``, else a comma; any string, e.g.
``::``), UTF-8, plain or ``.gz``; read with pandas, quoted fields as in the ``csv`` module
(a separator of several characters reads no quotes). The split maker draws the new users
(seeded by ``data.seed``) and the new items (first rated last, or the highest ids) and files
every rating under one of the four states by whether its user and its item are new; or
``data.csv.split`` names a published split file that places every rating
(:mod:`metarec.data.split`), and ``data.seed`` then draws only query ratings and the
validation and held-out warm users.

The MovieLens ratings load as they are (plain or ``.gz``); in an experiment file::

    data:  # ML-100K u.data: tab-separated, no header
      name: csv
      root: ~/data/ml-100k
      csv:
        {ratings: u.data, sep: "\\t", header: false, columns: [user, item, rating, timestamp]}

    data:  # ML-1M ratings.dat: '::'-separated, no header
      name: csv
      root: ~/data/ml-1m
      csv:
        {ratings: ratings.dat, sep: "::", header: false, columns: [user, item, rating, timestamp]}

Every problem is a :class:`DataError` naming the file and the line, column or id at fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metarec.config.domain import OPEN_FRACTION, setting
from metarec.config.schema import DataConfig
from metarec.data.schema import STATES, RecDataset, UserRatings
from metarec.data.source import DataSource
from metarec.data.split import place_ratings
from metarec.data.tables import feature_table, id_table, parse_number, read_rows
from metarec.errors import DataError
from metarec.registry import DATASETS

_NO_HEADER_HINT = "; a file without a header row needs data.csv.header=false and data.csv.columns"


@dataclass
class CsvConfig:
    """A researcher's own ratings table (``data.name: csv``), optional item and user tables,
    and how the split maker turns them into the four states (see ``metarec/data/generic.py``)."""

    ratings: str = setting(
        "ratings.csv",
        "ratings file (relative to data.root): a header (or see data.csv.header), then user, "
        "item, rating [, timestamp]; .tsv (or .tsv.gz) is tab-separated, else by data.csv.sep",
    )
    header: bool = setting(
        True, "the ratings file starts with a header row; false: data.csv.columns names them"
    )
    columns: list[str] = setting(
        [],
        "with header: false, the ratings file's column names in file order, e.g. "
        "[user, item, rating, timestamp] for MovieLens u.data or ratings.dat",
    )
    items: str | None = setting(
        None, "item table (relative to data.root): the item id column, then features and text"
    )
    users: str | None = setting(
        None, "user table (relative to data.root): the user id column, then features"
    )
    sep: str | None = setting(
        None, "field separator, any string (e.g. '\\t', '::'); default: tab for .tsv, else ','"
    )
    user_column: str = setting("user", "column of the user id (ratings and user table)")
    item_column: str = setting("item", "column of the item id (ratings and item table)")
    rating_column: str = setting("rating", "column of the rating")
    time_column: str = setting("timestamp", "column of the timestamp (a number); optional")
    rating_min: float = setting(1.0, "lowest rating of the declared scale")
    rating_max: float = setting(5.0, "highest rating of the declared scale")
    text_columns: list[str] = setting([], "item table columns joined into the item's text")
    list_sep: str = setting("|", "separator of a multi-valued feature cell, e.g. 'Comedy|Drama'")
    new_user_fraction: float = setting(
        0.2, "share of users drawn (seeded by data.seed) as new", domain=OPEN_FRACTION
    )
    new_items: str = setting(
        "time",
        "time: items first rated last are new (needs the timestamp column); id: the highest "
        "ids (numeric order when every id is a number) are new",
        choices=("time", "id"),
    )
    new_item_fraction: float = setting(0.2, "share of items that are new", domain=OPEN_FRACTION)
    split: str | None = setting(
        None,
        "a published split (relative to data.root): a header, then user, item, state (warm, "
        "new_user, new_item, new_user_item, warm_up) [, role: support | query] for every "
        "rating; replaces the split maker (new_user_fraction, new_items)",
    )


@dataclass
class CsvSettings(DataConfig):
    csv: CsvConfig = field(default_factory=CsvConfig)


def _check_fraction(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise DataError(f"key 'data.csv.{key}': {value} must lie strictly between 0 and 1")


def _new_items(
    cfg: CsvConfig, item_ids: list[str], first_time: dict[str, float], ratings_name: str
) -> set[str]:
    """The items that are new: first rated last (by time), or the highest ids."""
    count = int(round(cfg.new_item_fraction * len(item_ids)))
    if cfg.new_items == "time":
        if not first_time:
            raise DataError(
                f"{ratings_name}: data.csv.new_items=time needs a '{cfg.time_column}' column; "
                "add timestamps or set data.csv.new_items=id"
            )
        order = sorted(item_ids, key=lambda item: (first_time[item], item))
    else:
        numeric = all(item.lstrip("-").isdigit() for item in item_ids)
        order = sorted(item_ids, key=(lambda item: (int(item), item)) if numeric else None)
    return set(order[len(order) - count :]) if count else set()


def _draw_new(
    cfg: CsvConfig,
    rated_users: list[str],
    item_ids: list[str],
    first_time: dict[str, float],
    seed: int,
    ratings_name: str,
) -> tuple[set[str], set[str]]:
    """The split maker's new users (a seeded share) and new items (first rated last, or the
    highest ids)."""
    rated_items = [item for item in item_ids if item in first_time or cfg.new_items == "id"]
    new_items = _new_items(cfg, rated_items, first_time, ratings_name)
    rng = np.random.default_rng(seed)
    drawn = rng.permutation(len(rated_users))[
        : int(round(cfg.new_user_fraction * len(rated_users)))
    ]
    return {rated_users[i] for i in drawn.tolist()}, new_items


def _split_states(
    rated_users: list[str], per_user: dict, new_users: set[str], new_items: set[str]
) -> dict[str, list[UserRatings]]:
    """Every rating under the state of whether its user and its item are new."""
    states: dict[str, list[UserRatings]] = {state: [] for state in STATES}
    for user in rated_users:
        ratings = sorted(per_user[user])  # by time, then file order
        for new_item in (False, True):
            kept = [(item, rating) for _, _, item, rating in ratings
                    if (item in new_items) == new_item]  # fmt: skip
            if kept:
                state = STATES[int(user in new_users) + 2 * int(new_item)]
                states[state].append(UserRatings(
                    user=user, items=[item for item, _ in kept],
                    ratings=np.array([rating for _, rating in kept], dtype=np.float32),
                ))  # fmt: skip
    return states


def load_csv(root: str | Path, cfg: CsvConfig, seed: int = 0) -> RecDataset:
    """Load the ratings (and item and user tables) under ``root`` and split them into MeLU's
    four states: new users are a seeded ``new_user_fraction`` of the users, new items the
    ``new_item_fraction`` first rated last (``new_items: time``) or with the highest ids.

    Raises:
        DataError: a file is missing or malformed, an id is unknown or repeated, a rating is
            not a number or outside ``[rating_min, rating_max]``; the message names the file
            and the line, column or id.
    """
    root = Path(root)
    if not cfg.split:
        _check_fraction("new_user_fraction", cfg.new_user_fraction)
        _check_fraction("new_item_fraction", cfg.new_item_fraction)
    if not cfg.rating_min < cfg.rating_max:
        raise DataError(
            f"key 'data.csv.rating_min': {cfg.rating_min} must be below "
            f"data.csv.rating_max ({cfg.rating_max})"
        )
    if not cfg.header and not cfg.columns:
        raise DataError(
            "key 'data.csv.columns': empty, but data.csv.header is false; name the columns "
            "of the ratings file in order, e.g. [user, item, rating, timestamp]"
        )
    path = root / cfg.ratings
    required = (cfg.user_column, cfg.item_column, cfg.rating_column)
    columns = None if cfg.header else cfg.columns
    header, rows = read_rows(path, cfg, required, columns, hint=_NO_HEADER_HINT)
    user_at, item_at, rating_at = (header.index(column) for column in required)
    time_at = header.index(cfg.time_column) if cfg.time_column in header else None

    items = users = None
    text: dict[str, str] = {}
    fields: dict[str, dict[str, str]] = {}
    if cfg.items:
        item_path = root / cfg.items
        item_header, item_rows = read_rows(item_path, cfg, (cfg.item_column, *cfg.text_columns))
        items = feature_table(item_path, item_header, item_rows, cfg.item_column,
                               set(cfg.text_columns), cfg)  # fmt: skip
        for (_, row), item in zip(item_rows, items.ids, strict=True):
            fields[item] = dict(zip(item_header, row, strict=True))
            parts = [fields[item][column] for column in cfg.text_columns]
            text[item] = ". ".join(part for part in parts if part)
    if cfg.users:
        user_path = root / cfg.users
        user_header, user_rows = read_rows(user_path, cfg, (cfg.user_column,))
        users = feature_table(user_path, user_header, user_rows, cfg.user_column, set(), cfg)

    low, high = cfg.rating_min, cfg.rating_max
    per_user: dict[str, list[tuple[float, int, str, float]]] = {}
    first_line: dict[tuple[str, str], int] = {}
    first_time: dict[str, float] = {}
    for number, row in rows:
        user, item = row[user_at], row[item_at]
        if not user or not item:
            column = cfg.user_column if not user else cfg.item_column
            raise DataError(f"{path.name} line {number}: empty {column}")
        if users is not None and user not in users.row_of:
            raise DataError(f"{path.name} line {number}: unknown user {user} (not in {cfg.users})")
        if items is not None and item not in items.row_of:
            raise DataError(f"{path.name} line {number}: unknown item {item} (not in {cfg.items})")
        rating = parse_number(path, number, cfg.rating_column, row[rating_at])
        if not low <= rating <= high:
            raise DataError(
                f"{path.name} line {number}: rating {row[rating_at]} is outside the declared "
                f"scale [{low:g}, {high:g}] (data.csv.rating_min/rating_max)"
            )
        if (user, item) in first_line:
            raise DataError(
                f"{path.name} line {number}: duplicate rating of item {item} by user {user} "
                f"(first on line {first_line[user, item]})"
            )
        first_line[user, item] = number
        when = 0.0
        if time_at is not None:
            when = parse_number(path, number, cfg.time_column, row[time_at])
            first_time[item] = min(when, first_time.get(item, math.inf))
        per_user.setdefault(user, []).append((when, number, item, rating))
    if not per_user:
        raise DataError(f"{path.name}: no ratings" + (" after the header" if cfg.header else ""))

    user_ids = users.ids if users is not None else sorted(per_user)
    item_ids = items.ids if items is not None else sorted({i for _, i in first_line})
    users = users or id_table(user_ids, "user", constant=True)
    items = items or id_table(item_ids, "item_id", constant=False)
    rated_users = [user for user in user_ids if user in per_user]
    if cfg.split:
        ordered = {user: [(item, rating, number) for _, number, item, rating in
                          sorted(per_user[user])] for user in rated_users}  # fmt: skip
        states = place_ratings(ordered, root / cfg.split, path.name)
        new_users = {u.user for state in STATES[1::2] for u in states[state]}
        new_items = {i for state in STATES[2:] for u in states[state] for i in u.items}
    else:
        new_users, new_items = _draw_new(cfg, rated_users, item_ids, first_time, seed, path.name)
        states = _split_states(rated_users, per_user, new_users, new_items)
    meta = {
        "root": str(root),
        "files": {"ratings": cfg.ratings, "items": cfg.items, "users": cfg.users},
        "new_users": sorted(new_users),
        **({"split": cfg.split} if cfg.split else {}),
        "new_items": sorted(new_items),
    }
    if fields:
        meta["item_fields"] = fields
    return RecDataset(name=Csv.name, users=users, items=items, item_text=text, states=states,
                      rating_scale=(low, high), meta=meta, source=Csv)  # fmt: skip


@DATASETS.register("csv")
class Csv(DataSource):
    """Your own ratings (``data.csv``): split into the four states by the split maker, or by
    a published split file (``data.csv.split``)."""

    Settings = CsvSettings

    @classmethod
    def load(cls, cfg: CsvSettings, root: Path) -> RecDataset:
        return load_csv(root, cfg.csv, seed=cfg.seed)
