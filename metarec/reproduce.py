"""Reproduce a paper table: every experiment of a dataset, with and without item text, N seeds.

``metarec reproduce melu-ml1m`` runs ``experiments/melu_ml1m/*.yaml`` (one file per table row)
for every seed and ``item.text`` variant, then writes into ``--out``:

- ``runs.csv`` / ``runs.json``: one row per (method, text, seed, scenario), failed runs included;
- ``summary.csv``: mean and 95% Student-t interval over seeds per method, text, scenario, metric;
- ``table.md``: laid out like MeLU's Table 2 (scenarios down, methods across each scenario's
  rows, MAE / nDCG@1 / nDCG@3), the paper's rows beside ours; a failed run says so;
- ``plot.png``: MAE and nDCG@3 per scenario and method, with the intervals as error bars;
- ``timing.json``: the wall time of the whole command.

Runs go to worker processes (``--jobs``, one torch thread each). Finished runs are kept in
``runs.json`` with a hash of their resolved config: a re-run skips them unless their config
changed, so an interrupted reproduction resumes where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import statistics
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from metarec.config import ConfigError, load_config, to_yaml
from metarec.data.datamodule import SCENARIOS
from metarec.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from metarec.metrics import confidence_interval
from metarec.report import PAPER

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TEXTS = ("none", "join")  # item.text variants of every learner that reads item features
# mae_round: MAE of predictions rounded to the rating scale (see metarec.metrics.task_metrics).
TABLE_METRICS = ("mae", "mae_round", "ndcg@1", "ndcg@3")
METRICS = ("mae", "mae_round", "rmse", "ndcg@1", "ndcg@3", "auc", "precision", "recall", "f1")


@dataclass(frozen=True)
class Run:
    """One training run: an experiment file, its ``item.text`` variant and a seed."""

    method: str
    text: str
    seed: int
    config: Path


def experiments_folder(dataset: str, root: Path | None = None) -> Path:
    """``experiments/<dataset>`` (``melu-ml1m`` and ``melu_ml1m`` both name it)."""
    root = root or EXPERIMENTS
    folder = root / dataset.replace("-", "_")
    if not folder.is_dir():
        known = sorted(path.name for path in root.iterdir() if path.is_dir())
        raise ConfigError(f"no experiments for '{dataset}' in {root} (there are: {known})")
    return folder


def plan(
    folder: Path, methods: Iterable[str] | None, seeds: int, texts: Iterable[str] = TEXTS
) -> list[Run]:
    """Every (method, text, seed) to run. A learner that cannot read item text (an ID-only
    model) runs once per seed with none; an experiment that sets ``item.text`` itself (the
    text-only ``textsim``) runs with that setting only."""
    from metarec.learners import LEARNERS

    available = sorted(path.stem for path in folder.glob("*.yaml"))
    methods = list(methods) if methods else available
    unknown = [method for method in methods if method not in available]
    if unknown:
        raise ConfigError(f"unknown methods {unknown} for {folder} (there are: {available})")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    runs = []
    for method in methods:
        path = folder / f"{method}.yaml"
        cfg = load_config(path)
        if cfg.item.text != "none":
            variants = [cfg.item.text]
        elif LEARNERS.get(cfg.learner.name).reads_item_text:
            variants = list(texts)
        else:
            variants = ["none"]
        runs += [Run(method, text, seed, path) for text in variants for seed in range(seeds)]
    return runs


def run_overrides(run: Run, overrides: list[str], out: Path) -> list[str]:
    """The ``key=value`` settings of one run: the command's, then its text, seed and folder."""
    return [*overrides, f"item.text={run.text}", f"seed={run.seed}",
            f"output_dir={out / 'runs'}", "trainer.progress_bar=false"]  # fmt: skip


def config_hash(run: Run, overrides: list[str], out: Path) -> str:
    """sha256 of the run's resolved config (output folder aside): a changed config re-runs."""
    settings = [s for s in run_overrides(run, overrides, out) if not s.startswith("output_dir=")]
    return hashlib.sha256(to_yaml(load_config(run.config, settings)).encode()).hexdigest()[:16]


def _init_worker() -> None:
    import logging
    import warnings

    import torch

    from metarec import train

    torch.set_num_threads(1)  # the workers share the cores; one thread each
    train.TASK_CACHE = {}  # a worker trains many runs on the same tasks: prepare them once
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def execute(run: Run, overrides: list[str], out: Path, digest: str) -> list[dict]:
    """Train one run; one row per scenario, or one ``failed`` row with the error."""
    from metarec.train import train

    key = {"method": run.method, "text": run.text, "seed": run.seed, "config": digest}
    try:
        result = train(load_config(run.config, run_overrides(run, overrides, out)))
    except Exception as err:  # reported in the table as failed, never dropped
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return [{**key, "status": f"failed: {message}", "trace": traceback.format_exc()}]
    return [
        {
            **key,
            "scenario": scenario,
            "status": "ok",
            "seconds": round(result.seconds, 1),
            "val_mae": result.val_mae,
            **values,
        }  # fmt: skip
        for scenario, values in result.metrics.items()
    ]


