"""What a run is made of, built from its config: its tasks, its learner (the registered class
around the network it builds), Lightning's Trainer and the DataModule of its tasks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import CSVLogger, Logger

from metarec.catalog import LEARNERS, load_dataset
from metarec.checkpoint_io import AtomicCheckpointIO
from metarec.config.load import to_yaml
from metarec.config.schema import RunConfig
from metarec.data.datamodule import ColdStartDataModule
from metarec.data.scenarios import ColdStartTasks
from metarec.distributed import lightning_strategy
from metarec.encoders.attach import attach_item_text, check_inputs
from metarec.errors import ConfigError
from metarec.learners.base import LearnerContext, MetaLearner
from metarec.learners.residual import Residuals
from metarec.metrics.evaluate import Scoring
from metarec.task_cache import TaskCache


def prepare_tasks(cfg: RunConfig, cache: TaskCache | None = None) -> ColdStartTasks:
    """The run's dataset (with item text embeddings when ``item.text`` asks) and its tasks;
    from ``cache`` when it holds them (a process that trains many runs on the same data)."""
    if cache is not None:
        return cache.get(cfg, prepare_tasks)
    dataset = load_dataset(cfg.data)
    if LEARNERS.get(cfg.learner.name).reads_item_text:  # its network reads the features
        check_inputs(dataset, cfg.item.text)
    dataset = attach_item_text(dataset, cfg.item, cfg.encoder, progress=cfg.trainer.progress_bar)
    return ColdStartTasks(dataset, cfg.data, cfg.task)


# The resolved run config (YAML) under this key of a checkpoint's "hyper_parameters".
CONFIG_KEY = "metarec_config"


def build_learner(cfg: RunConfig, tasks: ColdStartTasks) -> MetaLearner:
    """The configured learner around the network it builds from the meta-training tasks."""
    learner_cls = LEARNERS.get(cfg.learner.name)
    if tasks.unit not in learner_cls.units:
        raise ConfigError(
            f"key 'task.unit': learner '{cfg.learner.name}' supports task.unit "
            f"{' or '.join(learner_cls.units)}, not '{tasks.unit}'"
        )
    if cfg.learner.residual and cfg.task.target != "rating":
        raise ConfigError("key 'learner.residual': residuals need task.target=rating")
    net = learner_cls.build_network(tasks, cfg.model, cfg.learner)
    scoring = Scoring(
        tasks.scoring_kind,
        len(tasks.dataset.items),
        cfg.task.full_ranking,
        tasks.extra_metrics,
        tasks.primary,
    )
    residual = Residuals.of(tasks) if cfg.learner.residual else None
    context = LearnerContext(net, cfg.learner, cfg.task, tasks.rating_levels(), scoring, residual)
    learner = learner_cls(context)
    # In every checkpoint, so that the learner can be rebuilt from it (metarec/checkpoint.py).
    learner.save_hyperparameters({CONFIG_KEY: to_yaml(replace(cfg, resume=None))}, logger=False)
    return learner


def make_trainer(
    cfg: RunConfig, run_dir: Path | None, callbacks=(), loggers: tuple[Logger, ...] = ()
) -> L.Trainer:
    """Lightning's Trainer; ``inference_mode=False`` because evaluation adapts with gradients.

    With a ``run_dir`` it logs to ``<run_dir>/logs/metrics.csv``, and to ``loggers`` beside it
    (W&B's, when ``tracking.wandb`` is on). Checkpoints are written atomically in their own
    folder (:class:`~metarec.checkpoint_io.AtomicCheckpointIO`), never through ``$TMPDIR``.
    """
    csv = [CSVLogger(run_dir, name="", version="logs")] if run_dir else []
    try:
        return _trainer(cfg, run_dir, callbacks, [*csv, *loggers])
    except (ValueError, MisconfigurationException) as err:  # Lightning refuses the hardware
        # settings (an unknown strategy or precision, an accelerator this machine lacks)
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"key 'trainer' (accelerator {cfg.trainer.accelerator}, devices "
            f"{cfg.trainer.devices}, strategy {cfg.trainer.strategy}, precision "
            f"{cfg.trainer.precision}): {reason}"
        ) from err


def _trainer(cfg: RunConfig, run_dir: Path | None, callbacks, loggers: list) -> L.Trainer:
    return L.Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        strategy=lightning_strategy(cfg.trainer.strategy),
        # The datamodule shards tasks itself (the same meta-batches as one device; evaluation
        # without the repeated tasks a DistributedSampler pads with).
        use_distributed_sampler=False,
        precision=cfg.trainer.precision,
        limit_train_batches=cfg.trainer.limit_train_batches,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        inference_mode=False,
        deterministic=True,
        logger=loggers if run_dir else False,
        callbacks=list(callbacks),
        plugins=[AtomicCheckpointIO()],
        enable_checkpointing=bool(callbacks),
        enable_progress_bar=cfg.trainer.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
    )


def make_datamodule(cfg: RunConfig, tasks: ColdStartTasks) -> ColdStartDataModule:
    """The run's meta-batches (training) and evaluation batches of ``tasks``."""
    return ColdStartDataModule(
        tasks, cfg.learner.meta_batch_size, cfg.learner.eval_batch_size, cfg.seed
    )


def launch_rank(cfg: RunConfig) -> int:
    """This process's global rank in the configured launch, 0 when it runs alone, as
    Lightning reads it (its own DDP launcher's, torchrun's or SLURM's variables)."""
    return make_trainer(cfg, run_dir=None).global_rank
