"""GroupLens' MovieLens-100K files (``u.data``, ``u.item``, ``u.user``), plain or gzipped, in
``data.root`` or its ``ml-100k`` folder; every problem a :class:`DataError` naming the file and
line. The dataset that uses them (TALLRec's benchmark) is :mod:`metarec.datasets.tallrec_ml100k`.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from pathlib import Path

import numpy as np

from metarec.data.files import FileStatus, locate, verify_files
from metarec.data.itemtext import render_item_text
from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.data.vocab import encode_values, unique_ids
from metarec.errors import DataError

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# SHA-1 of ml-100k.zip as Dive into Deep Learning publishes it (d2l.ai, chapter
# "recommender-systems/movielens": d2l.DATA_HUB['ml-100k']).
ML100K_SHA1 = "cd4dcac4241c8a4ad7badc7ca635da8a69dddb83"
FILES = ("u.data", "u.item", "u.user")
# md5 of GroupLens' uncompressed files (the copy in ../shared/data/ml-100k, checked complete
# and equal to RecBole's); a copy that differs still loads, with a warning: GitHub holds
# modified copies (extra or missing ratings) that would change every sample.
ML100K_MD5 = {
    "u.data": "6e47046882bad158b0efbb84cd5cb987",
    "u.item": "c9e7f390115d79079537301d5204f3f7",
    "u.user": "1b53539edc13caad0282c8500608a319",
}
# u.item's 19 genre flags, in column order (the ML-100K README and u.genre).
GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
ITEM_TEXT_TEMPLATE = "{title}. Genre: {genre}."
# MovieLens-1M's age groups (its README), so ages read alike across the MovieLens loaders.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)
# A plausible age in years; anything else is a typo that would land in the first or last group.
AGE_RANGE = (1, 120)
# The state holding every user's ratings, in time order (times in ``meta["times"]``).
STATE = "warm_state"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _locate(root: Path, name: str) -> Path:
    """``name`` (plain or ``.gz``) in ``root`` or, as the zip unpacks, in ``root/ml-100k``."""
    for folder in (root, root / "ml-100k"):
        for path in (folder / name, folder / f"{name}.gz"):
            if path.is_file():
                return path
    raise DataError(
        f"{root / name} (or {name}.gz, or under {root / 'ml-100k'}) not found: point data.root "
        "at the ml-100k folder, or fetch it: metarec data download tallrec-ml100k --root DIR"
    )


def _lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-blank lines, read as Latin-1 (u.item's titles are Latin-1); a copy whose
    md5 differs from GroupLens' is reported once."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path.name}: cannot read ({err})") from err
    name = path.name.removesuffix(".gz")
    if hashlib.md5(raw).hexdigest() != ML100K_MD5.get(name):
        log.warning("%s differs from GroupLens' %s: samples will not match TALLRec's", path, name)
    numbered = enumerate(raw.decode("latin-1").split("\n"), start=1)
    return [(number, line.rstrip("\r")) for number, line in numbered if line.strip()]


def _fields(path: Path, number: int, line: str, sep: str, width: int) -> list[str]:
    fields = line.split(sep)
    if len(fields) != width:
        raise DataError(
            f"{path.name} line {number}: expected {width} {sep!r}-separated fields, found "
            f"{len(fields)}: {line[:60]!r}"
        )
    return [field.strip() for field in fields]


def _integer(path: Path, number: int, column: str, value: str, low: int, high: int | None) -> int:
    """``value`` as an integer in ``low..high`` (``high`` None: no upper bound)."""
    if not value.lstrip("-").isdigit():
        raise DataError(f"{path.name} line {number}: {column} {value!r} is not an integer")
    parsed = int(value)
    if parsed < low or (high is not None and parsed > high):
        allowed = f"outside {low}..{high}" if high is not None else f"below {low}"
        raise DataError(f"{path.name} line {number}: {column} {value} is {allowed}")
    return parsed


def download_ml100k(root: str | Path) -> Path:
    """Fetch GroupLens' ``ml-100k.zip`` into ``root`` (checked against its published SHA-1)
    and unpack ``u.data``, ``u.item`` and ``u.user`` into ``root/ml-100k``, where
    :func:`load_ml100k` finds them; returns the folder holding them."""
    import pooch

    root = Path(root).expanduser()
    pooch.retrieve(
        ML100K_URL,
        known_hash=f"sha1:{ML100K_SHA1}",
        fname="ml-100k.zip",
        path=root,
        processor=pooch.Unzip(members=[f"ml-100k/{f}" for f in FILES], extract_dir="."),
    )
    return root / "ml-100k"


def verify_ml100k(root: str | Path) -> dict[str, FileStatus]:
    """Check ``u.data``, ``u.item`` and ``u.user`` (plain or ``.gz``, in ``root`` or its
    ``ml-100k`` folder, as the loader finds them) against GroupLens' md5 (:data:`ML100K_MD5`)."""
    root = Path(root).expanduser()
    folder = root if any(locate(root, name) for name in FILES) else root / "ml-100k"
    return verify_files(folder, ML100K_MD5, "md5")


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def _load_items(path: Path) -> tuple[FeatureTable, dict[str, str], dict[str, dict[str, str]]]:
    """``movie id|title|release date|video release date|IMDb URL|19 genre flags``: genre
    (multi-valued) and release year as features; title and genres as text."""
    rows = [(n, _fields(path, n, line, "|", 5 + len(GENRES))) for n, line in _lines(path)]
    ids = unique_ids(((n, row[0]) for n, row in rows), path.name, "movie id")
    genres, years, fields = [], [], {}
    for number, row in rows:
        flags = row[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"{path.name} line {number}: genre flags must be 0 or 1: {flags}")
        names = [genre for genre, flag in zip(GENRES, flags, strict=True) if flag == "1"]
        year = row[2][-4:] if row[2][-4:].isdigit() else ""
        genres.append(names)
        years.append([year] if year else [])
        fields[row[0]] = {
            "title": row[1],
            "year": year,
            "genre": ", ".join(names),
            "release_date": row[2],
        }
    values, vocab = {}, {}
    for name, column in (("genre", genres), ("year", years)):
        values[name], vocab[name] = encode_values(column)
    text = {item: render_item_text(raw, ITEM_TEXT_TEMPLATE) for item, raw in fields.items()}
    return FeatureTable(ids=ids, values=values, vocab=vocab), text, fields


