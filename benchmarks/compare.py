"""Every method of one dataset on identical tasks: one table of MAE and nDCG@3 per scenario.

    python benchmarks/compare.py synthetic
    python benchmarks/compare.py melu_ml1m --set data.root=../shared/data/melu-ml1m \
        --set trainer.max_epochs=3 --methods maml,melu,mean

Runs ``experiments/<dataset>/<method>.yaml`` one after another in this process (same data
config, so the same tasks), then writes ``results.csv``, ``results.json`` and ``table.md``
into ``--out``. A method that fails is a ``failed`` row, never left out.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import time
import traceback
import warnings
from pathlib import Path

from metarec.config import load_config
from metarec.data.scenarios import SCENARIOS
from metarec.io import atomic_write_json, atomic_write_text
from metarec.train import train

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
COLUMNS = ("mae", "ndcg@3")


def run_all(dataset: str, methods: list[str], overrides: list[str], out: Path) -> list[dict]:
    """One row per (method, scenario), with the run's wall time, or the error if it failed."""
    rows = []
    for method in methods:
        path = EXPERIMENTS / dataset / f"{method}.yaml"
        start = time.perf_counter()
        try:
            cfg = load_config(path, [*overrides, f"output_dir={out / 'runs'}"])
            result = train(cfg)
        except Exception as err:  # a failed method is reported as failed, not dropped
            traceback.print_exc()
            rows += [
                {"method": method, "scenario": s, "status": f"failed: {err}"} for s in SCENARIOS
            ]
            continue
        seconds = time.perf_counter() - start
        for scenario, values in result.metrics.items():
            rows.append({"method": method, "scenario": scenario, "status": "ok",
                         "seconds": round(seconds, 1), **values})  # fmt: skip
        print(f"{method}: done in {seconds:.1f} s")
    return rows


def markdown(rows: list[dict], title: str) -> str:
    """Methods as rows, scenarios as columns, MAE / nDCG@3 in each cell."""
    methods = list(dict.fromkeys(row["method"] for row in rows))
    lines = [f"# {title}", "", "MAE / nDCG@3 per scenario (tasks identical for every method).", ""]
    lines.append("| method | " + " | ".join(SCENARIOS) + " | seconds |")
    lines.append("|---" * (len(SCENARIOS) + 2) + "|")
    for method in methods:
        by_scenario = {row["scenario"]: row for row in rows if row["method"] == method}
        cells, seconds = [], "–"
        for scenario in SCENARIOS:
            row = by_scenario.get(scenario, {"status": "missing"})
            if row["status"] != "ok":
                cells.append("failed")
                continue
            cells.append(" / ".join(f"{row[key]:.4f}" for key in COLUMNS))
            seconds = f"{row['seconds']:.0f}"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seconds} |")
    return "\n".join(lines) + "\n"


METRIC_FIELDS = ["mae", "rmse", "ndcg@1", "ndcg@3", "auc", "precision", "recall", "f1",
                 "n_tasks"]  # fmt: skip


def write_results(out: Path, stem: str, rows: list[dict], keys: list[str], table: str) -> None:
    """``<stem>.csv`` and ``<stem>.json`` of the rows and ``table.md``, each written atomically;
    the table is printed too."""
    buffer = io.StringIO()
    fields = [*keys, "status", "seconds", *METRIC_FIELDS]
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / f"{stem}.csv", buffer.getvalue())
    atomic_write_json(out / f"{stem}.json", rows)
    atomic_write_text(out / "table.md", table)
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="folder under experiments/, e.g. synthetic or melu_ml1m")
    parser.add_argument("--methods", help="comma-separated; default: every YAML in the folder")
    parser.add_argument("--set", action="append", default=[], help="key=value for every run")
    parser.add_argument("--out", type=Path, help="default results/compare-<dataset>")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    methods = (
        args.methods.split(",")
        if args.methods
        else sorted(path.stem for path in (EXPERIMENTS / args.dataset).glob("*.yaml"))
    )
    out = args.out or Path("results") / f"compare-{args.dataset}"
    rows = run_all(args.dataset, methods, [*args.set, "trainer.progress_bar=false"], out)
    table = markdown(rows, f"{args.dataset}: {' '.join(args.set) or 'experiment defaults'}")
    write_results(out, "results", rows, ["method", "scenario"], table)


if __name__ == "__main__":
    main()
