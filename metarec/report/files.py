"""The CSV files of the reports (runs, summaries, sweep trials), each written atomically."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from metarec.io import atomic_write_text


def write_csv(path: Path, rows: list[dict], fields: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV at ``path``: the ``fields`` columns (other keys left out, missing ones
    empty), by default the first row's keys; no rows and no ``fields``: an empty file."""
    buffer = io.StringIO()
    fields = list(rows[0]) if fields is None and rows else list(fields or [])
    if fields:
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())
