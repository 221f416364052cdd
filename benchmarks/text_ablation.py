"""The same learner on the same tasks with and without item text, over several seeds.

    python benchmarks/text_ablation.py experiments/melu_ml1m/maml.yaml --seeds 3 \
        --set data.root=../shared/data/melu-ml1m

For each ``item.text`` in ``--text`` (default ``none,join``) and each seed (``seed`` only: the
data seed, hence the tasks, stays fixed) runs ``metarec train``, then writes ``runs.csv`` and
``table.md`` (mean and 95% Student-t interval over seeds, MAE and nDCG@3 per scenario) into
``--out``. A failed run is a ``failed`` row. Runs already in ``--out``/runs.json (same text
and seed, finished) are kept, not re-run, so the variants can be run one at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
import traceback
import warnings
from pathlib import Path

from compare import write_results  # noqa: E402  (benchmarks/, beside this script)

from metarec.config.load import load_config
from metarec.data.scenarios import SCENARIOS
from metarec.metrics import confidence_interval
from metarec.metrics.names import HEADLINE
from metarec.pipeline import train


def run(config: Path, texts: list[str], seeds: int, overrides: list[str], out: Path) -> list:
    done = json.loads((out / "runs.json").read_text()) if (out / "runs.json").exists() else []
    rows = [row for row in done if row["status"] == "ok"]
    for text in texts:
        for seed in range(seeds):
            if any(row["text"] == text and row["seed"] == seed for row in rows):
                continue
            start = time.perf_counter()
            settings = [*overrides, f"item.text={text}", f"seed={seed}",
                        f"output_dir={out / 'runs'}", "trainer.progress_bar=false"]  # fmt: skip
            try:
                result = train(load_config(config, settings))
            except Exception as err:  # reported as failed, never dropped
                traceback.print_exc()
                rows.append({"text": text, "seed": seed, "status": f"failed: {err}"})
                continue
            seconds = round(time.perf_counter() - start, 1)
            for scenario, values in result.metrics.items():
                rows.append({"text": text, "seed": seed, "scenario": scenario, "status": "ok",
                             "seconds": seconds, **values})  # fmt: skip
            print(f"item.text={text} seed={seed}: {seconds} s")
    return rows


def table(rows: list[dict], title: str) -> str:
    """``item.text`` as rows, scenarios as columns: mean ± 95% CI over seeds per metric."""
    lines = [f"# {title}", "", "Mean ± 95% CI over seeds, MAE / nDCG@3; identical tasks.", ""]
    scenarios = [s for s in SCENARIOS if any(row.get("scenario") == s for row in rows)]
    lines += ["| item.text | seeds | " + " | ".join(scenarios) + " |",
              "|---" * (len(scenarios) + 2) + "|"]  # fmt: skip
    for text in dict.fromkeys(row["text"] for row in rows):
        ok = [row for row in rows if row["text"] == text and row["status"] == "ok"]
        failed = {row["seed"] for row in rows if row["text"] == text and row["status"] != "ok"}
        cells = []
        for scenario in scenarios:
            parts = []
            for metric in HEADLINE:
                values = [row[metric] for row in ok if row["scenario"] == scenario]
                if not values:
                    parts.append("failed")
                    continue
                ci = confidence_interval(values) if len(values) > 1 else float("nan")
                parts.append(f"{statistics.mean(values):.4f} ± {ci:.4f}")
            cells.append(" / ".join(parts))
        seeds = str(len({row["seed"] for row in ok}))
        seeds += f" ({len(failed)} failed)" if failed else ""
        lines.append(f"| {text} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--text", default="none,join", help="item.text values to compare")
    parser.add_argument("--set", action="append", default=[], help="key=value for every run")
    parser.add_argument("--out", type=Path, help="default results/text-ablation-<config name>")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    out = args.out or Path("results") / f"text-ablation-{args.config.stem}"
    rows = run(args.config, args.text.split(","), args.seeds, args.set, out)
    text = table(rows, f"{args.config}: {' '.join(args.set) or 'defaults'}")
    write_results(out, "runs", rows, ["text", "seed", "scenario"], text)


if __name__ == "__main__":
    main()
