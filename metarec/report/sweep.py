"""A local sweep's trials, best first: ``summary.md``, ``summary.csv`` and ``summary.json``."""

from __future__ import annotations

from pathlib import Path

from metarec.io import atomic_write_json, atomic_write_text
from metarec.report.cells import cell
from metarec.report.files import write_csv


def _parameter_cell(value: str) -> str:
    """A decimal parameter value with 4 significant digits; any other value as written."""
    try:
        return cell(float(value), significant=True) if "." in value else value
    except ValueError:  # a file name such as experiments/synthetic/maml.yaml
        return value


def sweep_markdown(name: str, method: str, metric: str, goal: str, rows: list[dict]) -> str:
    """The trial rows (best first) as a Markdown table under a line naming the sweep, its
    metric and its goal (``minimize``/``maximize``); run folders left out."""
    columns = [c for c in rows[0] if c != "run_dir"] if rows else ["trial", metric]
    lines = [f"| {' | '.join(columns)} |", f"|{'|'.join('---' for _ in columns)}|"]
    for row in rows:
        cells = [cell(row[c]) if c == metric else _parameter_cell(str(row[c])) for c in columns]
        lines.append(f"| {' | '.join(cells)} |")
    better = "lower" if goal == "minimize" else "higher"
    return f"Sweep {name} ({method}): {metric}, {better} is better\n\n" + "\n".join(lines) + "\n"


def write_sweep_summary(out: Path, rows: list[dict], head: dict, markdown: str) -> None:
    """``summary.md`` (``markdown``), ``summary.json`` (``head`` and the rows as ``trials``)
    and ``summary.csv`` (the rows) in ``out``, each written atomically."""
    atomic_write_text(out / "summary.md", markdown)
    atomic_write_json(out / "summary.json", {**head, "trials": rows})
    write_csv(out / "summary.csv", rows)
