"""The report of a reproduction scored by pooled AUC (one query per task: TALLRec's samples).

Each run's ``per_task.csv.gz`` holds every test sample's ``score`` and ``label`` (task id
``user:item``). Per (grid point, method, item text): the mean over seeds of each seed's
pooled AUC with a 95% two-level bootstrap interval (seeds, then users: a user's samples are
resampled together; :func:`metarec.metrics.pooled.pooled_auc_estimate`), and a paired bootstrap
test of the AUC difference against the reference, the best simple baseline of that grid point
(the no-training ``mean`` rows on the few samples alone; :func:`paired_auc_test`). Every seed
scores the same test samples (TALLRec's fixed test part; ``--data-seeds`` varies only the
few-shot training set), so the resamples are shared across seeds. Rows trained with extra
data (``data.tallrec.extra``) are labelled. The table stands the paper's few-shot rows
(``metarec.report.paper.FEW_SHOT_PAPER``) beside ours, AUC x 100 as the paper prints it;
``summary.csv`` holds AUC in 0-1.
"""

from __future__ import annotations

import io
import statistics
from pathlib import Path

import numpy as np
import yaml

from metarec.errors import DataError
from metarec.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from metarec.metrics.per_task import PER_TASK_FILE, read_per_task
from metarec.metrics.pooled import paired_auc_test, pooled_auc_estimate
from metarec.report.cells import MISSING, cell
from metarec.report.files import write_csv

ALPHA = 0.01  # a margin counts when its paired test gives p below this
SIMPLE = ("mean",)  # learners that train nothing: the simple baselines
SCENARIO = "warm"  # the benchmark's one test set
SUMMARY_FIELDS = [
    "grid", "method", "text", "learner", "extra_data", "seeds", "failed", "seconds", "auc",
    "auc_low", "auc_high", "mae", "reference", "auc_diff_vs_reference", "auc_diff_low",
    "auc_diff_high", "p_vs_reference",
]  # fmt: skip


def grid_value(point: str, key: str) -> str | None:
    """The value ``key`` takes at a grid point (``metarec.reproduce.spec.grid_points``: its
    space-separated ``key=value`` settings); None where the point does not set it."""
    for setting in point.split():
        name, _, value = setting.partition("=")
        if name == key:
            return value
    return None


def is_pooled(rows: list[dict]) -> bool:
    """Whether the rows' runs were scored pooled: their per-task files hold ``score`` and
    ``label`` (the first finished run decides)."""
    ok = next((row for row in rows if row["status"] == "ok" and row.get("run_dir")), None)
    if ok is None:
        return False
    columns = read_per_task(Path(ok["run_dir"]) / PER_TASK_FILE).get(ok["scenario"], {})
    return "score" in columns and "label" in columns


def _run_config(run_dir: str) -> dict:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise DataError(f"{path} not found: the run folder of a runs.json row is incomplete")
    return yaml.safe_load(path.read_text())


def _seed_columns(rows: list[dict]) -> dict[int, dict[str, np.ndarray]]:
    """seed -> its test samples' task ids, users, scores and labels."""
    columns = {}
    for row in rows:
        path = Path(row["run_dir"]) / PER_TASK_FILE
        found = read_per_task(path).get(SCENARIO)
        if not found or "score" not in found:
            raise DataError(f"{path} has no '{SCENARIO}' scores (not a pooled-scoring run)")
        tasks = np.asarray(found["task"])
        columns[row["seed"]] = {
            "task": tasks,
            "user": np.array([task.split(":", 1)[0] for task in tasks]),
            "score": np.asarray(found["score"], dtype=np.float64),
            "label": np.asarray(found["label"], dtype=np.float64),
        }
    return columns


def _shared(columns: dict[int, dict]) -> bool:
    """Whether every seed scored the same test samples in the same order."""
    first = next(iter(columns.values()))["task"]
    return all(np.array_equal(c["task"], first) for c in columns.values())


def _test(mine: dict[int, dict], other: dict[int, dict], names: tuple, n_boot: int) -> dict:
    seeds = sorted(set(mine) & set(other))
    for seed in seeds:
        if not np.array_equal(mine[seed]["task"], other[seed]["task"]):
            raise DataError(f"{names[0]} and {names[1]} were scored on different samples "
                            f"for seed {seed}; a comparison needs the same data")  # fmt: skip
    both = {seed: mine[seed] for seed in seeds}
    test = paired_auc_test([mine[s]["score"] for s in seeds], [other[s]["score"] for s in seeds],
                           [mine[s]["label"] for s in seeds], [mine[s]["user"] for s in seeds],
                           shared=_shared(both), n_boot=n_boot)  # fmt: skip
    return {"diff": test.diff, "low": test.low, "high": test.high, "p": test.p}


