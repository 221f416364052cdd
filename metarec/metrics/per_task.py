"""Per-task metric files: one row per (scenario, task), what paired tests over tasks read.

``per_task.csv.gz`` columns: ``scenario``, ``task`` (the user id, or the item id of item
tasks), then every per-task metric. Written atomically and byte-for-byte repeatable (the gzip
header carries no time stamp).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import torch

from metarec.errors import DataError
from metarec.io import atomic_write_bytes

PER_TASK_FILE = "per_task.csv.gz"


def write_per_task(
    path: str | Path,
    per_task: dict[str, dict[str, torch.Tensor]],
    task_ids: dict[str, list[str]],
) -> Path:
    """Write each scenario's per-task metrics (columns in task order) with its task ids."""
    metrics = list(dict.fromkeys(name for columns in per_task.values() for name in columns))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["scenario", "task", *metrics])
    for scenario, columns in per_task.items():
        ids = task_ids[scenario]
        values = {name: column.tolist() for name, column in columns.items()}
        for name, column in values.items():
            if len(column) != len(ids):
                raise ValueError(f"{scenario}/{name}: {len(column)} values for {len(ids)} tasks")
        for row, task in enumerate(ids):
            cells = [values[name][row] if name in values else math.nan for name in metrics]
            writer.writerow([scenario, task, *(repr(float(cell)) for cell in cells)])
    data = gzip.compress(buffer.getvalue().encode("utf-8"), mtime=0)
    return atomic_write_bytes(path, data)


def read_per_task(path: str | Path) -> dict[str, dict[str, list]]:
    """``{scenario: {"task": [ids], metric: [floats]}}`` from a per-task file; a missing or
    malformed file is a ``DataError`` naming it (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"per-task metrics not found: {path}")
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a gzipped CSV ({err})") from err
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or header[:2] != ["scenario", "task"]:
        raise DataError(f"{path}: line 1 must start with 'scenario,task', got {header}")
    out: dict[str, dict[str, list]] = {}
    for line, row in enumerate(reader, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {len(header)}")
        columns = out.setdefault(row[0], {name: [] for name in header[1:]})
        columns["task"].append(row[1])
        try:
            for name, cell in zip(header[2:], row[2:], strict=True):
                columns[name].append(float(cell))
        except ValueError as err:
            raise DataError(f"{path}, line {line}: {err}") from err
    return out
