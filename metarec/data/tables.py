"""Delimited text tables (ratings, item and user tables) read with pandas into rows of string
fields, each problem a :class:`DataError` naming the file and line; feature columns into
:class:`FeatureTable`s. The CSV dataset (:mod:`metarec.datasets.csv`) names the files.

``sep``: any string (``"\\t"`` as YAML writes it; default tab for ``.tsv``, else a comma);
quoted fields as in the ``csv`` module (a separator of several characters reads no quotes).
"""

from __future__ import annotations

import gzip
import io
import math
import re
import warnings
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from metarec.data.schema import FeatureTable
from metarec.data.vocab import encode_values, unique_ids
from metarec.errors import DataError


class TableFormat(Protocol):
    """What reading a table needs of the CSV dataset's settings (``data.csv``)."""

    sep: str | None
    list_sep: str


_SNIPPET_CHARS = 60
# How pandas reports a line it skips (on_bad_lines="warn"), and the too-many-fields case.
_SKIPPED_LINE = re.compile(r"Skipping line (\d+): (.*)", re.DOTALL)
_TOO_MANY_FIELDS = re.compile(r"Expected (\d+) fields in line \d+, saw (\d+)")
_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*\r?\n)*")


def _separator(path: Path, cfg: TableFormat) -> str:
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
        problem = (
            f"expected {too_many[1]} fields, found {too_many[2]}"
            if too_many
            else f"malformed ({problem})"
        )
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


def read_rows(
    path: Path,
    cfg: TableFormat,
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


def parse_number(path: Path, number: int, column: str, value: str) -> float:
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed):
        raise DataError(f"{path.name} line {number}: {column} {value!r} is not a finite number")
    return parsed


def feature_table(
    path: Path | None, header: list[str], rows, id_column: str, skip: set[str], cfg: TableFormat
) -> FeatureTable:
    """Padded vocabulary indices of every column but the id and ``skip``."""
    id_at = header.index(id_column)
    ids = unique_ids(((number, fields[id_at]) for number, fields in rows), path.name, id_column)
    values, vocab = {}, {}
    for at, column in enumerate(header):
        if column == id_column or column in skip:
            continue
        cells = [
            [v.strip() for v in fields[at].split(cfg.list_sep) if v.strip()] for _, fields in rows
        ]
        # As wide as the longest cell counting its repeats, which are then dropped.
        width = max(1, max((len(cell) for cell in cells), default=1))
        distinct = [list(dict.fromkeys(cell)) for cell in cells]
        values[column], vocab[column] = encode_values(distinct, width)
    return FeatureTable(ids=ids, values=values, vocab=vocab)


def id_table(ids: list[str], name: str, constant: bool) -> FeatureTable:
    """Without a table: the id itself as the one feature, or (``constant``) one shared value."""
    if constant:
        return FeatureTable(ids, {name: np.ones((len(ids), 1), np.int64)}, {name: ["any"]})
    return FeatureTable(ids, {name: np.arange(1, len(ids) + 1)[:, None]}, {name: list(ids)})
