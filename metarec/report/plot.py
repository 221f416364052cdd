"""The reproduction's figure: a panel per (metric, scenario), methods sorted by result.

Each metric is a row of panels sharing one x-axis, its label saying which direction is
better; the shrunk bias baseline and the paper's own method (MeLU-5) are vertical reference
lines; error bars are the two-level bootstrap intervals. Written as PNG and PDF.
"""

from __future__ import annotations

import io
from pathlib import Path

from metarec.data.scenarios import ALL_SCENARIOS
from metarec.io import atomic_write_bytes
from metarec.metrics.names import METRICS


def plot(
    summary: list[dict],
    paper: dict,
    path: Path,
    title: str,
    headline: tuple[str, ...],
    paper_best: str = "",
) -> list[Path]:
    """Write ``path`` (.png) and its .pdf twin, a row of panels per ``headline`` metric; the two
    paths. The paper's own method's row (``paper_best``) is a reference line beside the bias
    baseline's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metarec.report.compare import REFERENCES, label, paper_scenario, reference_entry

    scenarios = [s for s in ALL_SCENARIOS if any(e["scenario"] == s for e in summary)]
    rows = len(max(([e for e in summary if e["scenario"] == s] for s in scenarios), key=len))
    fig, axes = plt.subplots(len(headline), len(scenarios), sharex="row", squeeze=False,
                             figsize=(3.4 * len(scenarios), 2 * (0.22 * rows + 1.2)))  # fmt: skip
    published = paper.get(paper_best, {})
    for row, metric in enumerate(headline):
        for col, scenario in enumerate(scenarios):
            axis = axes[row][col]
            entries = [e for e in summary
                       if e["scenario"] == scenario and e.get(metric) is not None]  # fmt: skip
            higher_first = not METRICS[metric].lower_is_better
            entries.sort(key=lambda e: e[metric], reverse=higher_first)  # best first: on top
            for y, entry in enumerate(reversed(entries)):
                low, high = entry.get(f"{metric}_low"), entry.get(f"{metric}_high")
                error = [[entry[metric] - low], [high - entry[metric]]] if low is not None else 0
                is_ref = entry["method"] in REFERENCES
                axis.errorbar(entry[metric], y, xerr=error, fmt="o", markersize=3, capsize=2,
                              color="C1" if is_ref else "C0")  # fmt: skip
            names = [label(e["method"], e["text"]) for e in reversed(entries)]
            axis.set_yticks(range(len(entries)), names, fontsize=6)
            reference = reference_entry(entries)
            if reference:
                axis.axvline(reference[metric], color="C1", linestyle="--", linewidth=1,
                             label=f"{reference['method']} (bias baseline)")  # fmt: skip
            paper_value = published.get(paper_scenario(scenario), {}).get(metric)
            if paper_value is not None:
                axis.axvline(paper_value, color="C3", linestyle=":", linewidth=1,
                             label=paper_best)  # fmt: skip
            axis.set_title(scenario, fontsize=8)
            axis.set_xlabel(f"{METRICS[metric].label} ({METRICS[metric].better})", fontsize=7)
            axis.tick_params(axis="x", labelsize=6)
            axis.grid(axis="x", alpha=0.3)
            if row == 0 and col == len(scenarios) - 1 and axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=6, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], dpi=120, metadata=_metadata(suffix))
        written.append(atomic_write_bytes(path.with_suffix(suffix), buffer.getvalue()))
    plt.close(fig)
    return written


def _metadata(suffix: str) -> dict:
    # No creation date in the files, so that the same results give the same bytes.
    return {"CreationDate": None} if suffix == ".pdf" else {"Software": None}
