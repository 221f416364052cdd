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
user or movie at fault.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import string
import zlib
from collections import Counter
from pathlib import Path
from typing import IO, Literal

import numpy as np

from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.errors import DataError

DATASET_NAME = "melu-ml1m"
MELU_BASE_URL = "https://raw.githubusercontent.com/hoyeoplee/MeLU/master/movielens/ml-1m/"

# sha256 of the *uncompressed* files, so a gzipped local copy verifies against the same digest.
_SHA256_TABLE = """
warm_state.json 036be249428c8fe9e212def927eb3ad60de8ddd054989e75f54e7ab2291da525
warm_state_y.json 4ad7829ea3d8a4d58ca8c96a4f368c5c7eab6b8ed85430f2516ab3cd79b5dff2
user_cold_state.json ec7414e1da3b1636d34f0f3a5615e2a07bea9b82156123768049cc166ed20df1
user_cold_state_y.json 62b84d073377c183cabfa0b78cb4e745f763b0713920033edf0bbbc43e1dca11
item_cold_state.json 1cb691e39e9f64a12922f1c8da2bf8b9c07f885decc4dd4ee5aea0e5bbcc46a1
item_cold_state_y.json b9325e4b056cda7d2834f17c33c4ec34ee6516142c8b51e50103f80d2b0793bf
user_and_item_cold_state.json 9045ceae16fbc0ca0a160b3ce96bedf97d304d04328755c9fadc9a4ba55450f0
user_and_item_cold_state_y.json 5bc5057b32224d91fa1f8161f242db72b186afc1c51b571f5aab3c3e93cf0e90
movies_extrainfos.dat 18432b1713b66a5262c11f6d929801a6e6f414d861cd2adf191dfba61e45c74d
users.dat 1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3
"""
# A table rather than a dict literal: the longest name plus digest does not fit on one line.
MELU_SHA256: dict[str, str] = dict(line.split() for line in _SHA256_TABLE.strip().splitlines())

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
MISSING = "N/A"
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

# verify_melu's verdict on one file.
FileStatus = Literal["ok", "missing", "unreadable", "checksum mismatch"]

_DOWNLOAD_HINT = (
    "run `metarec data download melu-ml1m`, or point `data.root` at a folder holding MeLU's files"
)
_SNIPPET_CHARS = 60
_HASH_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _candidates(root: Path, name: str) -> tuple[Path, Path]:
    """Plain first: a user who unpacked a file by hand means that copy to be used."""
    return root / name, root / f"{name}.gz"


def _locate(root: Path, name: str) -> Path | None:
    """The file to read for ``name`` (plain or ``.gz``), or None if neither exists."""
    for path in _candidates(root, name):
        if path.is_file():
            return path
    return None


def _require_all(root: Path) -> dict[str, Path]:
    """Path of every file in :data:`MELU_SHA256`; all missing ones are reported at once."""
    found = {name: _locate(root, name) for name in MELU_SHA256}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        tried = "; ".join(" or ".join(str(p) for p in _candidates(root, n)) for n in missing)
        raise DataError(
            f"MeLU file(s) not found: {', '.join(missing)} (tried {tried}); {_DOWNLOAD_HINT}"
        )
    return {name: path for name, path in found.items() if path is not None}


def _open_binary(path: Path) -> IO[bytes]:
    """Binary stream of the uncompressed content."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _read_text(path: Path) -> str:
    """Whole file as UTF-8 text; corrupt gzip or bad encoding becomes a DataError."""
    try:
        with _open_binary(path) as fh:
            raw = fh.read()
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name}: not valid UTF-8 at byte {err.start}") from err
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path.name}: cannot read ({err})") from err


def _sha256(path: Path) -> str | None:
    """sha256 of the uncompressed content, or None when the file cannot be read."""
    digest = hashlib.sha256()
    try:
        with _open_binary(path) as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with 1-based numbers.

    Split on ``\\n`` only: ``str.splitlines`` would also break on characters such as U+2028
    that may legitimately occur inside a plot.
    """
    text = _read_text(path)
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


