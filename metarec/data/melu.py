"""Loader for MeLU's processed MovieLens-1M (Lee et al., KDD 2019).

The data folder holds MeLU's files from ``movielens/ml-1m/`` of ``hoyeoplee/MeLU``, each either
plain (``NAME``) or gzipped (``NAME.gz``); the plain file wins when both exist:

* the four rating states ``{state}.json`` (``{user_id: [movie_id, ...]}``) and
  ``{state}_y.json`` (``{user_id: [rating, ...]}`` in the same order), for ``state`` in
  :data:`~metarec.data.schema.STATES`;
* ``movies_extrainfos.dat``: ``movie_id::title::year::rate::released::genre::director::writer::
  actors::plot::poster_url`` (UTF-8; list fields are ``", "``-separated, ``N/A`` is missing);
* ``users.dat``: ``UserID::Gender::Age::Occupation::Zip-code``;
* optionally, MeLU's vocabularies ``m_gender.txt``, ``m_age.txt``, ``m_occupation.txt``,
  ``m_zipcode.txt``, ``m_rate.txt``, ``m_genre.txt``, ``m_director.txt``, ``m_actor.txt``
  (one value a line): every value of the features must be listed in its file.

Every problem with the input is reported as a :class:`DataError` naming the file and the line,
user or movie at fault. Finding, reading, verifying and downloading the files is
:mod:`metarec.data.melu_files`; this module parses them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

# Re-exported from their old home here: MISSING, render_item_text, MELU_BASE_URL, MELU_SHA256,
# FileStatus, download_melu, verify_melu.
from metarec.data.itemtext import MISSING, is_missing, render_item_text  # noqa: F401
from metarec.data.melu_files import (  # noqa: F401
    MELU_BASE_URL,
    MELU_SHA256,
    FileStatus,
    download_melu,
    locate,
    read_text,
    require_all,
    verify_melu,
)
from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.data.vocab import encode_values, unique_ids
from metarec.errors import DataError

DATASET_NAME = "melu-ml1m"
# MeLU merged MovieLens' duplicate titles 860 -> 811 and 1795 -> 1741 (kept id: merged id), so
# a user who rated both copies lists the kept id twice (4 such pairs in warm_state, none across
# states). Those repeats are real ratings and are kept; any other repeat is an error.
MELU_MERGED_MOVIES: dict[str, str] = {"811": "860", "1741": "1795"}

ITEMS_FILE = "movies_extrainfos.dat"
USERS_FILE = "users.dat"
ITEM_COLUMNS = (
    "movie_id",
    "title",
    "year",
    "rate",
    "released",
    "genre",
    "director",
    "writer",
    "actors",
    "plot",
    "poster_url",
)
USER_COLUMNS = ("user_id", "gender", "age", "occupation", "zip")
ITEM_SINGLE_FEATURES = ("rate",)
ITEM_MULTI_FEATURES = ("genre", "director", "actors")
USER_FEATURES = USER_COLUMNS[1:]
# Raw fields kept in ``meta["item_fields"]``; the poster URL and the id itself are left out.
ITEM_TEXT_FIELDS = ITEM_COLUMNS[1:-1]
LIST_SEP = ", "
RATING_RANGE = (1.0, 5.0)

# MeLU's vocabulary file of each feature; MeLU's data_generation.py looks every value up in it.
VOCAB_FILES = {
    "gender": "m_gender.txt",
    "age": "m_age.txt",
    "occupation": "m_occupation.txt",
    "zip": "m_zipcode.txt",
    "rate": "m_rate.txt",
    "genre": "m_genre.txt",
    "director": "m_director.txt",
    "actors": "m_actor.txt",
}
# Without its file, a feature with a closed set of values is checked against it: the ML-1M
# README's genders, ages and occupation codes, and MeLU's six MPAA ratings (m_rate.txt).
BUILTIN_VOCAB = {
    "gender": ("F", "M"),
    "age": ("1", "18", "25", "35", "45", "50", "56"),
    "occupation": tuple(str(code) for code in range(21)),
    "rate": ("G", "PG", "PG-13", "R", "NC-17", "UNRATED"),
}

# Sentences (split after a '.' followed by whitespace) whose fields are missing are dropped.
ITEM_TEXT_TEMPLATE = (
    "{title} ({year}). Genre: {genre}. Director: {director}. Starring: {actors}. {plot}"
)

_SNIPPET_CHARS = 60


# ---------------------------------------------------------------------------------------------
# Lines and rows
# ---------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with 1-based numbers.

    Split on ``\\n`` only: ``str.splitlines`` would also break on characters such as U+2028
    that may legitimately occur inside a plot.
    """
    text = read_text(path)
    numbered = enumerate((line.rstrip("\r") for line in text.split("\n")), start=1)
    return [(number, line) for number, line in numbered if line.strip()]


