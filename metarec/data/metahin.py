"""Loader for MetaHIN's DBook and MovieLens states (Lu, Fang and Shi, KDD 2020).

The data folder holds the files of ``data/dbook/`` or ``data/movielens/`` of
``rootlu/MetaHIN`` (and of its ``original/``), each plain (``NAME``) or gzipped (``NAME.gz``):

* the five states ``{state}.json`` (``{user_id: [item_id, ...]}``, item ids JSON integers) and
  ``{state}_y.json`` (``{user_id: [rating, ...]}`` in the same order): MeLU's format, read by
  :mod:`metarec.data.melu_states`' readers; :data:`STATE_OF` says which state each becomes;
* DBook: ``book_author.dat``, ``book_publisher.dat`` and ``book_year.dat`` (``book<TAB>value``
  per line, a book at most once a file) and ``user_location.dat`` (``user<TAB>location``). A
  book is any id of the three book files (a file may lack it: no value), a user any id of the
  location file;
* MovieLens: MeLU's ``users.dat`` and ``movies_extrainfos.dat`` with its vocabularies
  ``m_*.txt`` (:func:`metarec.data.melu.melu_tables`: users, MPAA rate, genres, item text),
  and MetaHIN's movie-actor and movie-director relations ``movie_actor.json`` and
  ``movie_director.json`` (``{movie: [id, ...]}``, an id being a 1-based line of
  ``m_actor.txt`` / ``m_director.txt``). The relations are the ``actors`` and ``director``
  features: the people MeLU's columns list, one entry per person as MetaHIN's graph links them
  (a director without the note MeLU's column may carry, ``Jane Doe(co-director)``).

Every problem with the input is a :class:`DataError` naming the file and the line, user, item
or id at fault. The datasets (files, digests, URLs, paper rows) are
:mod:`metarec.datasets.metahin`; this module parses the format.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from metarec.data.files import read_text, require_files
from metarec.data.melu import melu_tables
from metarec.data.melu_states import (
    ITEMS_FILE,
    MELU_MERGED_MOVIES,
    RATING_RANGE,
    USERS_FILE,
    check_same_users,
    merged_repeats,
    read_json_lists,
    to_ratings,
)
from metarec.data.schema import STATES, WARM_UP_STATE, FeatureTable, RecDataset
from metarec.data.split import Placed, states_from_rows
from metarec.data.vocab import encode_values, unique_ids
from metarec.errors import DataError

# MetaHIN's state -> the RecDataset state it fills.
STATE_OF = {
    "meta_training": STATES[0],
    "warm_up": WARM_UP_STATE,
    "user_cold_testing": STATES[1],
    "item_cold_testing": STATES[2],
    "user_and_item_cold_testing": STATES[3],
}
STATE_FILES = tuple(f"{state}{suffix}.json" for state in STATE_OF for suffix in ("", "_y"))

# DBook: item feature -> its file, and the user location file.
BOOK_FILES = {
    "author": "book_author.dat",
    "publisher": "book_publisher.dat",
    "year": "book_year.dat",
}
LOCATION_FILE = "user_location.dat"
DBOOK_FILES = (*STATE_FILES, *BOOK_FILES.values(), LOCATION_FILE)

# MovieLens: item feature -> (MetaHIN's relation file, the vocabulary its ids index).
RELATIONS = {
    "actors": ("movie_actor.json", "m_actor.txt"),
    "director": ("movie_director.json", "m_director.txt"),
}
MOVIELENS_FILES = (
    *STATE_FILES,
    USERS_FILE,
    ITEMS_FILE,
    *(name for files in RELATIONS.values() for name in files),
)
# How MetaHIN's preprocessing (pandas) wrote MeLU's missing value ``N/A`` into the vocabularies.
MISSING_NAME = "nan"

_SNIPPET_CHARS = 60


def _item_ids(
    path: Path, user: str, raw: list, known: dict[str, int], items_file: str, repeats: set[str]
) -> list[str]:
    """A user's items as string ids: integers, known, each once (but for ``repeats``, twice)."""
    # Exact type: bool is an int subclass.
    if not set(map(type, raw)) <= {int}:
        bad = next(item for item in raw if type(item) is not int)
        raise DataError(f"{path.name}: user {user}: item id {bad!r} is not an integer")
    items = [str(item) for item in raw]
    unknown = set(items).difference(known)
    if unknown:
        first = next(item for item in items if item in unknown)
        raise DataError(f"{path.name}: user {user}: unknown item {first} (not in {items_file})")
    if len(set(items)) != len(items):
        for item, count in Counter(items).items():
            if count > 1 and (item not in repeats or count > 2):
                raise DataError(f"{path.name}: user {user}: item {item} appears {count} times")
    return items


