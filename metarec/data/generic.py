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
every rating under one of the four states by whether its user and its item are new.

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

import gzip
import io
import math
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from metarec.config.schema import CsvConfig
from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.data.vocab import encode_values, unique_ids
from metarec.errors import DataError

DATASET_NAME = "csv"
_SNIPPET_CHARS = 60
# How pandas reports a line it skips (on_bad_lines="warn"), and the too-many-fields case.
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)", re.DOTALL)
_TOO_MANY_FIELDS = re.compile(r"Expected (\d+) fields in line \d+, saw (\d+)")
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\r?\n)*")
_NO_HEADER_HINT = "; a file without a header row needs data.csv.header=false and data.csv.columns"


def _separator(path: Path, cfg: CsvConfig) -> str:
    if cfg.sep:
        return cfg.sep.encode().decode("unicode_escape")  # lets YAML say "\t"
    return "\t" if path.name.removesuffix(".gz").endswith(".tsv") else ","


def _read_text(path: Path) -> str:
    """The whole file as text: UTF-8 (a BOM is dropped), plain or gzipped."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (set data.root and data.csv.*)")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            return handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name}: not valid UTF-8 at byte {err.start}") from err
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path.name}: cannot read ({err})") from err


def _parse(path: Path, body: str, sep: str, offset: int, width: int | None) -> pd.DataFrame:
    """Every line of ``body`` as a row of strings, a short one padded with NaN; a line pandas
    cannot split (too many fields, a stray quote) is a DataError naming it (``offset`` lines
    were cut from the top of the file), and so is a first line not ``width`` fields wide.

    pandas' python engine, because only it pads with NaN (the C engine pads with empty
    strings, hiding a missing field) and reads a separator of several characters.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        try:
            table = pd.read_csv(
                io.StringIO(body),
                sep=re.escape(sep) if len(sep) > 1 else sep,  # pandas takes a longer one as a regex
                header=None,
                dtype=str,
                keep_default_na=False,  # "NA" or "" is a value; only padding is NaN
                skip_blank_lines=False,  # keeps the row number equal to the line number
                engine="python",
                on_bad_lines="warn",  # the line number comes only in the warning
            )
        except pd.errors.ParserError as err:
            raise DataError(f"{path.name}: malformed ({err})") from err
    # pandas measures every line against the first: a wrong first line shows up on the second.
    if width is not None and table.shape[1] != width:
        line = sep.join(table.iloc[0].str.strip())
        raise DataError(
            f"{path.name} line {1 + offset}: expected {width} fields, found {table.shape[1]}: "
            f"{line[:_SNIPPET_CHARS]!r}"
        )
    skipped = sorted(  # the warnings come per chunk, not always in line order
        (int(match[1]), match[2].strip())
        for match in (_SKIPPED_LINE.match(str(warning.message)) for warning in caught)
        if match
    )
    if skipped:
        number, problem = skipped[0]
        too_many = _TOO_MANY_FIELDS.match(problem)
        problem = (f"expected {too_many[1]} fields, found {too_many[2]}" if too_many
                   else f"malformed ({problem})")  # fmt: skip
        raise DataError(f"{path.name} line {number + offset}: {problem}")
    return table