def _check_unique_ids(path: Path, rows: list[tuple[int, dict[str, str]]], key: str) -> None:
    """A repeated id would silently shadow the first row in ``FeatureTable.row_of``."""
    first_line: dict[str, int] = {}
    for number, row in rows:
        raw_id = row[key]
        if raw_id in first_line:
            raise DataError(
                f"{path.name} line {number}: duplicate {key} {raw_id} "
                f"(first seen on line {first_line[raw_id]})"
            )
        first_line[raw_id] = number


# ---------------------------------------------------------------------------------------------
# Features and text
# ---------------------------------------------------------------------------------------------


def _is_missing(value: str) -> bool:
    return not value or value == MISSING


def _split_list(value: str) -> list[str]:
    """List field as distinct values in order; missing parts are dropped."""
    if _is_missing(value):
        return []
    parts = (part.strip() for part in value.split(LIST_SEP))
    return list(dict.fromkeys(part for part in parts if not _is_missing(part)))


def _encode(rows: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    """Padded index matrix (0 = padding/missing) and the first-seen-order vocabulary."""
    index: dict[str, int] = {}
    width = max((len(values) for values in rows), default=0) or 1
    out = np.zeros((len(rows), width), dtype=np.int64)
    for row, values in enumerate(rows):
        for col, value in enumerate(values):
            out[row, col] = index.setdefault(value, len(index) + 1)
    return out, list(index)


def _feature_table(
    ids: list[str], single: dict[str, list[str]], multi: dict[str, list[list[str]]]
) -> FeatureTable:
    """Encode single-valued (missing -> no value) and multi-valued columns into a table."""
    columns = {name: [[] if _is_missing(v) else [v] for v in vals] for name, vals in single.items()}
    columns.update(multi)
    values: dict[str, np.ndarray] = {}
    vocab: dict[str, list[str]] = {}
    for name, rows in columns.items():
        values[name], vocab[name] = _encode(rows)
    return FeatureTable(ids=ids, values=values, vocab=vocab)


def _template_sentences(template: str) -> list[tuple[str, set[str]]]:
    """Template split into sentences, each with the field names it uses."""
    sentences = re.split(r"(?<=\.)\s+", template.strip())
    return [
        (sentence, {name for _, name, _, _ in string.Formatter().parse(sentence) if name})
        for sentence in sentences
    ]


def render_item_text(fields: dict[str, str], template: str = ITEM_TEXT_TEMPLATE) -> str:
    """Fill ``template`` from a movie's raw fields, dropping sentences with missing fields.

    A sentence is a piece of the template ending in ``.`` followed by whitespace (or the end);
    it is left out when any field it names is absent, empty or ``N/A``.
    """
    kept = []
    for sentence, names in _template_sentences(template):
        if any(_is_missing(fields.get(name, "")) for name in names):
            continue
        kept.append(sentence.format(**{name: fields[name] for name in names}))
    return " ".join(kept)


def _vocabularies(root: Path) -> dict[str, tuple[set[str], str]]:
    """Per feature: the values it may take, and how a message says a value is not among them.

    MeLU's vocabulary file where ``root`` holds it, else :data:`BUILTIN_VOCAB`; a feature with
    neither (zip, genre, director, actors without their files) is not checked.
    """
    vocab = {}
    for feature, name in VOCAB_FILES.items():
        path = _locate(root, name)
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
                if not _is_missing(value) and key not in allowed:
                    read_as = f" (read as {key!r})" if key != value else ""
                    raise DataError(
                        f"{path.name} line {number}: {feature} {value!r}{read_as} is {problem}"
                    )


def _load_items(
    path: Path, vocab: dict[str, tuple[set[str], str]]
) -> tuple[FeatureTable, dict[str, str], dict[str, dict[str, str]]]:
    """Item features, rendered text and raw text fields from ``movies_extrainfos.dat``."""
    rows = _dat_rows(path, ITEM_COLUMNS)
    _check_unique_ids(path, rows, "movie_id")
    _check_vocab(path, rows, ITEM_SINGLE_FEATURES + ITEM_MULTI_FEATURES, vocab)
    ids = [row["movie_id"] for _, row in rows]
    single = {name: [row[name] for _, row in rows] for name in ITEM_SINGLE_FEATURES}
    multi = {name: [_split_list(row[name]) for _, row in rows] for name in ITEM_MULTI_FEATURES}
    fields = {row["movie_id"]: {name: row[name] for name in ITEM_TEXT_FIELDS} for _, row in rows}
    text = {movie: render_item_text(raw) for movie, raw in fields.items()}
    return _feature_table(ids, single, multi), text, fields


def _load_users(path: Path, vocab: dict[str, tuple[set[str], str]]) -> FeatureTable:
    """User features from ``users.dat``."""
    rows = _dat_rows(path, USER_COLUMNS)
    _check_unique_ids(path, rows, "user_id")
    _check_vocab(path, rows, USER_FEATURES, vocab)
    ids = [row["user_id"] for _, row in rows]
    single = {name: [row[name] for _, row in rows] for name in USER_FEATURES}
    return _feature_table(ids, single, {})


# ---------------------------------------------------------------------------------------------
# Rating states
# ---------------------------------------------------------------------------------------------


def _read_json_lists(path: Path) -> dict[str, list]:
    """A ``{user_id: [...]}`` JSON file, checked to be a dict of lists."""
    text = _read_text(path)
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
    paths = _require_all(root)
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


def verify_melu(root: str | Path, strict: bool = False) -> dict[str, FileStatus]:
    """Check each file of :data:`MELU_SHA256` against its digest (of the uncompressed bytes).

    Returns ``{file name: status}`` in :data:`MELU_SHA256` order, the status being ``"ok"``,
    ``"missing"`` (neither ``NAME`` nor ``NAME.gz`` in ``root``), ``"unreadable"`` (e.g. a
    corrupt gzip) or ``"checksum mismatch"``. With ``strict=True`` any file not ``"ok"``
    raises a :class:`DataError` listing them.
    """
    root = Path(root)
    report: dict[str, FileStatus] = {}
    problems = []
    for name, expected in MELU_SHA256.items():
        path = _locate(root, name)
        actual = _sha256(path) if path is not None else None
        if path is None:
            report[name] = "missing"
            problems.append(f"{name} (missing)")
        elif actual != expected:
            report[name] = "checksum mismatch" if actual else "unreadable"
            problems.append(f"{path.name} (sha256 {actual or 'unreadable'})")
        else:
            report[name] = "ok"
    if strict and problems:
        raise DataError(f"MeLU files in {root} fail verification: {', '.join(problems)}")
    return report


def download_melu(root: str | Path) -> Path:
    """Download MeLU's files into ``root`` from :data:`MELU_BASE_URL`, checking each sha256.

    Files already present (plain or ``.gz``) with the right digest are not fetched again.
    Returns ``root``.

    Raises:
        DataError: a download failed (no network, an HTTP error, a wrong digest); one line
            with the URL and how to point metarec at a local copy instead.
    """
    # Imported here so that loading local data never needs pooch.
    import pooch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, digest in MELU_SHA256.items():
        present = _locate(root, name)
        if present is not None and _sha256(present) == digest:
            continue
        url = MELU_BASE_URL + name
        try:
            pooch.retrieve(url=url, known_hash=f"sha256:{digest}", fname=name, path=root)
        # requests' and urllib's errors are OSErrors, a wrong digest a ValueError; anything
        # pooch raises means no file. KeyboardInterrupt is no Exception, so Ctrl-C still stops.
        except Exception as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            raise DataError(
                f"download of {url} failed ({reason}); to use a local copy of MeLU's files, "
                f"pass --root DIR (or set data.root) to the folder holding them"
            ) from err
    return root