def _state_rows(
    paths: dict[str, Path],
    users: FeatureTable,
    items: FeatureTable,
    sources: tuple[str, str],
    repeats: set[str],
) -> list[Placed]:
    """Every state's ratings, users in file order; ``sources`` names the files users and items
    must be in (for messages)."""
    users_file, items_file = sources
    rows = []
    for state, placed_in in STATE_OF.items():
        x_path, y_path = paths[f"{state}.json"], paths[f"{state}_y.json"]
        x, y = read_json_lists(x_path), read_json_lists(y_path)
        check_same_users(x_path, y_path, x, y)
        for user, raw in x.items():
            if user not in users.row_of:
                raise DataError(f"{x_path.name}: unknown user {user} (not in {users_file})")
            if len(y[user]) != len(raw):
                raise DataError(
                    f"{x_path.name} and {y_path.name} disagree for user {user}: "
                    f"{len(raw)} items but {len(y[user])} ratings"
                )
            user_items = _item_ids(x_path, user, raw, items.row_of, items_file, repeats)
            ratings = to_ratings(y_path, user, y[user])
            rows.append(Placed(placed_in, user, user_items, ratings, None, x_path.name))
    return rows


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with 1-based numbers (split on ``\\n`` only, a ``\\r`` dropped)."""
    lines = (line.rstrip("\r") for line in read_text(path).split("\n"))
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def _pairs(path: Path, key: str) -> dict[str, str]:
    """A ``key<TAB>value`` file as ``{key: value}`` in file order; a line without exactly two
    fields, an empty value or a repeated key is an error naming the line."""
    rows = []
    for number, line in _numbered_lines(path):
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != 2 or not fields[1]:
            raise DataError(
                f"{path.name} line {number}: expected '{key}<TAB>value', got "
                f"{line[:_SNIPPET_CHARS]!r}"
            )
        rows.append((number, *fields))
    ids = unique_ids(((number, raw_id) for number, raw_id, _ in rows), path.name, key)
    return dict(zip(ids, (value for _, _, value in rows), strict=True))


def _single_valued(ids: list[str], columns: dict[str, dict[str, str]]) -> FeatureTable:
    """A table of one value per column and row (none where the column lacks the row)."""
    values, vocab = {}, {}
    for name, column in columns.items():
        values[name], vocab[name] = encode_values([[column[i]] if i in column else [] for i in ids])
    return FeatureTable(ids=ids, values=values, vocab=vocab)


def _dbook_tables(paths: dict[str, Path]) -> tuple[FeatureTable, FeatureTable]:
    """DBook's users (location) and books (author, publisher, year)."""
    columns = {name: _pairs(paths[file], "book") for name, file in BOOK_FILES.items()}
    books = list(dict.fromkeys(book for column in columns.values() for book in column))
    locations = _pairs(paths[LOCATION_FILE], "user")
    return _single_valued(list(locations), {"location": locations}), _single_valued(books, columns)


def _relation(path: Path, vocab_path: Path, movies: FeatureTable, feature: str) -> list[list[str]]:
    """Each movie's people of a MetaHIN relation file, by name, in movie-row order (none for a
    movie the file lacks; MetaHIN's missing name dropped)."""
    text = read_text(vocab_path)
    names = [name.strip() for name in text.removesuffix("\n").split("\n")]
    related = read_json_lists(path)
    people: list[list[str]] = [[] for _ in movies.ids]
    for movie, ids in related.items():
        if movie not in movies.row_of:
            raise DataError(f"{path.name}: unknown movie {movie} (not in {ITEMS_FILE})")
        for person in ids:
            if type(person) is not int or not 1 <= person <= len(names):
                raise DataError(
                    f"{path.name}: movie {movie}: {feature} id {person!r} is not a line of "
                    f"{vocab_path.name} (1..{len(names)})"
                )
        found = (names[person - 1] for person in ids)
        people[movies.row_of[movie]] = list(dict.fromkeys(n for n in found if n != MISSING_NAME))
    return people