def _records(path: Path, sep: str, width: int | None = None) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of every line that is not blank; with ``width``, the
    first line must have that many fields."""
    text = _read_text(path)
    # A blank first line would be one field wide, and every other line too wide.
    blank = _LEADING_BLANK_LINES.match(text).group()
    offset, body = blank.count("\n"), text[len(blank) :]
    if not body.strip():
        return []
    table = _parse(path, body, sep, offset, width)
    found = table.notna().sum(axis=1).tolist()  # NaN only pads the end of a short line
    cells = table.apply(lambda column: column.str.strip()).fillna("").to_numpy(dtype=object)
    filled = (cells != "").any(axis=1).tolist()
    numbers = range(1 + offset, len(cells) + 1 + offset)
    return [
        (number, row if count == len(row) else row[:count])
        for number, row, count, keep in zip(numbers, cells.tolist(), found, filled, strict=True)
        if keep
    ]


def _read_rows(
    path: Path,
    cfg: CsvConfig,
    required: tuple[str, ...],
    columns: list[str] | None = None,
    hint: str = "",
):
    """(header, [(line number, fields)]) of a delimited file, every row as wide as the header.

    The header is the first line, or ``columns`` (``data.csv.columns``) when given; ``hint``
    ends the message of a header that lacks a ``required`` column.
    """
    if columns is not None:  # the setting is checked before the file is read
        header = list(columns)
        for column in required:
            if column not in header:
                raise DataError(
                    f"key 'data.csv.columns': no column '{column}' in {header} "
                    f"(the columns of {path.name}, which has no header row)"
                )
        if len(set(header)) != len(header):
            raise DataError(f"key 'data.csv.columns': repeated column names in {header}")
    rows = _records(path, _separator(path, cfg), None if columns is None else len(columns))
    if columns is None:
        if not rows:
            raise DataError(f"{path.name}: empty file (expected a header row)")
        (_, header), rows = rows[0], rows[1:]
        for column in required:
            if column not in header:
                raise DataError(
                    f"{path.name} line 1: no column '{column}' in the header {header}{hint}"
                )
        if len(set(header)) != len(header):
            raise DataError(f"{path.name} line 1: repeated column names in the header {header}")
    for number, fields in rows:
        if len(fields) != len(header):
            line = _separator(path, cfg).join(fields)
            raise DataError(
                f"{path.name} line {number}: expected {len(header)} fields, found "
                f"{len(fields)}: {line[:_SNIPPET_CHARS]!r}"
            )
    return header, rows


def _number(path: Path, number: int, column: str, value: str) -> float:
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed):
        raise DataError(f"{path.name} line {number}: {column} {value!r} is not a finite number")
    return parsed


def _feature_table(
    path: Path | None, header: list[str], rows, id_column: str, skip: set[str], cfg: CsvConfig
) -> FeatureTable:
    """Padded vocabulary indices of every column but the id and ``skip``."""
    id_at = header.index(id_column)
    ids = unique_ids(((number, fields[id_at]) for number, fields in rows), path.name, id_column)
    values, vocab = {}, {}
    for at, column in enumerate(header):
        if column == id_column or column in skip:
            continue
        cells = [[v.strip() for v in fields[at].split(cfg.list_sep) if v.strip()]
                 for _, fields in rows]  # fmt: skip
        # As wide as the longest cell before its repeats are dropped, as it always was.
        width = max(1, max((len(cell) for cell in cells), default=1))
        distinct = [list(dict.fromkeys(cell)) for cell in cells]
        values[column], vocab[column] = encode_values(distinct, width)
    return FeatureTable(ids=ids, values=values, vocab=vocab)


def _id_table(ids: list[str], name: str, constant: bool) -> FeatureTable:
    """Without a table: the id itself as the one feature, or (``constant``) one shared value."""
    if constant:
        return FeatureTable(ids, {name: np.ones((len(ids), 1), np.int64)}, {name: ["any"]})
    return FeatureTable(ids, {name: np.arange(1, len(ids) + 1)[:, None]}, {name: list(ids)})


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
    header, rows = _read_rows(path, cfg, required, columns, hint=_NO_HEADER_HINT)
    user_at, item_at, rating_at = (header.index(column) for column in required)
    time_at = header.index(cfg.time_column) if cfg.time_column in header else None

    items = users = None
    text: dict[str, str] = {}
    fields: dict[str, dict[str, str]] = {}
    if cfg.items:
        item_path = root / cfg.items
        item_header, item_rows = _read_rows(item_path, cfg, (cfg.item_column, *cfg.text_columns))
        items = _feature_table(item_path, item_header, item_rows, cfg.item_column,
                               set(cfg.text_columns), cfg)  # fmt: skip
        for (_, row), item in zip(item_rows, items.ids, strict=True):
            fields[item] = dict(zip(item_header, row, strict=True))
            parts = [fields[item][column] for column in cfg.text_columns]
            text[item] = ". ".join(part for part in parts if part)
    if cfg.users:
        user_path = root / cfg.users
        user_header, user_rows = _read_rows(user_path, cfg, (cfg.user_column,))
        users = _feature_table(user_path, user_header, user_rows, cfg.user_column, set(), cfg)

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
        rating = _number(path, number, cfg.rating_column, row[rating_at])
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
            when = _number(path, number, cfg.time_column, row[time_at])
            first_time[item] = min(when, first_time.get(item, math.inf))
        per_user.setdefault(user, []).append((when, number, item, rating))
    if not per_user:
        raise DataError(f"{path.name}: no ratings" + (" after the header" if cfg.header else ""))

    user_ids = users.ids if users is not None else sorted(per_user)
    item_ids = items.ids if items is not None else sorted({i for _, i in first_line})
    users = users or _id_table(user_ids, "user", constant=True)
    items = items or _id_table(item_ids, "item_id", constant=False)
    rated_items = [item for item in item_ids if item in first_time or cfg.new_items == "id"]
    new_items = _new_items(cfg, rated_items, first_time, path.name)
    rng = np.random.default_rng(seed)
    rated_users = [user for user in user_ids if user in per_user]
    drawn = rng.permutation(len(rated_users))[
        : int(round(cfg.new_user_fraction * len(rated_users)))
    ]
    new_users = {rated_users[i] for i in drawn.tolist()}

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
    meta = {
        "root": str(root),
        "files": {"ratings": cfg.ratings, "items": cfg.items, "users": cfg.users},
        "new_users": sorted(new_users),
        "new_items": sorted(new_items),
    }
    if fields:
        meta["item_fields"] = fields
    return RecDataset(name=DATASET_NAME, users=users, items=items, item_text=text, states=states,
                      rating_scale=(low, high), meta=meta)  # fmt: skip