def _dat_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """``::``-separated rows as dicts keyed by ``columns``, checking the field count."""
    rows = []
    for number, line in _lines(path):
        fields = line.split("::")
        if len(fields) != len(columns):
            raise DataError(
                f"{path.name} line {number}: expected {len(columns)} '::'-separated fields, "
                f"found {len(fields)}: {line[:_SNIPPET_CHARS]!r}"
            )
        row = dict(zip(columns, (field.strip() for field in fields), strict=True))
        if not row[columns[0]]:
            raise DataError(
                f"{path.name} line {number}: empty {columns[0]}: {line[:_SNIPPET_CHARS]!r}"
            )
        rows.append((number, row))
    return rows


# ---------------------------------------------------------------------------------------------
# Features and text
# ---------------------------------------------------------------------------------------------


def _split_list(value: str) -> list[str]:
    """List field as distinct values in order; missing parts are dropped."""
    if is_missing(value):
        return []
    parts = (part.strip() for part in value.split(LIST_SEP))
    return list(dict.fromkeys(part for part in parts if not is_missing(part)))


def _feature_table(
    ids: list[str], single: dict[str, list[str]], multi: dict[str, list[list[str]]]
) -> FeatureTable:
    """Encode single-valued (missing -> no value) and multi-valued columns into a table."""
    columns = {name: [[] if is_missing(v) else [v] for v in vals] for name, vals in single.items()}
    columns.update(multi)
    values: dict[str, np.ndarray] = {}
    vocab: dict[str, list[str]] = {}
    for name, rows in columns.items():
        values[name], vocab[name] = encode_values(rows)
    return FeatureTable(ids=ids, values=values, vocab=vocab)


def _vocabularies(root: Path) -> dict[str, tuple[set[str], str]]:
    """Per feature: the values it may take, and how a message says a value is not among them.

    MeLU's vocabulary file where ``root`` holds it, else :data:`BUILTIN_VOCAB`; a feature with
    neither (zip, genre, director, actors without their files) is not checked.
    """
    vocab = {}
    for feature, name in VOCAB_FILES.items():
        path = locate(root, name)
        if path is not None:
            vocab[feature] = ({line.strip() for _, line in _lines(path)}, f"not in {path.name}")
        elif feature in BUILTIN_VOCAB:
            values = BUILTIN_VOCAB[feature]
            vocab[feature] = (set(values), f"not one of {', '.join(values)}")
    return vocab


def _vocab_key(feature: str, value: str) -> str:
    """The form MeLU looks a value up in: a zip code's first five characters, a director
    without a parenthesised note (``Jane Doe(co-director)``)."""
    if feature == "zip":
        return value[:5]
    if feature == "director":
        return re.sub(r"\([^()]*\)", "", value).strip()
    return value


def _check_vocab(
    path: Path,
    rows: list[tuple[int, dict[str, str]]],
    features: tuple[str, ...],
    vocab: dict[str, tuple[set[str], str]],
) -> None:
    """Every value of ``features`` (each part of a list field) is in its vocabulary, so that a
    typo is an error rather than one more embedding; missing values (``N/A``) are allowed."""
    checked = [feature for feature in features if feature in vocab]
    for number, row in rows:
        for feature in checked:
            allowed, problem = vocab[feature]
            raw = row[feature]
            values = _split_list(raw) if feature in ITEM_MULTI_FEATURES else [raw]
            for value in values:
                key = _vocab_key(feature, value)
                if not is_missing(value) and key not in allowed:
                    read_as = f" (read as {key!r})" if key != value else ""
                    raise DataError(
                        f"{path.name} line {number}: {feature} {value!r}{read_as} is {problem}"
                    )


def _load_items(
    path: Path, vocab: dict[str, tuple[set[str], str]]
) -> tuple[FeatureTable, dict[str, str], dict[str, dict[str, str]]]:
    """Item features, rendered text and raw text fields from ``movies_extrainfos.dat``."""
    rows = _dat_rows(path, ITEM_COLUMNS)
    ids = unique_ids(((number, row["movie_id"]) for number, row in rows), path.name, "movie_id")
    _check_vocab(path, rows, ITEM_SINGLE_FEATURES + ITEM_MULTI_FEATURES, vocab)
    single = {name: [row[name] for _, row in rows] for name in ITEM_SINGLE_FEATURES}
    multi = {name: [_split_list(row[name]) for _, row in rows] for name in ITEM_MULTI_FEATURES}
    fields = {row["movie_id"]: {name: row[name] for name in ITEM_TEXT_FIELDS} for _, row in rows}
    text = {movie: render_item_text(raw, ITEM_TEXT_TEMPLATE) for movie, raw in fields.items()}
    return _feature_table(ids, single, multi), text, fields


def _load_users(path: Path, vocab: dict[str, tuple[set[str], str]]) -> FeatureTable:
    """User features from ``users.dat``."""
    rows = _dat_rows(path, USER_COLUMNS)
    ids = unique_ids(((number, row["user_id"]) for number, row in rows), path.name, "user_id")
    _check_vocab(path, rows, USER_FEATURES, vocab)
    single = {name: [row[name] for _, row in rows] for name in USER_FEATURES}
    return _feature_table(ids, single, {})


