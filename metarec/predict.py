"""``metarec predict``: a new user's ratings from a CSV file -> adapt -> ranked item scores.

The ratings file is ``item,rating`` with a header (other columns are ignored); every bad
line is a ``DataError`` naming the file and the line. The scores go to a CSV file, written
atomically, or to stdout.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from metarec.api import load
from metarec.errors import DataError
from metarec.io import atomic_write_text, writable_folder

COLUMNS = ("item", "rating")


def read_ratings(path: str | Path) -> tuple[list[tuple[str, float]], list[int]]:
    """The (item, rating) pairs of a ratings CSV and the file line of each."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"ratings file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark too
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable UTF-8 text file ({err})") from err
    reader = csv.reader(io.StringIO(text))
    header = next((row for row in reader if any(cell.strip() for cell in row)), None)
    names = [cell.strip().lower() for cell in header or []]
    if not set(COLUMNS) <= set(names):
        raise DataError(
            f"{path}, line {reader.line_num}: the header must name the columns "
            f"item and rating, found {header}"
        )
    item_at, rating_at = names.index("item"), names.index("rating")
    pairs, lines = [], []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            raise DataError(
                f"{path}, line {reader.line_num}: {len(row)} fields, expected "
                f"{len(names)} ({','.join(names)})"
            )
        cell = row[rating_at].strip()
        try:
            rating = float(cell)
        except ValueError:
            message = f"{path}, line {reader.line_num}: rating '{cell}' is not a number"
            raise DataError(message) from None
        pairs.append((row[item_at].strip(), rating))
        lines.append(reader.line_num)
    if not pairs:
        raise DataError(f"{path}: no ratings below the header")
    return pairs, lines


def scores_csv(ranked: Sequence[tuple[str, float]]) -> str:
    """``item,score`` rows, in the given order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["item", "score"])
    writer.writerows((item, f"{score:.6f}") for item, score in ranked)
    return buffer.getvalue()


def predict_file(
    run: str | Path,
    ratings: str | Path,
    top_k: int = 10,
    out: str | Path | None = None,
    user: str | None = None,
    features: Mapping[str, str] | None = None,
    include_rated: bool = False,
    overrides: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """Load ``run``, adapt to the ratings file, write the ``top_k`` items (all with 0) best
    first to ``out`` (atomically) or stdout; returns them."""
    if out is not None:  # a folder that cannot take the file fails before the model loads
        writable_folder(Path(out).parent, "--out folder")
    pairs, lines = read_ratings(ratings)
    loaded = load(run, overrides)
    ranked = loaded.recommend(
        pairs,
        k=top_k,
        user=user,
        features=features,
        exclude_rated=not include_rated,
        where=lambda i: f"{ratings}, line {lines[i]}",
    )
    if out is None:
        sys.stdout.write(scores_csv(ranked))
        sys.stdout.flush()
    else:
        atomic_write_text(out, scores_csv(ranked))
    return ranked
