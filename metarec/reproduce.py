"""Reproduce a paper table: every experiment of a dataset x item text x warm protocol x seeds.

``metarec reproduce melu-ml1m`` runs ``experiments/melu_ml1m/*.yaml`` (one file per table row)
for every seed, ``item.text`` variant and warm-protocol pass (``task.warm=[heldout,seen]``: one
training scores held-out and seen warm users and the cold scenarios; ``task.warm=[warmup]``:
MetaHIN's warm-up, warm only, without item text), then writes into ``--out``:

- ``runs.csv`` / ``runs.json``: one row per (method, text, seed, scenario), failed runs included,
  each naming its run folder, whose ``per_task.csv.gz`` the statistics read;
- ``summary.csv`` / ``summary.json``: per scenario and variant, the mean over seeds with a 95%
  two-level bootstrap interval (tasks within seeds, and seeds), and paired tests of MAE against
  the shrunk bias baseline and the best other variant (``metarec.report.compare``);
- ``table.md``: MeLU's Table 2 layout with the paper's rows, significance marks, and the
  generated findings;
- ``plot.png`` / ``plot.pdf``; ``timing.json``: the wall time of the whole command.

With ``--data-seeds`` each seed also sets ``data.seed``: which users are held out and which
ratings are query vary with it, and the intervals include that. Runs go to worker processes
(``--jobs``, one torch thread each). Finished runs are kept in ``runs.json`` with a hash of
their resolved config: a re-run skips them unless their config changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from metarec.config import load_config, to_yaml
from metarec.errors import ConfigError
from metarec.io import atomic_write_json, atomic_write_text
from metarec.paths import experiments_root
from metarec.report import PAPER
from metarec.report.compare import LEGEND, METRICS, TABLE_METRICS, aggregate, findings, table_lines
from metarec.report.plot import plot

EXPERIMENTS = experiments_root()
TEXTS = ("none", "join")  # item.text variants of every learner that reads item features
# Warm-protocol passes (task.warm): heldout and seen share one training; warmup trains on less.
WARM_PASSES = ("heldout,seen", "warmup")
# The project's goal for the warm-up protocol's MAE, by dataset (stated, not promised).
GOALS = {"melu-ml1m": 0.70}


@dataclass(frozen=True)
class Run:
    """One training run: an experiment file, its ``item.text`` variant and a seed."""

    method: str
    text: str
    seed: int
    config: Path
    warm: str = "heldout"  # task.warm, comma-separated
    data_seed: bool = False  # data.seed follows the seed


def experiments_folder(dataset: str, root: Path | None = None) -> Path:
    """``experiments/<dataset>`` (``melu-ml1m`` and ``melu_ml1m`` both name it)."""
    root = root or EXPERIMENTS
    folder = root / dataset.replace("-", "_")
    if not folder.is_dir():
        known = sorted(path.name for path in root.iterdir() if path.is_dir())
        raise ConfigError(f"no experiments for '{dataset}' in {root} (there are: {known})")
    return folder


def plan(
    folder: Path,
    methods: Iterable[str] | None,
    seeds: int,
    texts: Iterable[str] = TEXTS,
    warms: Iterable[str] = ("heldout",),
    data_seeds: bool = False,
) -> list[Run]:
    """Every (method, text, warm pass, seed) to run. A learner that cannot read item text (an
    ID-only model) runs once per seed with none; an experiment that sets ``item.text`` itself
    (the text-only ``textsim``) runs with that setting only, and one that sets ``task.warm``
    (``melu_paper``) with its own warm protocols only."""
    from metarec.catalog import LEARNERS
    from metarec.config.load import read_yaml_mapping

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
        cfg, raw = load_config(path), read_yaml_mapping(path)
        if "text" in (raw.get("item") or {}):
            variants = [cfg.item.text]
        elif LEARNERS.get(cfg.learner.name).reads_item_text:
            variants = list(texts)
        else:
            variants = ["none"]
        own_warm = "warm" in (raw.get("task") or {})
        passes = [",".join(cfg.task.warm)] if own_warm else list(warms)
        for warm in passes:
            # Item text is compared on the first pass; the warm-up pass runs without it
            # (where the experiment does not set its own text).
            texts_here = variants if warm != "warmup" or len(variants) == 1 else ["none"]
            runs += [Run(method, text, seed, path, warm, data_seeds)
                     for text in texts_here for seed in range(seeds)]  # fmt: skip
    return runs


def run_overrides(run: Run, overrides: list[str], out: Path) -> list[str]:
    """The ``key=value`` settings of one run: the command's, then its warm protocols, text,
    seed (and data seed) and folder. The warm-up pass scores the warm scenario only: its cold
    scenarios would repeat the other pass's on a model trained on fewer ratings."""
    warm = [f"task.warm=[{run.warm}]"] + (["task.cold=false"] if run.warm == "warmup" else [])
    data_seed = [f"data.seed={run.seed}"] if run.data_seed else []
    return [*overrides, *warm, f"item.text={run.text}", f"seed={run.seed}", *data_seed,
            f"output_dir={out / 'runs'}", "trainer.progress_bar=false",
            "trainer.log_lines_every=0"]  # fmt: skip


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

    key = {"method": run.method, "text": run.text, "seed": run.seed, "warm": run.warm,
           "config": digest}  # fmt: skip
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
            "run_dir": str(result.run_dir),
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
    fields = ["method", "text", "seed", "warm", "scenario", "status", "seconds", "val_mae",
              *METRICS, "n_tasks", "config", "run_dir"]  # fmt: skip
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
            key = (row["method"], row["text"], row["seed"], row.get("warm"), row["config"])
            done.setdefault(key, []).append(row)
    results = {run: done.get((run.method, run.text, run.seed, run.warm, digests[run]))
               for run in runs}  # fmt: skip
    todo = [run for run in runs if not results[run]]
    # Longest first (by epochs), so that no long run is left alone at the end of the pool.
    epochs = {run: load_config(run.config).trainer.max_epochs for run in todo}
    todo.sort(key=lambda run: -epochs[run])

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