def _variant(row: dict) -> tuple[str, str, str]:
    return row.get("grid", ""), row["method"], row["text"]


def aggregate_pooled(rows: list[dict], n_boot: int = 4000) -> list[dict]:
    """Per (grid point, method, text): the pooled-AUC estimate over seeds and users, the run
    mean MAE, failures, and the paired AUC test against the grid point's reference."""
    variants = list(dict.fromkeys(_variant(row) for row in rows))
    summary, columns = [], {}
    for grid, method, text in variants:
        mine = [row for row in rows if _variant(row) == (grid, method, text)]
        ok = [r for r in mine if r["status"] == "ok" and r.get("scenario") == SCENARIO]
        failed = [r for r in mine if r["status"] != "ok"]
        entry = {"grid": grid, "method": method, "text": text, "seeds": len(ok),
                 "failed": len({r["seed"] for r in failed}),
                 "errors": sorted({r["status"] for r in failed}),
                 "seconds": statistics.mean(r["seconds"] for r in ok) if ok else None,
                 "learner": None, "extra_data": False, "auc": None, "mae": None}  # fmt: skip
        if ok:
            config = _run_config(ok[0]["run_dir"])
            entry["learner"] = config["learner"]["name"]
            entry["extra_data"] = bool(config["data"].get("tallrec", {}).get("extra"))
            found = columns[(grid, method, text)] = _seed_columns(ok)
            seeds = sorted(found)
            estimate = pooled_auc_estimate(
                [found[s]["score"] for s in seeds], [found[s]["label"] for s in seeds],
                [found[s]["user"] for s in seeds], shared=_shared(found), n_boot=n_boot,
            )  # fmt: skip
            entry["auc"], entry["auc_low"], entry["auc_high"] = (
                estimate.mean, estimate.low, estimate.high)  # fmt: skip
            entry["mae"] = statistics.mean(r["mae"] for r in ok)
            users = found[seeds[0]]["user"]
            entry["test_samples"], entry["test_users"] = len(users), len(set(users))
        summary.append(entry)
    for grid in dict.fromkeys(e["grid"] for e in summary):
        here = [e for e in summary if e["grid"] == grid and e["auc"] is not None]
        simple = [e for e in here if e["learner"] in SIMPLE and not e["extra_data"]]
        if not simple:
            continue
        reference = max(simple, key=lambda e: e["auc"])
        ref_key = (grid, reference["method"], reference["text"])
        for entry in here:
            entry["reference"] = label(reference)
            if entry is reference:
                continue
            key = (grid, entry["method"], entry["text"])
            entry["vs_reference"] = _test(columns[key], columns[ref_key],
                                          (label(entry), label(reference)), n_boot)  # fmt: skip
    return summary


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