def load_rows(out: Path) -> list[dict]:
    """The rows of an earlier (maybe interrupted) reproduction in ``out``, if any."""
    path = out / "runs.json"
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); move it away to start over") from err


def write_rows(out: Path, rows: list[dict]) -> None:
    """``runs.json`` and ``runs.csv``, atomically (after every finished run)."""
    atomic_write_json(out / "runs.json", rows)
    fields = ["method", "text", "seed", "scenario", "status", "seconds", "val_mae", *METRICS,
              "n_tasks", "config"]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "runs.csv", buffer.getvalue())


def run_all(
    runs: list[Run], overrides: list[str], out: Path, jobs: int = 1, progress: bool = True
) -> list[dict]:
    """Run what ``out/runs.json`` lacks (or holds with another config); every row, in plan
    order. Rows are saved after each run, so a killed reproduction loses only runs in flight."""
    digests = {run: config_hash(run, overrides, out) for run in runs}
    done: dict[tuple, list[dict]] = {}
    for row in load_rows(out):
        if row["status"] == "ok":
            key = (row["method"], row["text"], row["seed"], row["config"])
            done.setdefault(key, []).append(row)
    results = {run: done.get((run.method, run.text, run.seed, digests[run])) for run in runs}
    todo = [run for run in runs if not results[run]]

    def save() -> None:
        write_rows(out, [row for run in runs for row in results[run] or []])

    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", disable=not progress)
    with bar:
        if jobs <= 1:
            for run in todo:
                bar.set_description(f"{run.method} text={run.text} seed={run.seed}")
                results[run] = execute(run, overrides, out, digests[run])
                save()
                bar.update()
        else:
            context = get_context("spawn")  # fork would copy torch's threads and state
            with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker) as pool:
                futures = {pool.submit(execute, run, overrides, out, digests[run]): run
                           for run in todo}  # fmt: skip
                for future in as_completed(futures):
                    run = futures[future]
                    results[run] = future.result()
                    save()
                    bar.set_description(f"{run.method} text={run.text} seed={run.seed}")
                    bar.update()
    return [row for run in runs for row in results[run] or []]


def aggregate(rows: list[dict]) -> list[dict]:
    """Per (method, text, scenario): mean and 95% interval over seeds of every metric, the
    number of seeds that finished and the failures' messages."""
    variants = list(dict.fromkeys((row["method"], row["text"]) for row in rows))
    summary = []
    for method, text in variants:
        mine = [row for row in rows if (row["method"], row["text"]) == (method, text)]
        failed = sorted({row["status"] for row in mine if row["status"] != "ok"})
        n_failed = len({row["seed"] for row in mine if row["status"] != "ok"})
        for scenario in SCENARIOS:
            ok = [row for row in mine if row.get("scenario") == scenario and row["status"] == "ok"]
            entry = {"method": method, "text": text, "scenario": scenario, "seeds": len(ok),
                     "failed": n_failed, "errors": failed}  # fmt: skip
            if not ok and not failed:
                continue  # a scenario this kind of task does not have
            entry["seconds"] = statistics.mean(row["seconds"] for row in ok) if ok else None
            for metric in METRICS:
                values = [row[metric] for row in ok if _finite(row.get(metric))]
                entry[metric] = statistics.mean(values) if values else None
                entry[f"{metric}_ci"] = confidence_interval(values) if len(values) > 1 else None
            summary.append(entry)
    return summary


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _cell(entry: dict, metric: str) -> str:
    if not entry.get("seeds"):
        return "failed"
    value, ci = entry.get(metric), entry.get(f"{metric}_ci")
    if value is None:
        return "–"
    return f"{value:.4f}" if ci is None else f"{value:.4f} ± {ci:.4f}"


