"""Training runs as table rows, one after another here or in worker processes.

:func:`run_job` trains one experiment file with ``key=value`` overrides and returns a row per
scenario (or one ``failed`` row: a failure is reported, never dropped); :func:`run_jobs` runs
many. ``metarec reproduce`` and ``benchmarks/compare.py`` both run through them.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from metarec.config.load import load_config
from metarec.errors import one_line
from metarec.task_cache import TaskCache


@dataclass
class Job:
    """One training run: an experiment file, its overrides, and what its rows start with."""

    config: Path
    overrides: list[str]
    key: dict = field(default_factory=dict)


def run_job(job: Job, task_cache: TaskCache | None = None) -> list[dict]:
    """Train one run: a row per scenario (``key``, scenario, status ``ok``, seconds, val_mae,
    run_dir, the metrics), or one row with status ``failed: <error>`` and its ``trace``."""
    from metarec.pipeline import train

    try:
        result = train(load_config(job.config, job.overrides), task_cache=task_cache)
    except Exception as err:  # reported in the table as failed, never dropped
        return [{**job.key, "status": f"failed: {one_line(err)}", "trace": traceback.format_exc()}]
    return [
        {
            **job.key,
            "scenario": scenario,
            "status": "ok",
            "seconds": round(result.seconds, 1),
            "val_mae": result.val_mae,
            "run_dir": str(result.run_dir),
            **values,
        }  # fmt: skip
        for scenario, values in result.metrics.items()
    ]


# A worker process's prepared tasks, made by _init_worker in that process (never in the
# parent): each worker trains many runs on the same data and prepares their tasks once.
_worker_tasks: TaskCache | None = None


def _init_worker() -> None:
    global _worker_tasks
    import torch

    torch.set_num_threads(1)  # the workers share the cores; one thread each
    _worker_tasks = TaskCache()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def _run_in_worker(job: Job) -> list[dict]:
    return run_job(job, _worker_tasks)


def run_jobs(jobs: list[Job], processes: int = 1) -> Iterator[tuple[int, list[dict]]]:
    """Each job's index and rows as it finishes: in order in this process (``processes`` 1),
    else in that many spawned worker processes (one torch thread each), as they finish."""
    if processes <= 1:
        for index, job in enumerate(jobs):
            yield index, run_job(job)
        return
    context = get_context("spawn")  # fork would copy torch's threads and state
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_init_worker) as pool:
        futures = {pool.submit(_run_in_worker, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()