def _points(summary: list[dict], axis: str | None) -> list[tuple[str, str | None]]:
    """(grid point, its value on the table's axis), in run order."""
    return [(grid, grid_value(grid, axis) if axis else None)
            for grid in dict.fromkeys(e["grid"] for e in summary)]  # fmt: skip


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
    header = ["samples", "method", "item text", "data", "AUC x 100 [95% CI]",
              "Δ AUC vs best simple baseline", "seeds"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for grid, value in _points(summary, axis):
        size = value if value is not None else (grid or MISSING)
        for method, results in published.items():
            if value is not None and int(value) in results:
                lines.append(f"| {size} | {method} | – | few-shot | "
                             f"{_x100(results[int(value)])} | – | – |")  # fmt: skip
        mine = [e for e in summary if e["grid"] == grid]
        for entry in sorted(mine, key=lambda e: -(e["auc"] if e["auc"] is not None else -1)):
            failed = f" ({entry['failed']} failed)" if entry["failed"] else ""
            lines.append(f"| {size} | {entry['method']} | {entry['text']} | {_data_cell(entry)} | "
                         f"{_auc_cell(entry)} | {_diff_cell(entry)} | "
                         f"{entry['seeds']}{failed} |")  # fmt: skip
    return lines


def pooled_findings(summary: list[dict], paper: dict) -> list[str]:
    """One generated sentence per grid point: the best row, the reference, which rows beat it
    significantly, how ours stand against the paper's best published row; then failures."""
    axis, published = paper.get("axis"), paper.get("rows", {})
    lines = []
    scored = next((e for e in summary if e["auc"] is not None), None)
    if scored:
        lines.append(f"- The test set holds {scored['test_samples']:,} samples of "
                     f"{scored['test_users']} users (the benchmark lists samples user by "
                     "user), so intervals that resample users are wide.")  # fmt: skip
    for grid, value in _points(summary, axis):
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
                text += (f". Significantly above it (p < {ALPHA}): few-shot only: "
                         f"{', '.join(few) or 'none'}; with extra data: "
                         f"{', '.join(extra) or 'none'}")  # fmt: skip
            else:
                text += f". **No row is significantly above it (p < {ALPHA}).**"
        if value is not None and published:
            top_name, top = max(((m, r.get(int(value))) for m, r in published.items()
                                 if r.get(int(value)) is not None), key=lambda x: x[1])  # fmt: skip
            above = [f"`{label(e)}`" for e in mine if e["auc_low"] > top]
            point = [f"`{label(e)}`" for e in mine if e["auc"] > top >= e["auc_low"]]
            text += (f". Whole interval above {top_name}'s published {_x100(top)} (the paper "
                     "gives no per-sample scores for a paired test): "
                     f"{', '.join(above) if above else 'none'}")  # fmt: skip
            text += f"; above it, interval not: {', '.join(point)}." if point else "."
        else:
            text += "."
        lines.append(text)
    most = max((e["seeds"] for e in summary), default=0)
    fewer = sorted({(label(e), e["seeds"]) for e in summary if 0 < e["seeds"] < most})
    if fewer:
        lines.append(f"- Rows with fewer seeds than the others ({most}): "
                     + ", ".join(f"`{name}` ({n})" for name, n in fewer) + ".")  # fmt: skip
    failed = sorted({(e["method"], e["grid"], err) for e in summary for err in e["errors"]})
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {m} ({g or 'no grid'}): {err}" for m, g, err in failed]
    return lines


def plot_pooled(summary: list[dict], paper: dict, path: Path, title: str) -> list[Path]:
    """A panel per grid point: our rows' AUC x 100 with intervals (extra-data rows in another
    colour), the reference and the paper's best published row as vertical lines. PNG + PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis_key, published = paper.get("axis"), paper.get("rows", {})
    points = _points(summary, axis_key)
    rows = max(len([e for e in summary if e["grid"] == g]) for g, _ in points)
    fig, axes = plt.subplots(1, len(points), sharex=True, squeeze=False,
                             figsize=(3.6 * len(points), 0.25 * rows + 1.6))  # fmt: skip
    for col, (grid, value) in enumerate(points):
        axis = axes[0][col]
        entries = sorted((e for e in summary if e["grid"] == grid and e["auc"] is not None),
                         key=lambda e: e["auc"])  # fmt: skip
        for y, entry in enumerate(entries):
            low, high = 100 * entry["auc_low"], 100 * entry["auc_high"]
            axis.errorbar(100 * entry["auc"], y, xerr=[[100 * entry["auc"] - low],
                          [high - 100 * entry["auc"]]], fmt="o", markersize=3, capsize=2,
                          color="C2" if entry["extra_data"] else "C0")  # fmt: skip
        names = [label(e) + (" (extra)" if e["extra_data"] else "") for e in entries]
        axis.set_yticks(range(len(entries)), names, fontsize=6)
        ref = next((e for e in entries if e.get("reference") == label(e)), None)
        if ref:
            axis.axvline(100 * ref["auc"], color="C1", linestyle="--", linewidth=1,
                         label=f"{label(ref)} (best simple baseline)")  # fmt: skip
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


def write_pooled_report(out: Path, rows: list[dict], paper: dict, title: str) -> str:
    """``summary.csv``/``.json``, ``table.md`` and ``plot.png``/``.pdf``; the table's text."""
    summary = aggregate_pooled(rows)
    atomic_write_json(out / "summary.json", summary)
    flat = []
    for entry in summary:
        test = entry.get("vs_reference") or {}
        flat.append({**entry, "auc_diff_vs_reference": test.get("diff"),
                     "auc_diff_low": test.get("low"), "auc_diff_high": test.get("high"),
                     "p_vs_reference": test.get("p")})  # fmt: skip
    write_csv(out / "summary.csv", flat, SUMMARY_FIELDS)
    lines = [f"# {title}", "", legend(paper), "", *pooled_table_lines(summary, paper), "",
             "Findings (generated from these results):", "",
             *pooled_findings(summary, paper)]  # fmt: skip
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    plot_pooled(summary, paper, out / "plot.png", title)
    return table
