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
user or movie at fault. The dataset itself (``data.name: melu-ml1m``: its files' digests and
URL, its paper's rows) is :mod:`metarec.datasets.melu_ml1m`; this module parses the format.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from metarec.data.files import locate, read_text, require_files
from metarec.data.itemtext import is_missing, render_item_text
from metarec.data.melu_states import (
    ITEMS_FILE,
    RATING_RANGE,
    USERS_FILE,
    merged_repeats,
    state_rows,
)
from metarec.data.schema import STATES, FeatureTable, RecDataset
from metarec.data.split import states_from_rows
from metarec.data.vocab import encode_values, unique_ids
from metarec.errors import DataError

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
# Public API
# ---------------------------------------------------------------------------------------------


def melu_tables(
    root: Path, users_path: Path, items_path: Path
) -> tuple[FeatureTable, FeatureTable, dict[str, str], dict[str, dict[str, str]]]:
    """MeLU's users and items (features, rendered text, raw text fields) from ``users.dat``
    and ``movies_extrainfos.dat``, every value checked against the vocabularies in ``root``
    (see :func:`load_melu`)."""
    vocab = _vocabularies(root)
    items, item_text, item_fields = _load_items(items_path, vocab)
    return _load_users(users_path, vocab), items, item_text, item_fields


# Every file of the format, as MeLU publishes them.
MELU_FILES = (
    *(f"{state}{suffix}.json" for state in STATES for suffix in ("", "_y")),
    ITEMS_FILE,
    USERS_FILE,
)


def load_melu(root: str | Path, name: str, hint: str) -> RecDataset:
    """Load MeLU's MovieLens-1M files from ``root`` into a :class:`RecDataset` called ``name``
    (``hint``: how to get the files, said when some are missing).

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
    paths = require_files(root, MELU_FILES, "MeLU", hint)
    users, items, item_text, item_fields = melu_tables(root, paths[USERS_FILE], paths[ITEMS_FILE])
    rows = []
    for state in STATES:
        rows += state_rows(state, paths[f"{state}.json"], paths[f"{state}_y.json"], users, items)
    states = states_from_rows(rows)  # the path every published split takes
    meta = {
        "root": str(root),
        "source": "hoyeoplee/MeLU movielens/ml-1m",
        "files": {name: path.name for name, path in paths.items()},
        "item_fields": item_fields,
        "merged_repeats": merged_repeats(states),
        "split": "MeLU's published states",
    }
    return RecDataset(
        name=name,
        users=users,
        items=items,
        item_text=item_text,
        states=states,
        rating_scale=RATING_RANGE,
        meta=meta,
    )
