"""Published splits as data: every (user, item) rating filed under one state.

A split file is a table with a header and the columns ``user``, ``item``, ``state`` and,
optionally, ``role``: ``state`` is ``warm``, ``new_user``, ``new_item``, ``new_user_item`` or
``warm_up`` (a published warm-up test: tasks inside held-out ratings of warm users), and
``role`` is ``support`` or ``query`` where the split fixes which ratings a task predicts (the
seeded query draw then does not apply). ``data.csv.split`` points the CSV loader at one; MeLU's
JSON states go through :func:`states_from_rows` too, the one place a fixed split becomes the
states tasks are built from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from metarec.data.files import read_text
from metarec.data.schema import STATES, WARM_UP_STATE, UserRatings
from metarec.errors import DataError

# A split file's state names -> the states of a RecDataset.
SPLIT_STATES = {
    "warm": STATES[0],
    "new_user": STATES[1],
    "new_item": STATES[2],
    "new_user_item": STATES[3],
    "warm_up": WARM_UP_STATE,
}
ROLES = ("support", "query")
COLUMNS = ("user", "item", "state")


class Placed(NamedTuple):
    """A user's ratings placed in one state, and where they came from (for messages)."""

    state: str  # a RecDataset state (``warm_state``, ...)
    user: str
    items: list[str]
    ratings: np.ndarray  # float32
    query: np.ndarray | None  # the fixed query role of each rating; None: drawn
    origin: str


def read_split(path: Path) -> dict[tuple[str, str], tuple[str, bool | None, int]]:
    """``(user, item) -> (state, query role or None, line)`` of a split file."""
    rows = csv.reader(io.StringIO(read_text(path)))
    header = [name.strip() for name in next(rows, [])]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise DataError(f"{path.name} line 1: split header lacks {missing} (has {header})")
    at = {name: header.index(name) for name in (*COLUMNS, "role") if name in header}
    placed: dict[tuple[str, str], tuple[str, bool | None, int]] = {}
    for number, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path.name} line {number}: {len(row)} fields, header has {len(header)}"
            )
        user, item, state = (row[at[name]].strip() for name in COLUMNS)
        if state not in SPLIT_STATES:
            raise DataError(
                f"{path.name} line {number}: state '{state}' is not one of "
                f"{', '.join(SPLIT_STATES)}"
            )
        role = row[at["role"]].strip() if "role" in at else ""
        if role and role not in ROLES:
            raise DataError(f"{path.name} line {number}: role '{role}' is not support or query")
        if (user, item) in placed:
            first = placed[user, item][2]
            raise DataError(
                f"{path.name} line {number}: user {user}, item {item} is placed twice "
                f"(first on line {first})"
            )
        placed[user, item] = (SPLIT_STATES[state], role == "query" if role else None, number)
    if not placed:
        raise DataError(f"{path.name}: no rows after the header")
    return placed


def states_from_rows(rows: Iterable[Placed]) -> dict[str, list[UserRatings]]:
    """The states of placed ratings: each state's users in the order given (a user placed in
    a state twice has the ratings joined). A (user, item) pair in two states is an error
    naming both origins."""
    grouped: dict[str, dict[str, list[Placed]]] = {state: {} for state in STATES}
    seen: dict[str, list[tuple[Placed, set[str]]]] = {}
    for row in rows:
        items = set(row.items)
        for earlier, earlier_items in seen.get(row.user, ()):
            common = items & earlier_items if earlier.state != row.state else ()
            if common:
                item = next(item for item in row.items if item in common)
                raise DataError(
                    f"user {row.user}, item {item} is rated in both {earlier.origin} and "
                    f"{row.origin}"
                )
        seen.setdefault(row.user, []).append((row, items))
        grouped.setdefault(row.state, {}).setdefault(row.user, []).append(row)
    return {
        state: [_user_ratings(user, placed) for user, placed in users.items()]
        for state, users in grouped.items()
    }


def _user_ratings(user: str, placed: list[Placed]) -> UserRatings:
    if len(placed) == 1 and placed[0].query is None:
        return UserRatings(user, placed[0].items, placed[0].ratings)
    items = [item for row in placed for item in row.items]
    ratings = np.concatenate([row.ratings for row in placed])
    if all(row.query is None for row in placed):
        return UserRatings(user, items, ratings)
    if any(row.query is None for row in placed):
        row = next(row for row in placed if row.query is None)
        raise DataError(f"{row.origin}: user {user} has ratings with and without a role")
    query = np.concatenate([row.query for row in placed])
    if query.all() or not query.any():
        raise DataError(f"{placed[0].origin}: user {user} needs both support and query ratings")
    return UserRatings(user, items, ratings, query=query)


def place_ratings(
    per_user: dict[str, list[tuple[str, float, int]]], split_path: Path, ratings_name: str
) -> dict[str, list[UserRatings]]:
    """States of the ratings ``user -> [(item, rating, line)]`` (each user's in order) as the
    split file says; a rating the split does not place, or a placement no rating has, is an
    error naming its line."""
    split = read_split(split_path)
    rows = []
    for user, ratings in per_user.items():
        by_state: dict[str, list[tuple[str, float, bool | None, int]]] = {}
        for item, rating, number in ratings:
            where = split.pop((user, item), None)
            if where is None:
                raise DataError(
                    f"{ratings_name} line {number}: user {user}, item {item} is in no state of "
                    f"{split_path.name}"
                )
            state, query, line = where
            by_state.setdefault(state, []).append((item, rating, query, line))
        for state, placed in by_state.items():
            roles = [query for _, _, query, _ in placed]
            rows.append(Placed(
                state, user, [item for item, _, _, _ in placed],
                np.array([rating for _, rating, _, _ in placed], dtype=np.float32),
                None if None in roles else np.array(roles, dtype=bool),
                f"{split_path.name} line {placed[0][3]}",
            ))  # fmt: skip
    if split:
        (user, item), (_, _, line) = next(iter(split.items()))
        raise DataError(
            f"{split_path.name} line {line}: user {user}, item {item} has no rating in "
            f"{ratings_name}"
        )
    return states_from_rows(rows)
