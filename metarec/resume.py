"""Interrupted runs and reproducibility: find the checkpoint to resume, check it belongs to
this run, carry every random state through checkpoints, record what produced a run, and mark
a run that failed.

A run saves ``checkpoints/last.ckpt`` after every epoch (written to a temporary file in that
folder and renamed: :mod:`metarec.checkpoint_io`). ``resume=true`` continues the newest run
folder of the same name from it: Lightning restores the weights, optimiser and loops;
:class:`RandomState` restores the global generators and the training sampler's, so the resumed
run draws the meta-batches the uninterrupted one would have and ends with the same
``metrics.json``.

A run that ends with an error after its folder exists leaves :data:`FAILED` there (one line:
the error); a folder holding it has no results to trust, whatever other files it has. Resuming
such a run is what ``resume`` is for: the mark goes once the resumed run has written its
results. A process killed outright (SIGKILL, power loss) leaves no mark, and no results either.
"""

from __future__ import annotations

import contextlib
import json
import platform
import random
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

from metarec.config.load import load_config
from metarec.config.schema import RunConfig
from metarec.errors import ConfigError, DataError, one_line
from metarec.io import atomic_write_json, atomic_write_text
from metarec.version import __version__

LAST = "last.ckpt"
FAILED = "FAILED"
# Settings a resumed run may change: they do not alter what the finished epochs computed.
MAY_CHANGE = (
    "name",
    "resume",
    "trainer.progress_bar",
    "trainer.log_lines_every",
    "trainer.max_epochs",
    "tracking.",
)


def resume_checkpoint(cfg: RunConfig) -> Path | None:
    """The checkpoint ``cfg.resume`` names: none (unset or false); the newest
    ``<output_dir>/<name>-<timestamp>/checkpoints/last.ckpt`` (true or last); or a path to a
    checkpoint file or a run folder."""
    value = "" if cfg.resume is None else str(cfg.resume).strip()
    if value.lower() in ("", "false", "no", "none", "null"):
        return None
    if value.lower() in ("true", "yes", "last"):
        pattern = re.compile(rf"{re.escape(cfg.name)}-\d{{8}}-\d{{6}}(-\d+)?")
        output = Path(cfg.output_dir)
        folders = [
            folder for folder in output.glob(f"{cfg.name}-*") if pattern.fullmatch(folder.name)
        ]
        found = [path for folder in folders if (path := folder / "checkpoints" / LAST).is_file()]
        if not found:
            raise ConfigError(
                f"key 'resume': no run folder {output}/{cfg.name}-<timestamp> holds "
                f"checkpoints/{LAST} to resume from"
            )
        return max(found, key=lambda path: (path.stat().st_mtime, str(path)))
    path = Path(value).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / LAST
    if not path.is_file():
        raise ConfigError(f"key 'resume': checkpoint {path} not found")
    return path


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint was saved in, or None for a checkpoint kept elsewhere."""
    folder = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and (folder / "config.yaml").is_file():
        return folder
    return None


def _flat(node: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_same_config(cfg: RunConfig, run_dir: Path) -> None:
    """The run folder's ``config.yaml`` must match ``cfg`` but for :data:`MAY_CHANGE`: resuming
    with other settings would mix two experiments in one result."""
    saved = _flat(
        OmegaConf.to_container(OmegaConf.structured(load_config(run_dir / "config.yaml")))
    )
    now = _flat(OmegaConf.to_container(OmegaConf.structured(cfg)))
    for key in sorted(set(saved) | set(now)):
        if key.startswith(MAY_CHANGE) or saved.get(key) == now.get(key):
            continue
        raise ConfigError(
            f"key '{key}': {run_dir / 'config.yaml'} has {saved.get(key)!r}, this run "
            f"{now.get(key)!r}; resume with the run's own settings (or start a new run)"
        )


def read_checkpoint(path: Path, keys: tuple[str, ...] = ("state_dict",)) -> dict:
    """A Lightning checkpoint holding ``keys``, read safely (``weights_only``); anything else
    is a ``DataError`` naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, garbage, pickled objects: all mean "not usable"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {reason})"
        ) from err
    if not isinstance(state, dict) or not set(keys) <= set(state):
        raise DataError(f"{path}: not a Lightning checkpoint (no {' or '.join(keys)})")
    return state


def check_checkpoint(path: Path, module: torch.nn.Module) -> None:
    """The file loads safely as a Lightning training checkpoint of this network: the same
    parameter names and shapes. Anything else is a ``DataError`` naming the file."""
    state = read_checkpoint(path, ("state_dict", "loops", "epoch"))
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state["state_dict"].items()}
    for key in sorted(set(expected) | set(found)):
        if expected.get(key) != found.get(key):
            raise DataError(
                f"{path}: written for another model: parameter '{key}' is "
                f"{found.get(key, 'absent')} there, {expected.get(key, 'absent')} here"
            )


