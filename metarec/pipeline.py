"""One linear pipeline: dataset -> tasks -> learner -> trainer -> evaluation -> run folder.

The parts are built in :mod:`metarec.build`; here they run, in order, and write the results."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from metarec.build import build_learner, launch_rank, make_datamodule, make_trainer, prepare_tasks
from metarec.catalog import LEARNERS
from metarec.config.load import to_yaml
from metarec.config.schema import ModelConfig, RunConfig, TaskConfig
from metarec.data.datamodule import ColdStartDataModule
from metarec.data.scenarios import ColdStartTasks
from metarec.errors import OutputError
from metarec.io import atomic_write_json, atomic_write_text, cannot_write, writable_folder
from metarec.learners.base import LearnerContext, MetaLearner
from metarec.learners.evaluator import evaluate_all
from metarec.metrics.evaluate import Scoring, flat_metrics, metric_key
from metarec.metrics.per_task import PER_TASK_FILE, write_per_task
from metarec.progress import progress_lines, quiet_lightning
from metarec.report import markdown_table
from metarec.resume import (
    RandomState,
    check_checkpoint,
    clear_failed,
    mark_failed,
    resume_target,
    write_versions,
)
from metarec.task_cache import TaskCache
from metarec.tracking import finish, make_wandb_logger


@dataclass
class RunResult:
    """Where a run wrote its files, its and the bias baseline's metrics, its wall time, the
    validation MAE of the weights it kept, and ``summary.json``'s flat metrics."""

    run_dir: Path
    metrics: dict[str, dict[str, float | int]]
    baseline: dict[str, dict[str, float | int]]
    seconds: float
    val_mae: float | None = None
    summary: dict[str, float] | None = None


class BestValidation(Callback):
    """The ``val/*`` metrics of the epoch best on ``monitor`` (``val/mae``, lower is better
    with ``mode="min"``): the epoch whose weights the checkpoint keeps (strictly better, as
    ``ModelCheckpoint`` decides)."""

    def __init__(self, monitor: str = "val/mae", mode: str = "min"):
        self.best: dict[str, float] = {}
        self.monitor, self.sign = monitor, 1.0 if mode == "min" else -1.0

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        current = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/")
        }
        key, sign = self.monitor, self.sign
        if key in current and (key not in self.best or sign * current[key] < sign * self.best[key]):
            self.best = current

    def state_dict(self) -> dict[str, float]:
        return dict(self.best)  # saved in checkpoints, so a resumed run reports the same epoch

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.best = dict(state)


def summary_metrics(
    val: dict[str, float], metrics: dict[str, dict[str, float | int]], seconds: float
) -> dict[str, float]:
    """One flat dict of a run's final metrics under the names Lightning logs them by:
    ``val/<metric>`` (best epoch), ``test/<scenario>/<metric>``, and ``time/seconds``."""
    return {**val, **flat_metrics("test", metrics), "time/seconds": seconds}