def _age_group(path: Path, number: int, value: str) -> str:
    age = _integer(path, number, "age", value, *AGE_RANGE)
    return str(max(group for group in AGE_GROUPS if group <= age))


def _load_users(path: Path) -> FeatureTable:
    """``user id|age|gender|occupation|zip``: gender, age group, occupation and the zip
    code's first character (its region) as features."""
    rows = [(n, _fields(path, n, line, "|", 5)) for n, line in _lines(path)]
    ids = unique_ids(((n, row[0]) for n, row in rows), path.name, "user id")
    columns = {
        "gender": [[row[2]] for _, row in rows],
        "age": [[_age_group(path, n, row[1])] for n, row in rows],
        "occupation": [[row[3]] for _, row in rows],
        "zip": [[row[4][:1]] if row[4] else [] for _, row in rows],
    }
    values, vocab = {}, {}
    for name, column in columns.items():
        values[name], vocab[name] = encode_values(column)
    return FeatureTable(ids=ids, values=values, vocab=vocab)


def _load_ratings(
    path: Path, users: FeatureTable, items: FeatureTable
) -> tuple[list[UserRatings], dict[str, np.ndarray]]:
    """Each user's ratings in time order (ties in file order), users in the order of their
    first line, and the matching timestamps."""
    per_user: dict[str, list[tuple[int, str, float]]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for number, line in _lines(path):
        user, item, rating, when = _fields(path, number, line, "\t", 4)
        if user not in users.row_of:
            raise DataError(f"{path.name} line {number}: unknown user {user} (not in u.user)")
        if item not in items.row_of:
            raise DataError(f"{path.name} line {number}: unknown item {item} (not in u.item)")
        stars = _integer(path, number, "rating", rating, 1, 5)
        if (user, item) in first_line:
            raise DataError(
                f"{path.name} line {number}: user {user} rates item {item} again (first on "
                f"line {first_line[user, item]})"
            )
        first_line[user, item] = number
        seconds = _integer(path, number, "timestamp", when, 0, None)  # Unix time
        per_user.setdefault(user, []).append((seconds, item, float(stars)))
    if not per_user:
        raise DataError(f"{path.name}: no ratings")
    states, times = [], {}
    for user, ratings in per_user.items():
        ratings.sort(key=lambda rating: rating[0])  # stable: equal times keep file order
        states.append(
            UserRatings(
                user,
                [item for _, item, _ in ratings],
                np.array([r for _, _, r in ratings], dtype=np.float32),
            )
        )
        times[user] = np.array([when for when, _, _ in ratings], dtype=np.int64)
    return states, times


def load_ml100k(root: str | Path, name: str) -> RecDataset:
    """MovieLens-100K under ``root`` as a :class:`RecDataset` called ``name``.

    ``states["warm_state"]`` holds every user's ratings (1..5 stars) in time order, users in
    the order of their first line in ``u.data``; ``meta["times"][user]`` the timestamps. The
    other states are empty (TALLRec's samples are made of them).

    Raises:
        DataError: a file is missing or malformed, an id unknown or repeated, a rating outside
            1..5, an age outside 1..120, a negative timestamp; the message names the file and
            the line.
    """
    root = Path(root).expanduser()
    paths = {name: _locate(root, name) for name in FILES}
    items, item_text, item_fields = _load_items(paths["u.item"])
    users = _load_users(paths["u.user"])
    ratings, times = _load_ratings(paths["u.data"], users, items)
    states = {state: [] for state in STATES}
    states[STATE] = ratings
    meta = {
        "root": str(root),
        "source": "GroupLens ml-100k; TALLRec's protocol (SAI990323/TALLRec preprocess_movie.py)",
        "files": {name: path.name for name, path in paths.items()},
        "item_fields": item_fields,
        "times": times,
    }
    return RecDataset(
        name=name,
        users=users,
        items=items,
        item_text=item_text,
        states=states,
        rating_scale=(1.0, 5.0),
        meta=meta,
    )