def _generators(loader, depth: int = 3) -> list[torch.Generator]:
    """The ``torch.Generator``s a training DataLoader draws from (its sampler's and batch
    sampler's, however nested), in a fixed order."""
    found: list[torch.Generator] = []

    def visit(obj, level: int) -> None:
        if isinstance(obj, torch.Generator):
            if not any(obj is seen for seen in found):
                found.append(obj)
        elif level and hasattr(obj, "__dict__") and not isinstance(obj, torch.Tensor):
            for name in sorted(vars(obj)):
                if name != "dataset":
                    visit(vars(obj)[name], level - 1)

    for name in ("generator", "sampler", "batch_sampler"):
        visit(getattr(loader, name, None), depth)
    return found


class RandomState(Callback):
    """Saves the global random generators (torch, numpy, python) and the training sampler's
    in every checkpoint, and puts them back when a run resumes from one.

    The sampler's generator is saved as it is at the checkpoint (the end of an epoch), which is
    its state at the start of the next epoch. A run that goes on to that epoch then draws one
    64-bit number from it before the epoch's first meta-batch (a fresh DataLoader iterator's
    seed; a process's first epoch does not), so the first epoch after resuming draws it too.
    ``tests/test_resume_determinism.py`` checks the result: the same ``metrics.json`` bytes.
    """

    def __init__(self):
        self._pending: list[torch.Tensor] | None = None

    def state_dict(self) -> dict:
        numpy_state = np.random.get_state()
        trainer = getattr(self, "_trainer", None)
        loader = trainer.train_dataloader if trainer is not None else None
        return {
            "torch": torch.get_rng_state(),
            "numpy": [torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
            "python": random.getstate(),
            "samplers": [generator.get_state() for generator in _generators(loader)],
        }

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        self._pending = list(state["samplers"])

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # The first epoch after resuming: its DataLoader is the one it iterates (Lightning may
        # build it again after on_train_start), and none of its meta-batches is drawn yet.
        if self._pending is None:
            return
        generators = _generators(trainer.train_dataloader)
        if len(generators) != len(self._pending):
            raise DataError(
                f"the checkpoint holds {len(self._pending)} sampler states, the training "
                f"data loader draws from {len(generators)} generators"
            )
        for generator, saved in zip(generators, self._pending, strict=True):
            generator.set_state(saved)
            if trainer.current_epoch > 0:  # the draw a continuing run makes here
                torch.empty((), dtype=torch.int64).random_(generator=generator)
        self._pending = None


def resume_target(cfg: RunConfig) -> tuple[Path | None, Path | None]:
    """(checkpoint to resume from, its run folder): both None for a fresh run; the folder is
    None for a checkpoint kept outside a run folder. The folder's settings are checked here,
    before any data is read; the checkpoint against the network by :func:`check_checkpoint`."""
    checkpoint = resume_checkpoint(cfg)
    if checkpoint is None:
        return None, None
    run_dir = run_dir_of(checkpoint)
    if run_dir is not None:
        check_same_config(cfg, run_dir)
    return checkpoint, run_dir


def mark_failed(run_dir: Path, err: BaseException) -> None:
    """Write :data:`FAILED` into ``run_dir`` with the error's first line. A full disk that
    takes no reason still takes an empty mark; a folder that takes nothing (read-only) stays
    unmarked, and the caller goes on to report ``err`` itself."""
    try:
        atomic_write_text(run_dir / FAILED, f"{one_line(err)}\n")
    except OSError:
        with contextlib.suppress(OSError):
            (run_dir / FAILED).touch()


def failure_of(run_dir: Path) -> str | None:
    """Why the run in ``run_dir`` failed (its :data:`FAILED` line), or None when it is not
    marked failed."""
    path = run_dir / FAILED
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[0] if lines and lines[0].strip() else "no reason recorded"


def clear_failed(run_dir: Path) -> None:
    """Remove the :data:`FAILED` mark: the run (resumed) has written all its results."""
    (run_dir / FAILED).unlink(missing_ok=True)


def write_versions(cfg: RunConfig, run_dir: Path, resumed_from: Path | None = None) -> Path:
    """``versions.json``: the seeds and the versions of everything that computed the numbers.
    A resumed run appends its own entry under ``resumed`` and keeps the first run's."""
    entry = {
        "seed": cfg.seed,
        "data_seed": cfg.data.seed,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "numpy": np.__version__,
        "metarec": __version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": True,  # make_trainer passes deterministic=True
    }
    path = run_dir / "versions.json"
    if resumed_from is not None and path.is_file():
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
        record.setdefault("resumed", []).append({**entry, "checkpoint": str(resumed_from)})
        return atomic_write_json(path, record)
    return atomic_write_json(path, entry)
