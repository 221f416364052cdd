"""Raw ids and categorical values -> the rows and indices of a ``FeatureTable``, shared by
the MeLU and CSV loaders so that both encode alike."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from metarec.errors import DataError


def unique_ids(rows: Iterable[tuple[int, str]], file: str, key: str) -> list[str]:
    """The ids of ``(line number, id)`` rows of ``file``, in file order (row ``i`` is the
    ``i``-th id); an empty or repeated id is a DataError naming the line, since a repeat would
    silently shadow the first row in ``FeatureTable.row_of``."""
    ids, first_line = [], {}
    for number, raw_id in rows:
        if not raw_id:
            raise DataError(f"{file} line {number}: empty {key}")
        if raw_id in first_line:
            raise DataError(
                f"{file} line {number}: duplicate {key} {raw_id} "
                f"(first seen on line {first_line[raw_id]})"
            )
        first_line[raw_id] = number
        ids.append(raw_id)
    return ids


def encode_values(rows: list[list[str]], width: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Each row's values as indices into the vocabulary of every value in first-seen order
    (index ``i`` is ``vocab[i - 1]``; 0 pads), zero-padded to ``width`` columns (default: the
    longest row, at least 1); returns ``(indices, vocab)``."""
    index: dict[str, int] = {}
    width = width or max((len(values) for values in rows), default=0) or 1
    out = np.zeros((len(rows), width), dtype=np.int64)
    for row, values in enumerate(rows):
        for col, value in enumerate(values):
            out[row, col] = index.setdefault(value, len(index) + 1)
    return out, list(index)