def write_report(out: Path, rows: list[dict], dataset: str, title: str) -> str:
    """``summary.csv``/``.json``, ``table.md`` and ``plot.png``/``.pdf`` from the rows; the
    table's text."""
    summary = aggregate(rows)
    atomic_write_json(out / "summary.json", summary)
    fields = ["scenario", "method", "text", "seeds", "failed", "seconds"]
    fields += [f"{m}{end}" for m in TABLE_METRICS for end in ("", "_low", "_high")]
    fields += [m for m in METRICS if m not in TABLE_METRICS]
    fields += ["mae_diff_vs_reference", "p_vs_reference", "best_other",
               "mae_diff_vs_best_other", "p_vs_best_other"]  # fmt: skip
    flat = []
    for entry in summary:
        row = dict(entry)
        for name in ("reference", "best_other"):
            test = entry.get(f"vs_{name}") or {}
            row[f"mae_diff_vs_{name}"], row[f"p_vs_{name}"] = test.get("diff"), test.get("p")
        flat.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    paper = PAPER.get(dataset, {})
    notes = findings(summary, paper, GOALS.get(dataset))
    lines = [f"# {title}", "", LEGEND, "", *table_lines(summary, paper), "",
             "Findings (generated from these results):", "", *notes]  # fmt: skip
    table = "\n".join(lines) + "\n"
    atomic_write_text(out / "table.md", table)
    plot(summary, paper, out / "plot.png", title)
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
    warms: list[str] | None = None,
    data_seeds: bool = False,
) -> tuple[list[dict], str, float]:
    """Run (or resume) the whole table; the rows, the Markdown table and the wall time.
    ``warms``: the warm-protocol passes (default ``WARM_PASSES``); ``data_seeds``: each seed
    also sets ``data.seed``."""
    start = time.perf_counter()
    folder = experiments_folder(dataset)
    out = Path(out or Path("results") / folder.name)
    overrides = list(overrides or [])
    runs = plan(folder, methods, seeds, texts or TEXTS, warms or WARM_PASSES, data_seeds)
    rows = run_all(runs, overrides, out, jobs=jobs, progress=progress)
    seconds = time.perf_counter() - start
    ran = len({(row["method"], row["text"], row["seed"], row.get("warm")) for row in rows})
    seeding = "data seeds varied" if data_seeds else "one data split"
    title = (f"{dataset}: {len(runs)} runs ({seeds} seeds, {seeding}), "
             f"{' '.join(overrides) or 'defaults'}")  # fmt: skip
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
            f"({timing['jobs']} worker processes). Plot: `{folder}/plot.png` "
            "(and `.pdf`).\n")  # fmt: skip
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    atomic_write_text(readme, before + start + body + end + after)