def paper_table(summary: list[dict], dataset: str, title: str) -> str:
    """Markdown laid out like MeLU's Table 2: per scenario, the paper's rows then ours."""
    paper = PAPER.get(dataset, {})
    header = ["scenario", "method", "item text", *TABLE_METRICS, "seeds"]
    lines = [f"# {title}", "", "Ours: mean ± 95% Student-t interval over seeds; identical tasks "
             "for every method. Paper: MeLU (Lee et al., KDD 2019), Table 2.", ""]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    failures = []
    for scenario in SCENARIOS:
        for method, results in paper.items():
            values = results.get(scenario, {})
            cells = [f"{values[m]:.4f}" if m in values else "–" for m in TABLE_METRICS]
            lines.append(f"| {scenario} | {method} | – | " + " | ".join(cells) + " | – |")
        for entry in (e for e in summary if e["scenario"] == scenario):
            failed = f" ({entry['failed']} failed)" if entry["failed"] else ""
            seeds = f"{entry['seeds']}{failed}"
            cells = [_cell(entry, metric) for metric in TABLE_METRICS]
            lines.append(f"| {scenario} | {entry['method']} | {entry['text']} | "
                         + " | ".join(cells) + f" | {seeds} |")  # fmt: skip
            failures += [(entry["method"], entry["text"], error) for error in entry["errors"]]
    if failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {m} (item.text={t}): {e}" for m, t, e in dict.fromkeys(failures)]
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: Path, title: str) -> None:
    """MAE and nDCG@3 per scenario (columns) and method (rows of each panel), error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in SCENARIOS if any(e["scenario"] == s for e in summary)]
    variants = list(dict.fromkeys((e["method"], e["text"]) for e in summary))
    labels = [method if text == "none" else f"{method} +{text}" for method, text in variants]
    size = (3.2 * len(scenarios), 0.28 * len(variants) + 3)
    fig, axes = plt.subplots(2, len(scenarios), figsize=size, sharey=True, squeeze=False)
    for row, metric in enumerate(("mae", "ndcg@3")):
        for col, scenario in enumerate(scenarios):
            axis = axes[row][col]
            by_variant = {(e["method"], e["text"]): e for e in summary if e["scenario"] == scenario}
            for y, variant in enumerate(variants):
                entry = by_variant.get(variant, {})
                if entry.get(metric) is None:
                    axis.plot([], [])
                    continue
                axis.errorbar(entry[metric], y, xerr=entry.get(f"{metric}_ci") or 0, fmt="o",
                              color="C1" if variant[0] == "mean" else "C0", capsize=2)  # fmt: skip
            axis.set_title(f"{scenario}: {metric.upper()}", fontsize=9)
            axis.grid(axis="x", alpha=0.3)
    for axis in axes[:, 0]:
        axis.set_yticks(range(len(variants)), labels, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_report(out: Path, rows: list[dict], dataset: str, title: str) -> str:
    """``summary.csv``, ``table.md`` and ``plot.png`` from the rows; the table's text."""
    summary = aggregate(rows)
    fields = ["method", "text", "scenario", "seeds", "failed", "seconds"]
    fields += [name for metric in METRICS for name in (metric, f"{metric}_ci")]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(summary)
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    table = paper_table(summary, dataset, title)
    atomic_write_text(out / "table.md", table)
    plot(summary, out / "plot.png", title)
    return table


def reproduce(
    dataset: str,
    seeds: int = 3,
    methods: list[str] | None = None,
    texts: list[str] | None = None,
    overrides: list[str] | None = None,
    out: Path | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> tuple[list[dict], str, float]:
    """Run (or resume) the whole table; the rows, the Markdown table and the wall time."""
    start = time.perf_counter()
    folder = experiments_folder(dataset)
    out = Path(out or Path("results") / folder.name)
    overrides = list(overrides or [])
    runs = plan(folder, methods, seeds, texts or TEXTS)
    rows = run_all(runs, overrides, out, jobs=jobs, progress=progress)
    seconds = time.perf_counter() - start
    ran = len({(row["method"], row["text"], row["seed"]) for row in rows})
    title = f"{dataset}: {len(runs)} runs ({seeds} seeds), {' '.join(overrides) or 'defaults'}"
    table = write_report(out, rows, load_config(runs[0].config).data.name, title)
    atomic_write_json(out / "timing.json", {"seconds": round(seconds, 1), "runs": ran,
                                            "jobs": jobs, "seeds": seeds})  # fmt: skip
    return rows, table, seconds


README_START = "<!-- results:{name} start (generated by: metarec results {folder}) -->"
README_END = "<!-- results:{name} end -->"


def update_readme(readme: Path, folder: Path) -> None:
    """Replace the README's block between the results markers of ``folder`` with its
    ``table.md`` and wall time; a README without the markers is an error naming them."""
    name = folder.name
    start, end = README_START.format(name=name, folder=folder), README_END.format(name=name)
    text = readme.read_text()
    if start not in text or end not in text:
        raise ConfigError(f"{readme} has no block '{start}' ... '{end}' to fill")
    table = (folder / "table.md").read_text().split("\n", 2)[2]  # drop the title line
    timing = json.loads((folder / "timing.json").read_text())
    body = (f"\n{table}\nWall time: {timing['seconds'] / 60:.1f} min for {timing['runs']} runs "
            f"({timing['jobs']} worker processes). Plot: `{folder}/plot.png`.\n")  # fmt: skip
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    atomic_write_text(readme, before + start + body + end + after)
