"""The pooled-AUC report's figure (:mod:`metarec.report.pooled`): a panel per grid point."""

from __future__ import annotations

import io
from pathlib import Path

from metarec.io import atomic_write_bytes
from metarec.report.pooled_table import axis_points, label


def plot_pooled(summary: list[dict], paper: dict, path: Path, title: str) -> list[Path]:
    """A panel per grid point: our rows' AUC x 100 with intervals (extra-data rows in another
    colour), the reference and the paper's best published row as vertical lines. PNG + PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis_key, published = paper.get("axis"), paper.get("rows", {})
    points = axis_points(summary, axis_key)
    rows = max(len([e for e in summary if e["grid"] == g]) for g, _ in points)
    fig, axes = plt.subplots(
        1, len(points), sharex=True, squeeze=False, figsize=(3.6 * len(points), 0.25 * rows + 1.6)
    )
    for col, (grid, value) in enumerate(points):
        axis = axes[0][col]
        entries = sorted(
            (e for e in summary if e["grid"] == grid and e["auc"] is not None),
            key=lambda e: e["auc"],
        )
        for y, entry in enumerate(entries):
            low, high = 100 * entry["auc_low"], 100 * entry["auc_high"]
            axis.errorbar(
                100 * entry["auc"],
                y,
                xerr=[[100 * entry["auc"] - low], [high - 100 * entry["auc"]]],
                fmt="o",
                markersize=3,
                capsize=2,
                color="C2" if entry["extra_data"] else "C0",
            )
        names = [label(e) + (" (extra)" if e["extra_data"] else "") for e in entries]
        axis.set_yticks(range(len(entries)), names, fontsize=6)
        ref = next((e for e in entries if e.get("reference") == label(e)), None)
        if ref:
            axis.axvline(
                100 * ref["auc"],
                color="C1",
                linestyle="--",
                linewidth=1,
                label=f"{label(ref)} (best simple baseline)",
            )
        if value is not None:
            tops = [(r[int(value)], m) for m, r in published.items() if int(value) in r]
            if tops:
                top, top_name = max(tops)
                axis.axvline(100 * top, color="C3", linestyle=":", linewidth=1, label=top_name)
        axis.set_title(f"{value} samples" if value is not None else grid or "all", fontsize=8)
        axis.set_xlabel("AUC x 100 (higher is better)", fontsize=7)
        axis.tick_params(axis="x", labelsize=6)
        axis.grid(axis="x", alpha=0.3)
    handles, names = axes[0][-1].get_legend_handles_labels()
    if handles:  # below the panels, where it hides no row
        fig.legend(handles, names, fontsize=6, loc="lower center", ncol=len(handles))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    written = []
    for suffix in (".png", ".pdf"):
        buffer = io.BytesIO()
        metadata = {"CreationDate": None} if suffix == ".pdf" else {"Software": None}
        fig.savefig(buffer, format=suffix[1:], dpi=120, metadata=metadata)
        written.append(atomic_write_bytes(path.with_suffix(suffix), buffer.getvalue()))
    plt.close(fig)
    return written