def make_run_dir(cfg: RunConfig, create: bool = True) -> Path:
    """A new folder ``<output_dir>/<name>-<timestamp>`` (suffixed if it already exists);
    ``create=False`` only names it (a process other than rank 0, which writes no files)."""
    base = Path(cfg.output_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, suffix = base, 1
    while run_dir.exists():
        run_dir, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    if create:
        try:
            run_dir.mkdir(parents=True)
        except OSError as err:
            raise cannot_write(run_dir, err) from err
    return run_dir


@quiet_lightning()
def evaluate(
    learner: MetaLearner,
    tasks: ColdStartTasks,
    cfg: RunConfig,
    datamodule: ColdStartDataModule | None = None,
    trainer: L.Trainer | None = None,
) -> dict:
    """Every test scenario's metrics for ``learner`` as it is now (on the run's
    ``datamodule`` and evaluation ``trainer`` when given, else new ones)."""
    trainer = trainer or make_trainer(cfg, run_dir=None)
    trainer.test(learner, datamodule=datamodule or make_datamodule(cfg, tasks), verbose=False)
    return learner.evaluator.results


@quiet_lightning()
def validate(
    learner: MetaLearner,
    tasks: ColdStartTasks,
    cfg: RunConfig,
    datamodule: ColdStartDataModule | None = None,
    trainer: L.Trainer | None = None,
) -> dict[str, float]:
    """The ``val/*`` metrics of ``learner`` as it is now (for learners with nothing to fit)."""
    trainer = trainer or make_trainer(cfg, run_dir=None)
    trainer.validate(learner, datamodule=datamodule or make_datamodule(cfg, tasks), verbose=False)
    return {
        key: float(value)
        for key, value in trainer.callback_metrics.items()
        if key.startswith("val/")
    }


def bias_baseline(
    tasks: ColdStartTasks, task: TaskConfig | None = None
) -> dict[str, dict[str, float | int]]:
    """Item-mean + user-offset metrics per scenario: the no-learning reference row.

    (For item tasks the roles swap: user means plus the item's offset on its support set.)
    """
    mean = LEARNERS.get("mean")
    settings = mean.Settings(name="mean", kind="bias")
    net = mean.build_network(tasks, ModelConfig(), settings)
    # Sampled ranking only.
    scoring = Scoring(tasks.scoring_kind, len(tasks.dataset.items), extra=tasks.extra_metrics,
                      primary=tasks.primary)  # fmt: skip
    task = task if task is not None else TaskConfig()
    context = LearnerContext(net, settings, task, tasks.rating_levels(), scoring)
    return evaluate_all(mean(context), tasks.test)


def _fit_and_evaluate(
    cfg: RunConfig,
    tasks: ColdStartTasks,
    learner: MetaLearner,
    run_dir: Path,
    start: float,
    loggers: tuple[Logger, ...],
    writer: bool = True,
    resume_from: Path | None = None,
) -> tuple[dict, dict, dict, float]:
    """Fit (keeping the epoch best on the scoring's validation metric, e.g. ``val/mae``),
    evaluate, and, in the ``writer`` process, compute the baseline and write the run's result
    files."""
    scoring = learner.evaluator.scoring
    monitor, mode = metric_key("val", None, scoring.monitor), scoring.mode
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=1
    )
    # last.ckpt after every epoch: what `resume` continues from (see metarec/resume.py). Its
    # own callback: since Lightning 2.6 `save_last=True` rewrites it only with a new best.
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    best_val = BestValidation(monitor, mode)
    datamodule = make_datamodule(cfg, tasks)  # one for fitting, validating and testing
    if learner.trainable:  # a no-learning baseline has nothing to fit
        callbacks = [checkpoint, last, best_val, RandomState()]
        # plain lines for logs, rank 0
        callbacks += progress_lines(cfg, monitor, mode) if writer else []
        trainer = make_trainer(cfg, run_dir, callbacks=callbacks, loggers=loggers)
        trainer.fit(learner, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        learner.load_state_dict(state["state_dict"])
    tester = make_trainer(cfg, run_dir=None)  # no callbacks or loggers: evaluation only
    val = best_val.best if learner.trainable else validate(learner, tasks, cfg, datamodule, tester)
    metrics = evaluate(learner, tasks, cfg, datamodule, tester)
    per_task = learner.evaluator.per_task
    seconds = time.perf_counter() - start
    summary = summary_metrics(val, metrics, seconds)
    if not writer:  # every process has the metrics; rank 0 alone writes the run folder
        return summary, metrics, {}, seconds
    baseline = bias_baseline(tasks, cfg.task)
    atomic_write_json(run_dir / "metrics.json", metrics)
    ids = {scenario: tasks.test[scenario].user_ids for scenario in per_task}
    write_per_task(run_dir / PER_TASK_FILE, per_task, ids)
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_json(run_dir / "baseline_metrics.json", baseline)
    atomic_write_text(run_dir / "table.md", markdown_table(cfg, metrics, baseline, seconds))
    return summary, metrics, baseline, seconds


@quiet_lightning()
def train(cfg: RunConfig, task_cache: TaskCache | None = None) -> RunResult:
    """Meta-train, keep the weights best on validation, evaluate every scenario, write results.
    ``task_cache``: prepared tasks to take this run's from (and keep them in).

    The folder it writes to is checked first, before any data is read; a run that fails once
    its folder exists marks it failed (:func:`metarec.resume.mark_failed`) and raises."""
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # Under several processes each runs this whole function; rank 0 alone makes the run
    # folder and writes to it (the others learn its checkpoint folder from Lightning).
    writer = launch_rank(cfg) == 0
    resume_from, run_dir = resume_target(cfg)
    if writer:
        writable_folder(run_dir or cfg.output_dir, "run folder" if run_dir else "output_dir")
    tasks = prepare_tasks(cfg, task_cache)
    learner = build_learner(cfg, tasks)
    if resume_from is not None:
        check_checkpoint(resume_from, learner)
    run_dir = run_dir or make_run_dir(cfg, create=writer)
    wandb_logger = None
    try:
        if writer:
            # Saved without `resume`, so that training from config.yaml again starts afresh.
            atomic_write_text(run_dir / "config.yaml", to_yaml(replace(cfg, resume=None)))
            write_versions(cfg, run_dir, resume_from)
            wandb_logger = make_wandb_logger(cfg, run_dir)
        loggers = (wandb_logger,) if wandb_logger else ()
        summary, metrics, baseline, seconds = _fit_and_evaluate(
            cfg, tasks, learner, run_dir, start, loggers, writer, resume_from=resume_from
        )
        if writer:
            clear_failed(run_dir)  # a resumed run that failed before has finished now
    except BaseException as err:
        # Lightning's own writes in the run folder (its CSV log) fail as plain OSErrors.
        failure = cannot_write(err.filename, err) if _written_in(err, run_dir) else err
        if writer:
            mark_failed(run_dir, failure)
        if wandb_logger:  # mark the W&B run failed rather than leave it open
            wandb_logger.experiment.finish(exit_code=1)
        if failure is not err:
            raise failure from err
        raise
    finish(wandb_logger, summary)
    return RunResult(
        run_dir=run_dir,
        metrics=metrics,
        baseline=baseline,
        seconds=seconds,
        val_mae=summary.get("val/mae"),
        summary=summary,
    )


def _written_in(err: BaseException, run_dir: Path) -> bool:
    """``err`` is a file-system error, not yet an ``OutputError``, on a path in ``run_dir``."""
    if not isinstance(err, OSError) or isinstance(err, OutputError) or not err.filename:
        return False
    return Path(os.fsdecode(err.filename)).resolve().is_relative_to(run_dir.resolve())
