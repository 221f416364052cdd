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
(``paper``, the dataset's published rows) beside ours, AUC x 100 as the paper prints it
(:mod:`metarec.report.pooled_table`; the figure: :mod:`metarec.report.pooled_plot`);
``summary.csv`` holds AUC in 0-1.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import yaml

from metarec.errors import DataError
from metarec.io import atomic_write_json, atomic_write_text
from metarec.metrics.per_task import PER_TASK_FILE, read_per_task
from metarec.metrics.pooled import paired_auc_test, pooled_auc_estimate
from metarec.report.files import write_csv
from metarec.report.pooled_plot import plot_pooled
from metarec.report.pooled_table import label, legend, pooled_findings, pooled_table_lines

SIMPLE = ("mean",)  # learners that train nothing: the simple baselines
SCENARIO = "warm"  # the benchmark's one test set
SUMMARY_FIELDS = [
    "grid",
    "method",
    "text",
    "learner",
    "extra_data",
    "seeds",
    "failed",
    "seconds",
    "auc",
    "auc_low",
    "auc_high",
    "mae",
    "reference",
    "auc_diff_vs_reference",
    "auc_diff_low",
    "auc_diff_high",
    "p_vs_reference",
]


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
            raise DataError(
                f"{names[0]} and {names[1]} were scored on different samples "
                f"for seed {seed}; a comparison needs the same data"
            )
    both = {seed: mine[seed] for seed in seeds}
    test = paired_auc_test(
        [mine[s]["score"] for s in seeds],
        [other[s]["score"] for s in seeds],
        [mine[s]["label"] for s in seeds],
        [mine[s]["user"] for s in seeds],
        shared=_shared(both),
        n_boot=n_boot,
    )
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
        entry = {
            "grid": grid,
            "method": method,
            "text": text,
            "seeds": len(ok),
            "failed": len({r["seed"] for r in failed}),
            "errors": sorted({r["status"] for r in failed}),
            "seconds": statistics.mean(r["seconds"] for r in ok) if ok else None,
            "learner": None,
            "extra_data": False,
            "auc": None,
            "mae": None,
        }
        if ok:
            config = _run_config(ok[0]["run_dir"])
            entry["learner"] = config["learner"]["name"]
            entry["extra_data"] = bool(config["data"].get("tallrec", {}).get("extra"))
            found = columns[(grid, method, text)] = _seed_columns(ok)
            seeds = sorted(found)
            estimate = pooled_auc_estimate(
                [found[s]["score"] for s in seeds],
                [found[s]["label"] for s in seeds],
                [found[s]["user"] for s in seeds],
                shared=_shared(found),
                n_boot=n_boot,
            )
            entry.update(auc=estimate.mean, auc_low=estimate.low, auc_high=estimate.high)
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
            entry["vs_reference"] = _test(
                columns[key], columns[ref_key], (label(entry), label(reference)), n_boot
            )
    return summary


def write_pooled_report(out: Path, rows: list[dict], paper: dict, title: str) -> str:
    """``summary.csv``/``.json``, ``table.md`` and ``plot.png``/``.pdf``; the table's text."""
    summary = aggregate_pooled(rows)
    atomic_write_json(out / "summary.json", summary)
    flat = []
    for entry in summary:
        test = entry.get("vs_reference") or {}
        flat.append(
            {
                **entry,
                "auc_diff_vs_reference": test.get("diff"),
                "auc_diff_low": test.get("low"),
                "auc_diff_high": test.get("high"),
                "p_vs_reference": test.get("p"),
            }
        )
    write_csv(out / "summary.csv", flat, SUMMARY_FIELDS)
    lines = [
        f"# {title}",
        "",
        legend(paper),
        "",
        *pooled_table_lines(summary, paper),
        "",
        "Findings (generated from these results):",
        "",
        *pooled_findings(summary, paper),
    ]
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    plot_pooled(summary, paper, out / "plot.png", title)
    return table
