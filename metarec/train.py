"""One linear pipeline: dataset -> tasks -> learner -> trainer -> evaluation -> run folder."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from metarec.config import ConfigError, ModelConfig, RunConfig, TaskConfig, to_yaml
from metarec.data.datamodule import ColdStartDataModule, ColdStartTasks, load_dataset
from metarec.data.itemtext import attach_item_text
from metarec.io import atomic_write_json, atomic_write_text
from metarec.learners import LEARNERS, MetaLearner
from metarec.report import markdown_table


@dataclass
class RunResult:
    """Where a run wrote its files, its and the bias baseline's metrics, its wall time, and
    the best validation MAE it kept (None for a learner with nothing to train)."""

    run_dir: Path
    metrics: dict[str, dict[str, float | int]]
    baseline: dict[str, dict[str, float | int]]
    seconds: float
    val_mae: float | None = None


def make_run_dir(cfg: RunConfig) -> Path:
    """A new folder ``<output_dir>/<name>-<timestamp>`` (suffixed if it already exists)."""
    base = Path(cfg.output_dir) / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, suffix = base, 1
    while run_dir.exists():
        run_dir, suffix = base.with_name(f"{base.name}-{suffix}"), suffix + 1
    run_dir.mkdir(parents=True)
    return run_dir


def prepare_tasks(cfg: RunConfig) -> ColdStartTasks:
    """The run's dataset (with item text embeddings when ``item.text`` asks) and its tasks."""
    dataset = load_dataset(cfg.data)
    dataset = attach_item_text(dataset, cfg.item, cfg.encoder, progress=cfg.trainer.progress_bar)
    return ColdStartTasks(dataset, cfg.data, cfg.task)


def build_learner(cfg: RunConfig, tasks: ColdStartTasks) -> MetaLearner:
    """The configured learner around the network it builds from the meta-training tasks."""
    learner_cls = LEARNERS.get(cfg.learner.name)
    if tasks.unit not in learner_cls.units:
        raise ConfigError(
            f"key 'task.unit': learner '{cfg.learner.name}' supports task.unit "
            f"{' or '.join(learner_cls.units)}, not '{tasks.unit}'"
        )
    net = learner_cls.build_network(tasks, cfg.model, cfg.learner)
    return learner_cls(net, cfg.learner).for_task(cfg.task)


def make_trainer(cfg: RunConfig, run_dir: Path | None, callbacks=()) -> L.Trainer:
    """Lightning's Trainer; ``inference_mode=False`` because evaluation adapts with gradients."""
    return L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        precision=cfg.trainer.precision,
        limit_train_batches=cfg.trainer.limit_train_batches,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        inference_mode=False,
        deterministic=True,
        logger=CSVLogger(run_dir, name="", version="logs") if run_dir else False,
        callbacks=list(callbacks),
        enable_checkpointing=bool(callbacks),
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
    )


def evaluate(learner: MetaLearner, tasks: ColdStartTasks, cfg: RunConfig) -> dict:
    """Every test scenario's metrics for ``learner`` as it is now."""
    datamodule = ColdStartDataModule(tasks, cfg.learner.meta_batch_size,
                                     cfg.learner.eval_batch_size, cfg.seed)  # fmt: skip
    trainer = make_trainer(cfg, run_dir=None)
    trainer.test(learner, datamodule=datamodule, verbose=False)
    return learner.test_results


def bias_baseline(
    tasks: ColdStartTasks, task: TaskConfig | None = None
) -> dict[str, dict[str, float | int]]:
    """Item-mean + user-offset metrics per scenario: the no-learning reference row.

    (For item tasks the roles swap: user means plus the item's offset on its support set.)
    """
    mean = LEARNERS.get("mean")
    settings = mean.Settings(name="mean", kind="bias")
    learner = mean(mean.build_network(tasks, ModelConfig(), settings), settings)
    learner.for_task(task or TaskConfig())
    return learner.evaluate_all(tasks.test)


def train(cfg: RunConfig) -> RunResult:
    """Meta-train, keep the weights best on validation, evaluate every scenario, write results."""
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    tasks = prepare_tasks(cfg)
    learner = build_learner(cfg, tasks)
    run_dir = make_run_dir(cfg)
    atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                 monitor="val/mae", mode="min", save_top_k=1)  # fmt: skip
    datamodule = ColdStartDataModule(tasks, cfg.learner.meta_batch_size,
                                     cfg.learner.eval_batch_size, cfg.seed)  # fmt: skip
    if learner.trainable:  # a no-learning baseline has nothing to fit
        trainer = make_trainer(cfg, run_dir, callbacks=[checkpoint])
        trainer.fit(learner, datamodule=datamodule)
    if checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        learner.load_state_dict(state["state_dict"])
    metrics = evaluate(learner, tasks, cfg)
    baseline = bias_baseline(tasks, cfg.task)
    seconds = time.perf_counter() - start
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(run_dir / "baseline_metrics.json", baseline)
    atomic_write_text(run_dir / "table.md", markdown_table(cfg, metrics, baseline, seconds))
    best = checkpoint.best_model_score
    return RunResult(run_dir=run_dir, metrics=metrics, baseline=baseline, seconds=seconds,
                     val_mae=None if best is None else float(best))  # fmt: skip