def _movielens_tables(
    root: Path, paths: dict[str, Path]
) -> tuple[FeatureTable, FeatureTable, dict[str, str], dict[str, dict[str, str]]]:
    """MeLU's users and movies, the movies' ``actors`` and ``director`` from MetaHIN's
    relations; with the movies' text and raw text fields."""
    users, movies, text, fields = melu_tables(root, paths[USERS_FILE], paths[ITEMS_FILE])
    values, vocab = dict(movies.values), dict(movies.vocab)
    for feature, (relation, vocab_file) in RELATIONS.items():
        people = _relation(paths[relation], paths[vocab_file], movies, feature)
        values[feature], vocab[feature] = encode_values(people)
    return users, replace(movies, values=values, vocab=vocab), text, fields


def _dataset(
    name: str,
    root: Path,
    paths: dict[str, Path],
    tables: tuple[FeatureTable, FeatureTable],
    rows: list[Placed],
    item_text: dict[str, str] | None = None,
    **meta,
) -> RecDataset:
    """The dataset of the placed ``rows`` read from ``paths``; ``meta`` adds to its ``meta``."""
    states = states_from_rows(rows)  # the path every published split takes
    meta = {
        "root": str(root),
        "files": {name: path.name for name, path in paths.items()},
        "split": "MetaHIN's published states",
        "merged_repeats": merged_repeats(states),
        **meta,
    }
    users, items = tables
    return RecDataset(
        name, users, items, item_text or {}, states, rating_scale=RATING_RANGE, meta=meta
    )


def load_dbook(root: str | Path, name: str, hint: str) -> RecDataset:
    """MetaHIN's DBook files under ``root`` as a :class:`RecDataset` called ``name`` (``hint``:
    how to get the files, said when some are missing): books with ``author``, ``publisher``
    and ``year``, users with ``location`` (width 1 each), no item text.

    Raises:
        DataError: a file is missing, unreadable or inconsistent; the message names it.
    """
    root = Path(root)
    paths = require_files(root, DBOOK_FILES, "MetaHIN DBook", hint)
    users, books = _dbook_tables(paths)
    sources = (LOCATION_FILE, " or ".join(BOOK_FILES.values()))
    rows = _state_rows(paths, users, books, sources, repeats=set())
    return _dataset(name, root, paths, (users, books), rows, source="rootlu/MetaHIN data/dbook")


def load_movielens(root: str | Path, name: str, hint: str) -> RecDataset:
    """MetaHIN's MovieLens files under ``root`` as a :class:`RecDataset` called ``name``:
    users as MeLU's (gender, age, occupation, zip), movies with MeLU's ``rate`` and
    ``genre`` and MetaHIN's ``actors`` and ``director`` relations, MeLU's item text and raw
    text fields (``meta["item_fields"]``). A movie MeLU merged two MovieLens ids into
    (:data:`~metarec.data.melu_states.MELU_MERGED_MOVIES`) may be rated twice by a user; the
    repeats are listed in ``meta["merged_repeats"]``.

    Raises:
        DataError: a file is missing, unreadable or inconsistent, or a feature value is outside
            its vocabulary; the message names the file and the line, user, movie or id.
    """
    root = Path(root)
    paths = require_files(root, MOVIELENS_FILES, "MetaHIN MovieLens", hint)
    users, movies, text, fields = _movielens_tables(root, paths)
    rows = _state_rows(paths, users, movies, (USERS_FILE, ITEMS_FILE), set(MELU_MERGED_MOVIES))
    return _dataset(
        name,
        root,
        paths,
        (users, movies),
        rows,
        text,
        source="rootlu/MetaHIN data/movielens",
        item_fields=fields,
    )
