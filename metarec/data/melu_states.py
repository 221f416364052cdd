"""MeLU's rating states: ``{state}.json`` (``{user_id: [movie_id, ...]}``) and ``{state}_y.json``
(``{user_id: [rating, ...]}`` in the same order), read into placed ratings
(:mod:`metarec.data.split`), each problem a :class:`DataError` naming the file and user. MetaHIN's
states (:mod:`metarec.data.metahin`) share the format and its readers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from metarec.data.files import read_text
from metarec.data.schema import FeatureTable, UserRatings
from metarec.data.split import Placed
from metarec.errors import DataError

ITEMS_FILE = "movies_extrainfos.dat"
USERS_FILE = "users.dat"
RATING_RANGE = (1.0, 5.0)
# MeLU merged MovieLens' duplicate titles 860 -> 811 and 1795 -> 1741 (kept id: merged id), so
# a user who rated both copies lists the kept id twice (4 such pairs in warm_state, none across
# states). Those repeats are real ratings and are kept; any other repeat is an error.
MELU_MERGED_MOVIES: dict[str, str] = {"811": "860", "1741": "1795"}


def read_json_lists(path: Path) -> dict[str, list]:
    """A ``{user_id: [...]}`` JSON file, checked to be a dict of lists, each user once."""
    text = read_text(path)

    def unique_keys(pairs: list[tuple[str, object]]) -> dict:
        # json.loads would keep a repeated key's last value and drop the others unseen.
        data = dict(pairs)
        if len(data) != len(pairs):
            user, count = next(iter(_repeats([user for user, _ in pairs]).items()))
            raise DataError(
                f"{path.name}: user {user} is listed {count} times; JSON keeps only the last "
                "list, so the others' ratings would be lost"
            )
        return data

    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path.name}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from err
    except RecursionError as err:
        raise DataError(f"{path.name}: JSON nested too deeply") from err
    if not isinstance(data, dict):
        raise DataError(
            f"{path.name}: expected a JSON object {{user_id: [...]}}, got {type(data).__name__}"
        )
    for user, values in data.items():
        if not isinstance(values, list):
            raise DataError(
                f"{path.name}: user {user}: expected a list, got {type(values).__name__}"
            )
    return data


def check_same_users(x_path: Path, y_path: Path, x: dict, y: dict) -> None:
    """Both files of a state must list the same users."""
    for here, there, present, absent in ((x, y, x_path, y_path), (y, x, y_path, x_path)):
        extra = next((user for user in here if user not in there), None)
        if extra is not None:
            raise DataError(f"user {extra} is in {present.name} but not in {absent.name}")


def _check_movies(path: Path, user: str, movies: list, known: dict[str, int]) -> None:
    """Movie ids must be known strings, each once in the user's list (see MELU_MERGED_MOVIES)."""
    # set(map(type, ...)) runs in C; the per-item loop only runs to name the culprit.
    if not set(map(type, movies)) <= {str}:
        bad = next(movie for movie in movies if not isinstance(movie, str))
        raise DataError(f"{path.name}: user {user}: movie id {bad!r} is not a string")
    # difference() with a dict probes the dict per movie; `- known.keys()` would scan all keys.
    unknown = set(movies).difference(known)
    if unknown:
        first = next(movie for movie in movies if movie in unknown)
        raise DataError(f"{path.name}: user {user}: unknown movie {first} (not in {ITEMS_FILE})")
    if len(set(movies)) != len(movies):
        for movie, count in _repeats(movies).items():
            if movie not in MELU_MERGED_MOVIES or count > 2:
                raise DataError(f"{path.name}: user {user}: movie {movie} appears {count} times")


def _repeats(values: list[str]) -> dict[str, int]:
    """Values (movies, users) listed more than once, with their counts, in first-seen order."""
    counts = Counter(values)
    return {movie: count for movie, count in counts.items() if count > 1}


def to_ratings(path: Path, user: str, values: list) -> np.ndarray:
    """Ratings as float32, each a real number within :data:`RATING_RANGE`."""
    low, high = RATING_RANGE
    # Exact types: bool is an int subclass, and numpy would happily parse numeric strings.
    if set(map(type, values)) <= {int, float}:
        try:
            ratings = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an int beyond float range; the loop below names it
            ratings = np.array([np.nan])
        if not np.any(~((ratings >= low) & (ratings <= high))):  # NaN fails both comparisons
            return ratings.astype(np.float32)
    for position, value in enumerate(values):
        # Plain comparisons: NaN fails them, and huge ints need no float conversion.
        if type(value) not in (int, float) or not low <= value <= high:
            raise DataError(
                f"{path.name}: user {user}: rating #{position + 1} is {value!r}, "
                f"expected a number in [{low:g}, {high:g}]"
            )
    raise AssertionError("unreachable: the fast check failed but no rating is bad")


def state_rows(
    state: str, x_path: Path, y_path: Path, users: FeatureTable, items: FeatureTable
) -> list[Placed]:
    """One state's ratings, users in the key order of the ``{state}.json`` file."""
    x, y = read_json_lists(x_path), read_json_lists(y_path)
    check_same_users(x_path, y_path, x, y)
    rows = []
    for user, movies in x.items():
        if user not in users.row_of:
            raise DataError(f"{x_path.name}: unknown user {user} (not in {USERS_FILE})")
        ratings = y[user]
        if len(ratings) != len(movies):
            raise DataError(
                f"{x_path.name} and {y_path.name} disagree for user {user}: "
                f"{len(movies)} movies but {len(ratings)} ratings"
            )
        _check_movies(x_path, user, movies, items.row_of)
        ratings = to_ratings(y_path, user, ratings)
        rows.append(Placed(state, user, movies, ratings, None, x_path.name))
    return rows


def merged_repeats(states: dict[str, list[UserRatings]]) -> list[tuple[str, str, str]]:
    """(state, user, movie) of the tolerated repeats, so callers can see or drop them."""
    return [
        (state, entry.user, movie)
        for state, entries in states.items()
        for entry in entries
        if len(set(entry.items)) != len(entry.items)
        for movie in _repeats(entry.items)
    ]
