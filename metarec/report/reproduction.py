"""A reproduction's report files from its rows.

From ``runs.json``'s rows (``metarec reproduce``, ``metarec results``) into the folder:
``summary.csv`` / ``summary.json`` (per scenario and variant: estimates, intervals, paired
tests; :mod:`metarec.report.compare`), ``table.md`` (the paper's rows beside ours, then the
generated findings) and ``plot.png`` / ``plot.pdf`` (:mod:`metarec.report.plot`). Runs scored by
pooled AUC (one query per task, TALLRec's samples) get :mod:`metarec.report.pooled`'s report.
"""

from __future__ import annotations

from pathlib import Path

from metarec.catalog import DATASETS
from metarec.io import atomic_write_json, atomic_write_text
from metarec.metrics.names import ESTIMATED, HEADLINE, NAMES
from metarec.report.compare import aggregate, findings, legend, table_lines
from metarec.report.files import write_csv
from metarec.report.plot import plot
from metarec.report.pooled import write_pooled_report


def summary_fields(estimated: tuple[str, ...]) -> list[str]:
    """summary.csv's columns: the estimated metrics with their intervals, the other metrics'
    run means, then the primary metric's paired tests against the reference and the best other
    variant."""
    return [
        "scenario", "method", "text", "seeds", "failed", "seconds", "primary",
        *(f"{m}{end}" for m in estimated for end in ("", "_low", "_high")),
        *(m for m in NAMES if m not in estimated),
        "diff_vs_reference", "p_vs_reference", "best_other", "diff_vs_best_other",
        "p_vs_best_other",
    ]  # fmt: skip


def write_report(out: Path, rows: list[dict], dataset: str, title: str) -> str:
    """``summary.csv``/``.json``, ``table.md`` and ``plot.png``/``.pdf`` from the rows; the
    table's text. ``dataset`` (``data.name``) says how the runs were scored, and gives the
    paper's rows and the goal."""
    source = DATASETS.get(dataset)
    if source.scoring == "pooled":
        return write_pooled_report(out, rows, source.paper, title)
    estimated = source.table or (*ESTIMATED[source.scoring], *source.extra_metrics)
    summary = aggregate(rows, estimated)
    atomic_write_json(out / "summary.json", summary)
    flat = []
    for entry in summary:
        row = dict(entry)
        for name in ("reference", "best_other"):
            test = entry.get(f"vs_{name}") or {}
            row[f"diff_vs_{name}"], row[f"p_vs_{name}"] = test.get("diff"), test.get("p")
        flat.append(row)
    write_csv(out / "summary.csv", flat, summary_fields(estimated))
    paper = source.paper
    notes = findings(summary, paper, source.goal, source.paper_best)
    note = f"Paper: {source.paper_source}; {source.paper_note}." if source.paper_source else ""
    lines = [f"# {title}", "", legend(estimated[0], note), "",
             *table_lines(summary, paper, estimated), "",
             "Findings (generated from these results):", "", *notes]  # fmt: skip
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    headline = source.table[:2] if source.table else HEADLINE[source.scoring]
    plot(summary, paper, out / "plot.png", title, headline, source.paper_best)
    return table
