"""Reproduce a paper table: every experiment of a dataset x item text x warm protocol x seeds.

``metarec reproduce melu-ml1m`` runs ``experiments/melu_ml1m/*.yaml`` (one file per table row)
for every seed, ``item.text`` variant and warm-protocol pass (``task.warm=[heldout,seen]``: one
training scores held-out and seen warm users and the cold scenarios; ``task.warm=[warmup]``:
MetaHIN's warm-up, warm only, without item text), and at every point of the dataset's grid
(the dataset's ``grid``: TALLRec's 16 / 64 / 256 training samples, each row naming its point in
``grid``), then writes into ``--out``:

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
their resolved config: a re-run skips them unless their config changed. A run whose folder
holds the ``FAILED`` mark (:mod:`metarec.resume`; say it was resumed later and failed) counts
as failed whatever ``runs.json`` says: it is shown failed and run again.

Modules: ``spec`` (the plan of runs), ``runner`` (a run's rows; the worker processes); the
report files are :mod:`metarec.report.reproduction`'s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

from metarec.config.experiments import check_experiments
from metarec.config.load import load_config
from metarec.errors import ConfigError
from metarec.io import atomic_write_json, writable_folder
from metarec.metrics.names import NAMES
from metarec.paths import experiments_folder
from metarec.report.files import write_csv
from metarec.report.reproduction import write_report
from metarec.reproduce.runner import Job, run_jobs
from metarec.reproduce.spec import (
    TEXTS,
    WARM_PASSES,
    Run,
    config_hash,
    dataset_of,
    plan,
    run_overrides,
)
from metarec.resume import failure_of
from metarec.task_cache import TaskCache

# runs.csv's columns (runs.json holds every key of a row).
RUN_FIELDS = ["method", "text", "seed", "warm", "scenario", "status", "seconds", "val_mae",
              *NAMES, "n_tasks", "config", "run_dir"]  # fmt: skip


def load_rows(out: Path) -> list[dict]:
    """The rows of an earlier (maybe interrupted) reproduction in ``out``, if any; an ``ok``
    row whose run folder is marked failed has that failure as its status."""
    path = out / "runs.json"
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); move it away to start over") from err
    return [_with_folder_status(row) for row in rows]


def _with_folder_status(row: dict) -> dict:
    """``row``, failed when its run folder is marked failed."""
    if row["status"] != "ok" or not row.get("run_dir"):
        return row
    reason = failure_of(Path(row["run_dir"]))
    return row if reason is None else {**row, "status": f"failed: {reason}"}


def write_rows(out: Path, rows: list[dict]) -> None:
    """``runs.json`` and ``runs.csv``, atomically (after every finished run); a ``grid``
    column after ``method`` where runs have grid points."""
    atomic_write_json(out / "runs.json", rows)
    fields = RUN_FIELDS
    if any(row.get("grid") for row in rows):
        fields = [*RUN_FIELDS[:1], "grid", *RUN_FIELDS[1:]]
    write_csv(out / "runs.csv", rows, fields)


def _key(run: Run) -> dict:
    """What a run's rows start with (``grid`` only where the run has a grid point)."""
    grid = {"grid": run.grid} if run.grid else {}
    return {"method": run.method, **grid, "text": run.text, "seed": run.seed, "warm": run.warm}


def schedule(todo: list[Run], overrides: list[str], out: Path) -> list[Run]:
    """The order to run ``todo`` in: runs on the same tasks (same data, item text and task
    settings) one after another, so that a worker prepares them once
    (:class:`metarec.task_cache.TaskCache`); each group's runs and the groups longest first
    (by epochs), so that no long run is left alone at the end of the pool."""
    configs = {run: load_config(run.config, run_overrides(run, overrides, out)) for run in todo}
    tasks = {run: TaskCache.key(cfg) for run, cfg in configs.items()}
    epochs = {run: cfg.trainer.max_epochs for run, cfg in configs.items()}
    longest: dict[str, int] = {}
    for run in todo:
        longest[tasks[run]] = max(longest.get(tasks[run], 0), epochs[run])
    return sorted(todo, key=lambda run: (-longest[tasks[run]], tasks[run], -epochs[run]))


