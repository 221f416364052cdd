"""The pooled-AUC report's table and findings (:mod:`metarec.report.pooled`): rows grouped by
grid point, the paper's rows beside ours, AUC x 100 as the paper prints it."""

from __future__ import annotations

from metarec.report.cells import MISSING, cell

ALPHA = 0.01  # a margin counts when its paired test gives p below this


def grid_value(point: str, key: str) -> str | None:
    """The value ``key`` takes at a grid point (``metarec.reproduce.spec.grid_points``: its
    space-separated ``key=value`` settings); None where the point does not set it."""
    for setting in point.split():
        name, _, value = setting.partition("=")
        if name == key:
            return value
    return None


def label(entry: dict) -> str:
    """A row's name: the method, ``+text`` when it reads item text."""
    return entry["method"] if entry["text"] == "none" else f"{entry['method']}+{entry['text']}"


def _x100(value: float | None) -> str:
    return cell(None if value is None else 100 * value, 2)


def _p(p: float) -> str:
    return "<.0005" if p < 0.0005 else cell(p).lstrip("0")


def _wins(entry: dict) -> bool:
    test = entry.get("vs_reference")
    return bool(test and test["diff"] > 0 and test["p"] < ALPHA)


def _loses(entry: dict) -> bool:
    test = entry.get("vs_reference")
    return bool(test and test["diff"] < 0 and test["p"] < ALPHA)


def _auc_cell(entry: dict) -> str:
    if not entry["seeds"]:
        return "failed"
    marks = "▲" if _wins(entry) else "▼" if _loses(entry) else ""
    interval = f"{_x100(entry['auc'])} [{_x100(entry['auc_low'])}, {_x100(entry['auc_high'])}]"
    return interval + (f" {marks}" if marks else "")


def _diff_cell(entry: dict) -> str:
    test = entry.get("vs_reference")
    if not test:
        return "reference" if entry.get("reference") == label(entry) else MISSING
    return f"{cell(100 * test['diff'], 2, signed=True)} (p {_p(test['p'])})"


def _data_cell(entry: dict) -> str:
    return "few-shot + **extra** (rest of ML-100K)" if entry["extra_data"] else "few-shot"


def axis_points(summary: list[dict], axis: str | None) -> list[tuple[str, str | None]]:
    """(grid point, its value on the table's axis), in run order."""
    return [
        (grid, grid_value(grid, axis) if axis else None)
        for grid in dict.fromkeys(e["grid"] for e in summary)
    ]


def legend(paper: dict) -> str:
    """The table's legend."""
    source = paper.get("source", "the paper")
    return (
        "AUC x 100 over the 1,000 test samples pooled (TALLRec's metric); ours: mean over seeds "
        "(each seed draws another few-shot training set; the test set is fixed) [95% two-level "
        "bootstrap interval: seeds, then users, a user's samples resampled together]. "
        "Δ: the paired pooled-AUC difference x 100 against the reference, the best simple "
        "baseline trained on the few samples only (no-training `mean` rows), with its paired "
        f"bootstrap p-value; ▲ / ▼: significantly (p < {ALPHA}) above / below it. "
        "**extra**: the row also (meta-)trains on the ~80,000 samples before the benchmark, "
        f"data the paper's rows do not use. Paper rows: {source}, trained on the same number "
        "of samples."
    )


def pooled_table_lines(summary: list[dict], paper: dict) -> list[str]:
    """Markdown rows grouped by the grid axis (training samples): the paper's rows, then ours
    sorted by AUC."""
    axis, published = paper.get("axis"), paper.get("rows", {})
    header = [
        "samples",
        "method",
        "item text",
        "data",
        "AUC x 100 [95% CI]",
        "Δ AUC vs best simple baseline",
        "seeds",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for grid, value in axis_points(summary, axis):
        size = value if value is not None else (grid or MISSING)
        for method, results in published.items():
            if value is not None and int(value) in results:
                lines.append(
                    f"| {size} | {method} | – | few-shot | {_x100(results[int(value)])} | – | – |"
                )
        mine = [e for e in summary if e["grid"] == grid]
        for entry in sorted(mine, key=lambda e: -(e["auc"] if e["auc"] is not None else -1)):
            failed = f" ({entry['failed']} failed)" if entry["failed"] else ""
            lines.append(
                f"| {size} | {entry['method']} | {entry['text']} | {_data_cell(entry)} | "
                f"{_auc_cell(entry)} | {_diff_cell(entry)} | "
                f"{entry['seeds']}{failed} |"
            )
    return lines


def pooled_findings(summary: list[dict], paper: dict) -> list[str]:
    """One generated sentence per grid point: the best row, the reference, which rows beat it
    significantly, how ours stand against the paper's best published row; then failures."""
    axis, published = paper.get("axis"), paper.get("rows", {})
    lines = []
    scored = next((e for e in summary if e["auc"] is not None), None)
    if scored:
        lines.append(
            f"- The test set holds {scored['test_samples']:,} samples of "
            f"{scored['test_users']} users (the benchmark lists samples user by "
            "user), so intervals that resample users are wide."
        )
    for grid, value in axis_points(summary, axis):
        mine = [e for e in summary if e["grid"] == grid and e["auc"] is not None]
        if not mine:
            continue
        best = max(mine, key=lambda e: e["auc"])
        ref = next((e for e in mine if e.get("reference") == label(e)), None)
        name = f"{value} samples" if value is not None else (grid or "all runs")
        text = f"- **{name}**: best `{label(best)}`{' (extra data)' if best['extra_data'] else ''}"
        text += f" AUC {_auc_cell(best)}"
        if ref:
            text += f"; best simple baseline `{label(ref)}` {_x100(ref['auc'])}"
            beating = [e for e in mine if _wins(e)]
            few = [f"`{label(e)}`" for e in beating if not e["extra_data"]]
            extra = [f"`{label(e)}`" for e in beating if e["extra_data"]]
            if few or extra:
                text += (
                    f". Significantly above it (p < {ALPHA}): few-shot only: "
                    f"{', '.join(few) or 'none'}; with extra data: "
                    f"{', '.join(extra) or 'none'}"
                )
            else:
                text += f". **No row is significantly above it (p < {ALPHA}).**"
        if value is not None and published:
            top_name, top = max(
                (
                    (m, r.get(int(value)))
                    for m, r in published.items()
                    if r.get(int(value)) is not None
                ),
                key=lambda x: x[1],
            )
            above = [f"`{label(e)}`" for e in mine if e["auc_low"] > top]
            point = [f"`{label(e)}`" for e in mine if e["auc"] > top >= e["auc_low"]]
            text += (
                f". Whole interval above {top_name}'s published {_x100(top)} (the paper "
                "gives no per-sample scores for a paired test): "
                f"{', '.join(above) if above else 'none'}"
            )
            text += f"; above it, interval not: {', '.join(point)}." if point else "."
        else:
            text += "."
        lines.append(text)
    most = max((e["seeds"] for e in summary), default=0)
    fewer = sorted({(label(e), e["seeds"]) for e in summary if 0 < e["seeds"] < most})
    if fewer:
        lines.append(
            f"- Rows with fewer seeds than the others ({most}): "
            + ", ".join(f"`{name}` ({n})" for name, n in fewer)
            + "."
        )
    failed = sorted({(e["method"], e["grid"], err) for e in summary for err in e["errors"]})
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {m} ({g or 'no grid'}): {err}" for m, g, err in failed]
    return lines
