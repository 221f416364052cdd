"""The Python API: train a run, load a finished one (then adapt it to a new user and score
items, :class:`metarec.run.Run`), or load the learner of a checkpoint.

``metarec.train`` and ``metarec.load`` are these functions (``metarec/__init__.py`` imports
this module on first use).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metarec.checkpoint import config_from_yaml, learner_from_checkpoint, saved_config
from metarec.config.load import load_config, to_yaml
from metarec.config.schema import RunConfig
from metarec.data.scenarios import ColdStartTasks
from metarec.errors import ConfigError
from metarec.learners.base import MetaLearner
from metarec.pipeline import RunResult
from metarec.pipeline import train as run_pipeline
from metarec.resume import read_checkpoint
from metarec.run import Run
from metarec.sweep.spec import split_config

BEST = Path("checkpoints") / "best.ckpt"


def _dotlist(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{"trainer": {"max_epochs": 2}, "seed": 1}`` -> ``["trainer.max_epochs=2", "seed=1"]``;
    leaves written as JSON, which omegaconf's override grammar reads back as they were."""
    out = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out += _dotlist(value, f"{prefix}{key}.")
        else:
            value = str(value) if isinstance(value, Path) else value
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


def _overrides(overrides: str | Sequence[str], settings: Mapping[str, Any]) -> list[str]:
    listed = [overrides] if isinstance(overrides, str) else list(overrides)
    return listed + _dotlist(settings)


def resolve_config(
    config: str | Path | RunConfig | None, overrides: str | Sequence[str] = (), **settings: Any
) -> RunConfig:
    """A run config from an experiment file (or name), a ``RunConfig`` or the defaults (None),
    then ``key=value`` overrides, then ``settings`` (nested mappings: ``trainer={...}``)."""
    listed = _overrides(overrides, settings)
    if isinstance(config, RunConfig):
        return config_from_yaml(to_yaml(config), listed) if listed else config
    if config is None:
        return load_config(None, listed)
    return load_config(*split_config(str(config), listed))


def train(
    config: str | Path | RunConfig | None = None,
    overrides: str | Sequence[str] = (),
    **settings: Any,
) -> RunResult:
    """Meta-train and evaluate as ``metarec train`` does; returns the :class:`RunResult`.

    ``config`` is an experiment YAML (or a ``RunConfig``, or None for the defaults);
    ``overrides`` are ``key=value`` strings, ``settings`` keyword overrides, e.g.
    ``metarec.train("experiments/synthetic/maml.yaml", ["learner.inner_steps=3"],
    trainer={"max_epochs": 2}, seed=1)``. Prints nothing but Lightning's warnings (and
    progress lines when ``trainer.log_lines_every`` applies).
    """
    return run_pipeline(resolve_config(config, overrides, **settings))


def load_learner(
    path: str | Path,
    overrides: str | Sequence[str] = (),
    tasks: ColdStartTasks | None = None,
    strict: bool = True,
    **settings: Any,
) -> MetaLearner:
    """The learner a checkpoint holds (its weights loaded, in evaluation mode), rebuilt on the
    run's dataset from the run config saved in the checkpoint, or on ``tasks``;
    ``overrides``/``settings`` change that config (``data={"root": PATH}`` if the data
    moved)."""
    return learner_from_checkpoint(path, tasks, strict, _overrides(overrides, settings))


def load(
    run: str | Path, overrides: str | Sequence[str] = (), device: str = "cpu", **settings: Any
) -> Run:
    """A finished run from its folder (``checkpoints/best.ckpt`` and ``config.yaml``) or a
    checkpoint file; ``overrides``/``settings`` change the saved config (``data.root`` when
    the data moved). A no-learning baseline's run has no checkpoint and needs none."""
    path = Path(run)
    listed = _overrides(overrides, settings)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"{path} is not a run folder: it holds no config.yaml")
        checkpoint = path / BEST if (path / BEST).is_file() else None
        cfg = config_from_yaml(
            (path / "config.yaml").read_text(), listed, str(path / "config.yaml")
        )
    elif path.is_file():
        checkpoint = path
        state = read_checkpoint(path)
        cfg = config_from_yaml(saved_config(path, state), listed, str(path))
    else:
        raise ConfigError(f"run folder or checkpoint not found: {path}")
    loaded = Run(cfg, checkpoint, device)
    if checkpoint is None and loaded.learner.trainable:
        raise ConfigError(f"{path / BEST} not found: the run never saved its weights")
    return loaded
