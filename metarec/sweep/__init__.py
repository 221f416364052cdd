"""Hyperparameter sweeps from W&B sweep YAML files: on W&B, or locally with the ``sweeps`` engine.

A sweep file is W&B's own format (``method``, ``metric``, ``parameters``) whose ``command`` is
``metarec train <config> [key=value ...] ${args_no_hyphens}``: W&B appends each trial's
parameters as ``key=value`` omegaconf overrides. A parameter named ``config`` picks the
experiment file instead (``config=experiments/synthetic/reptile.yaml``), which is how one
sweep compares methods. Everything is checked before the first trial: parameter keys against
the config schema (with :func:`metarec.config.load_config`), the method, and the metric, which
must be one that a run writes to its ``summary.json`` (``val/mae``, ``test/new_user/ndcg@3``).

Locally (``metarec sweep FILE --local``, and whenever W&B is offline) the open-source
``sweeps`` package proposes each trial from the finished ones (grid, random, bayes); a trial
is a ``train`` call in this process, an offline W&B run when wandb is installed; its metric is
read back from its own ``summary.json``; ``summary.{md,csv,json}`` rank the trials.

Modules: ``spec`` (the file and its checks), ``runner`` (local trials and their summary),
``wandb_agent`` (on W&B); the summary tables are :mod:`metarec.report.sweep`'s.
"""

from metarec.sweep.spec import (
    ARGS,
    CONFIG_KEY,
    GOALS,
    METHODS,
    Sweep,
    SweepError,
    format_value,
    load_sweep,
    run_metrics,
    split_config,
)

# Imported on first use: the runner writes its summary with the report's tables, which import
# torch; reading and checking a sweep file (the command line's fast check) does not.
_RUNNER = (
    "EngineRandom",
    "Trial",
    "markdown_summary",
    "ranked",
    "run_local",
    "summary_rows",
    "write_summary",
)
_WANDB_AGENT = ("run_wandb", "wandb_available")

__all__ = [
    "ARGS",
    "CONFIG_KEY",
    "GOALS",
    "METHODS",
    "EngineRandom",
    "Sweep",
    "SweepError",
    "Trial",
    "format_value",
    "load_sweep",
    "run_metrics",
    "markdown_summary",
    "ranked",
    "run_local",
    "run_wandb",
    "split_config",
    "summary_rows",
    "wandb_available",
    "write_summary",
]


def __getattr__(name: str):
    if name in _RUNNER:
        from metarec.sweep import runner

        return getattr(runner, name)
    if name in _WANDB_AGENT:
        from metarec.sweep import wandb_agent

        return getattr(wandb_agent, name)
    raise AttributeError(f"module 'metarec.sweep' has no attribute '{name}'")