# ---------------------------------------------------------------------------------------------
# Rating states
# ---------------------------------------------------------------------------------------------


def _read_json_lists(path: Path) -> dict[str, list]:
    """A ``{user_id: [...]}`` JSON file, checked to be a dict of lists."""
    text = read_text(path)
    try:
        data = json.loads(text)
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


def _check_same_users(x_path: Path, y_path: Path, x: dict, y: dict) -> None:
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


def _repeats(movies: list[str]) -> dict[str, int]:
    """Movies listed more than once, with their counts, in first-seen order."""
    counts = Counter(movies)
    return {movie: count for movie, count in counts.items() if count > 1}


def _to_ratings(path: Path, user: str, values: list) -> np.ndarray:
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


def _load_state(
    x_path: Path, y_path: Path, users: FeatureTable, items: FeatureTable
) -> list[UserRatings]:
    """One state's per-user ratings, in the key order of the ``{state}.json`` file."""
    x, y = _read_json_lists(x_path), _read_json_lists(y_path)
    _check_same_users(x_path, y_path, x, y)
    out = []
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
        out.append(UserRatings(user=user, items=movies, ratings=_to_ratings(y_path, user, ratings)))
    return out


def _merged_repeats(states: dict[str, list[UserRatings]]) -> list[tuple[str, str, str]]:
    """(state, user, movie) of the tolerated repeats, so callers can see or drop them."""
    return [
        (state, entry.user, movie)
        for state, entries in states.items()
        for entry in entries
        if len(set(entry.items)) != len(entry.items)
        for movie in _repeats(entry.items)
    ]


def _check_disjoint_states(states: dict[str, list[UserRatings]], file_of: dict[str, str]) -> None:
    """Each (user, movie) pair may be rated in one state only, as in MeLU's split.

    ``file_of`` maps a state to the basename of its movie-list file, for the message.
    """
    seen: dict[str, list[tuple[str, set[str]]]] = {}
    for state, entries in states.items():
        for entry in entries:
            movies = set(entry.items)
            for earlier, earlier_movies in seen.get(entry.user, ()):
                common = movies & earlier_movies
                if common:
                    movie = next(m for m in entry.items if m in common)
                    raise DataError(
                        f"user {entry.user}, movie {movie} is rated in both "
                        f"{file_of[earlier]} and {file_of[state]}"
                    )
            seen.setdefault(entry.user, []).append((state, movies))


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def load_melu(root: str | Path) -> RecDataset:
    """Load MeLU's MovieLens-1M from ``root`` into a :class:`RecDataset` named ``melu-ml1m``.

    Users carry ``gender``, ``age``, ``occupation`` and ``zip`` (width 1); items carry ``rate``
    (width 1) and the multi-valued ``genre``, ``director`` and ``actors`` (zero-padded).
    Vocabularies follow first-seen order in the files; ``N/A`` or empty values get no index.
    Every other value must be in MeLU's vocabulary file of its feature (:data:`VOCAB_FILES`,
    looked up as MeLU does: a zip code by its first five characters, a director without a
    parenthesised note) or, where ``root`` lacks that file, in :data:`BUILTIN_VOCAB`.
    ``item_text`` is rendered with :data:`ITEM_TEXT_TEMPLATE`; ``meta["item_fields"]`` keeps
    each movie's raw text fields (``N/A`` included) for other templates.

    A movie may appear twice in a user's list only when it is one MeLU merged two MovieLens ids
    into (:data:`MELU_MERGED_MOVIES`); both ratings are kept and listed in
    ``meta["merged_repeats"]`` as ``(state, user, movie)``.

    Raises:
        DataError: a file is missing, unreadable or inconsistent, or a feature value is outside
            its vocabulary; the message names the file and the line, user, movie or value.
    """
    root = Path(root)
    paths = require_all(root)
    vocab = _vocabularies(root)
    items, item_text, item_fields = _load_items(paths[ITEMS_FILE], vocab)
    users = _load_users(paths[USERS_FILE], vocab)
    states = {
        state: _load_state(paths[f"{state}.json"], paths[f"{state}_y.json"], users, items)
        for state in STATES
    }
    _check_disjoint_states(states, {state: paths[f"{state}.json"].name for state in STATES})
    meta = {
        "root": str(root),
        "source": "hoyeoplee/MeLU movielens/ml-1m",
        "files": {name: path.name for name, path in paths.items()},
        "item_fields": item_fields,
        "merged_repeats": _merged_repeats(states),
    }
    return RecDataset(
        name=DATASET_NAME,
        users=users,
        items=items,
        item_text=item_text,
        states=states,
        rating_scale=RATING_RANGE,
        meta=meta,
    )
