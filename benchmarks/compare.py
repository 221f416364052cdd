"""Every method of one dataset on identical tasks: one table of MAE and nDCG@3 per scenario.

    python benchmarks/compare.py synthetic
    python benchmarks/compare.py melu_ml1m --set data.root=../shared/data/melu-ml1m \
        --set trainer.max_epochs=3 --methods maml,melu,mean

Runs ``experiments/<dataset>/<method>.yaml`` (``base.yaml`` aside) one after another in this
process (same data config, so the same tasks; ``--jobs N``: in N worker processes), through
``metarec reproduce``'s runner, then writes ``results.csv``, ``results.json`` and ``table.md``
into ``--out``. A method that fails is a ``failed`` row, never left out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from metarec.config.load import experiment_files
from metarec.data.scenarios import SCENARIOS
from metarec.io import atomic_write_json, atomic_write_text
from metarec.metrics.names import HEADLINE, NAMES, label
from metarec.report.cells import cell
from metarec.report.files import write_csv
from metarec.reproduce.runner import Job, run_jobs

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# The CSV's metric columns (results.json holds every metric; mae_round came after this layout).
CSV_METRICS = [*(name for name in NAMES if name != "mae_round"), "n_tasks"]
# What the runner's rows hold that these files leave out (the trace is printed instead).
RUNNER_ONLY = ("val_mae", "run_dir", "trace")


def run_all(
    dataset: str, methods: list[str], overrides: list[str], out: Path, jobs: int = 1
) -> list[dict]:
    """One row per (method, scenario) with the run's wall time, or one ``failed`` row with the
    error, method by method."""
    folder = EXPERIMENTS / dataset
    work = [Job(folder / f"{method}.yaml", [*overrides, f"output_dir={out / 'runs'}"],
                {"method": method})
            for method in methods]  # fmt: skip
    found: dict[int, list[dict]] = {}
    for index, rows in run_jobs(work, jobs):
        found[index] = rows
        if "trace" in rows[0]:
            print(rows[0]["trace"], file=sys.stderr)
            print(f"{methods[index]}: {rows[0]['status']}")
        else:
            print(f"{methods[index]}: done in {rows[0]['seconds']:.1f} s")
    return [{key: value for key, value in row.items() if key not in RUNNER_ONLY}
            for index in sorted(found) for row in found[index]]  # fmt: skip


def markdown(rows: list[dict], title: str) -> str:
    """Methods as rows, scenarios as columns, MAE / nDCG@3 in each cell."""
    methods = list(dict.fromkeys(row["method"] for row in rows))
    shown = " / ".join(map(label, HEADLINE["rating"]))
    lines = [f"# {title}", "", f"{shown} per scenario (tasks identical for every method).", ""]
    lines.append("| method | " + " | ".join(SCENARIOS) + " | seconds |")
    lines.append("|---" * (len(SCENARIOS) + 2) + "|")
    for method in methods:
        by_scenario = {row.get("scenario"): row for row in rows if row["method"] == method}
        cells, seconds = [], cell(None)
        for scenario in SCENARIOS:
            row = by_scenario.get(scenario, {"status": "missing"})
            if row["status"] != "ok":
                cells.append("failed")
                continue
            cells.append(" / ".join(cell(row[key]) for key in HEADLINE["rating"]))
            seconds = cell(row["seconds"], 0)
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, stem: str, rows: list[dict], keys: list[str], table: str) -> None:
    """``<stem>.csv`` and ``<stem>.json`` of the rows and ``table.md``, each written atomically;
    the table is printed too."""
    write_csv(out / f"{stem}.csv", rows, [*keys, "status", "seconds", *CSV_METRICS])
    atomic_write_json(out / f"{stem}.json", rows)
    atomic_write_text(out / "table.md", table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="folder under experiments/, e.g. synthetic or melu_ml1m")
    parser.add_argument("--methods", help="comma-separated; default: every YAML in the folder")
    parser.add_argument("--set", action="append", default=[], help="key=value for every run")
    parser.add_argument("--out", type=Path, help="default results/compare-<dataset>")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (default 1: in this process)"
    )
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    methods = (
        args.methods.split(",")
        if args.methods
        else [path.stem for path in experiment_files(EXPERIMENTS / args.dataset)]
    )
    out = args.out or Path("results") / f"compare-{args.dataset}"
    overrides = [*args.set, "trainer.progress_bar=false"]
    rows = run_all(args.dataset, methods, overrides, out, jobs=args.jobs)
    table = markdown(rows, f"{args.dataset}: {' '.join(args.set) or 'experiment defaults'}")
    write_results(out, "results", rows, ["method", "scenario"], table)


if __name__ == "__main__":
    main()