def run_all(
    runs: list[Run], overrides: list[str], out: Path, jobs: int = 1, progress: bool = True
) -> list[dict]:
    """Run what ``out/runs.json`` lacks (or holds with another config); every row: those of
    runs outside this plan (another ``--methods``) first, kept as they were, then this plan's
    in plan order. Rows are saved after each run, so a killed reproduction loses only runs in
    flight."""
    digests = {run: config_hash(run, overrides, out) for run in runs}
    planned = {(run.method, run.grid, run.text, run.seed, run.warm) for run in runs}
    earlier = load_rows(out)
    others = [row for row in earlier if (row["method"], row.get("grid", ""), row["text"],
                                         row["seed"], row.get("warm")) not in planned]  # fmt: skip
    done: dict[tuple, list[dict]] = {}
    for row in earlier:
        if row["status"] == "ok":
            key = (row["method"], row.get("grid", ""), row["text"], row["seed"],
                   row.get("warm"), row["config"])  # fmt: skip
            done.setdefault(key, []).append(row)
    results = {run: done.get((run.method, run.grid, run.text, run.seed, run.warm, digests[run]))
               for run in runs}  # fmt: skip
    todo = schedule([run for run in runs if not results[run]], overrides, out)
    work = [Job(run.config, run_overrides(run, overrides, out),
                {**_key(run), "config": digests[run]})
            for run in todo]  # fmt: skip
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), unit="run", disable=not progress)
    with bar:
        for index, rows in run_jobs(work, jobs):
            finished = todo[index]
            results[finished] = rows
            write_rows(out, others + [row for run in runs for row in results[run] or []])
            bar.set_description(f"{finished.method} {finished.grid} text={finished.text} "
                                f"seed={finished.seed}".replace("  ", " "))  # fmt: skip
            bar.update()
    return others + [row for run in runs for row in results[run] or []]


def write_timing(out: Path, call: dict) -> None:
    """``timing.json``: this call's wall time, runs and arguments appended to the earlier calls'
    into the same folder (one call per group of methods adds up), and their sums."""
    path = out / "timing.json"
    calls = []
    if path.is_file():
        try:
            calls = json.loads(path.read_text()).get("calls", [])
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); move it away") from err
    calls.append(call)
    total = {"seconds": round(sum(c["seconds"] for c in calls), 1),
             "runs": sum(c["runs"] for c in calls)}  # fmt: skip
    atomic_write_json(path, {**total, "calls": calls})


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
    ``warms``: the warm-protocol passes (default: the dataset's ``warm_passes``, else
    ``WARM_PASSES``); ``data_seeds``: each seed also sets ``data.seed``. Every row runs at each
    point of the dataset's ``grid``, if it has one."""
    start = time.perf_counter()
    folder = experiments_folder(dataset)
    out = Path(out or Path("results") / folder.name)
    overrides = list(overrides or [])
    check_experiments([dataset], methods, overrides)  # every file and setting, before any run
    source = dataset_of(folder)
    warms = warms or source.warm_passes or WARM_PASSES
    runs = plan(folder, methods, seeds, texts or TEXTS, warms, data_seeds, source.grid)
    writable_folder(out, "output folder")
    earlier = {row.get("run_dir") for row in load_rows(out)}
    rows = run_all(runs, overrides, out, jobs=jobs, progress=progress)
    seconds = time.perf_counter() - start
    ran = len({row.get("run_dir") for row in rows} - earlier)  # run by this call
    seeding = "data seeds varied" if data_seeds else "one data split"
    title = (f"{dataset}: {len(runs)} runs ({seeds} seeds, {seeding}), "
             f"{' '.join(overrides) or 'defaults'}")  # fmt: skip
    table = write_report(out, rows, source.name, title)
    write_timing(out, {"seconds": round(seconds, 1), "runs": ran, "jobs": jobs, "seeds": seeds,
                       "methods": methods, "texts": texts, "overrides": overrides})  # fmt: skip
    return rows, table, seconds
