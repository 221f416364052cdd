"""metarec checkpoints read back: the run config each carries (under ``CONFIG_KEY``, else its
run folder's ``config.yaml``) rebuilds the learner and its network, then the weights load.
Every file is read with ``weights_only=True``."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from metarec.build import CONFIG_KEY, build_learner, prepare_tasks
from metarec.config.load import load_config
from metarec.config.schema import RunConfig
from metarec.data.scenarios import ColdStartTasks
from metarec.errors import ConfigError, DataError
from metarec.io import atomic_write_text
from metarec.learners.base import MetaLearner
from metarec.resume import read_checkpoint, run_dir_of


def config_from_yaml(text: str, overrides: Sequence[str] = (), source: str = "config") -> RunConfig:
    """A resolved config's YAML (``to_yaml``) loaded again, type-checked as a file would be,
    with ``key=value`` overrides."""
    with tempfile.TemporaryDirectory() as folder:
        path = atomic_write_text(Path(folder) / "config.yaml", text)
        try:
            return load_config(path, overrides)
        except ConfigError as err:  # name where the YAML came from, not the temporary file
            raise ConfigError(str(err).replace(str(path), source)) from err


def saved_config(path: Path, state: dict) -> str:
    """The checkpoint's run config YAML, else its run folder's ``config.yaml``."""
    text = (state.get("hyper_parameters") or {}).get(CONFIG_KEY)
    if isinstance(text, str):
        return text
    run_dir = run_dir_of(path)
    if run_dir is None:
        raise ConfigError(
            f"{path}: the checkpoint holds no run config (saved by metarec before 0.1.0?) and "
            "is not in a run folder's checkpoints/ beside its config.yaml"
        )
    return (run_dir / "config.yaml").read_text()


def load_weights(learner: MetaLearner, state: dict, path: Path, strict: bool) -> None:
    """The checkpoint ``state``'s weights into ``learner``; a ``DataError`` naming ``path``
    when they do not fit it."""
    try:
        learner.load_state_dict(state["state_dict"], strict=strict)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0]
        raise DataError(f"{path}: weights do not fit the run's learner ({reason})") from err


def learner_from_checkpoint(
    path: str | Path,
    tasks: ColdStartTasks | None = None,
    strict: bool = True,
    overrides: Sequence[str] = (),
) -> MetaLearner:
    """The learner a metarec checkpoint holds, rebuilt from the run config saved in it (or
    its run folder's ``config.yaml``) on ``tasks`` (built from the config when None), in
    evaluation mode. ``overrides`` (``key=value``) change the saved config (``data.root``)."""
    path = Path(path)
    state = read_checkpoint(path)
    cfg = config_from_yaml(saved_config(path, state), overrides, str(path))
    with torch.random.fork_rng(devices=[]):  # building draws initial weights; leave no trace
        learner = build_learner(cfg, tasks if tasks is not None else prepare_tasks(cfg))
    load_weights(learner, state, path, strict)
    return learner.eval()
