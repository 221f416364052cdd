"""Sweeps on W&B: the sweep registered with ``wandb.sweep``, an agent running its trials here."""

from __future__ import annotations

import shutil
import sys

from metarec.config.load import load_config
from metarec.sweep.spec import ARGS, Sweep


def wandb_installed() -> bool:
    """Whether the ``wandb`` package can be imported."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def wandb_available() -> bool:
    """Whether a sweep can run on W&B: wandb installed, a key, and the host reachable."""
    from metarec.tracking import resolve_mode

    return wandb_installed() and resolve_mode("online") == "online"


def run_wandb(sweep: Sweep, count: int | None = None) -> str:
    """Register the sweep on W&B and run an agent here; returns the sweep id.

    ``--set`` overrides are written into the command, before ``${args_no_hyphens}``; the
    agent starts each trial as that command, in this folder.
    """
    import wandb

    spec = dict(sweep.spec)
    command = list(spec["command"])
    at = command.index(ARGS)
    command = [*command[:at], *sweep.extra, *command[at:]]
    if command[0] == "metarec" and shutil.which("metarec") is None:  # a venv not activated
        command = [sys.executable, "-m", "metarec.cli", *command[1:]]
    spec["command"] = command
    defaults = load_config(sweep.config, [*sweep.fixed, *sweep.extra]).tracking
    project = spec.get("project") or defaults.project
    entity = spec.get("entity") or defaults.entity
    sweep_id = wandb.sweep(spec, project=project, entity=entity)
    wandb.agent(sweep_id, project=project, entity=entity, count=count)
    return sweep_id
