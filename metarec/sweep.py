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
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import random
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from metarec.config import load_config
from metarec.config.load import read_yaml_mapping
from metarec.errors import ConfigError, TrainingDiverged
from metarec.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
ARGS = "${args_no_hyphens}"
CONFIG_KEY = "config"  # a parameter that replaces the command's experiment file


class SweepError(ConfigError):
    """A bad sweep file; the message names the file and the key, method or metric."""


@dataclass
class Sweep:
    """A checked sweep file: W&B's spec, and the ``metarec train`` call its command makes."""

    path: Path
    spec: dict
    config: str  # the command's experiment file
    fixed: list[str]  # overrides written in the command, before ${args_no_hyphens}
    extra: list[str] = field(default_factory=list)  # overrides from `metarec sweep --set`

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.path.stem)

    @property
    def metric(self) -> str:
        return self.spec["metric"]["name"]

    @property
    def goal(self) -> str:
        return self.spec["metric"]["goal"]


def logged_metrics() -> set[str]:
    """Every metric name a run writes to ``summary.json`` (as Lightning logs it)."""
    from metarec.data.scenarios import ALL_SCENARIOS
    from metarec.metrics import binary_task_metrics, task_metrics

    preds = torch.tensor([[4.0, 2.0]])
    mask = torch.ones_like(preds, dtype=torch.bool)
    names = [
        *task_metrics(preds, preds, mask, levels=preds.unique()),  # with mae_round
        *binary_task_metrics(preds / 5, preds > 3, mask, 0.5),
    ]
    scenarios = ["val", *(f"test/{scenario}" for scenario in ALL_SCENARIOS)]
    return {f"{prefix}/{name}" for prefix in scenarios for name in names} | {"time/seconds"}


def format_value(value) -> str:
    """A parameter value as W&B's ``${args_no_hyphens}`` writes it: ``str`` of the value."""
    return str(value.item() if hasattr(value, "item") else value)


def split_config(config: str, overrides: list[str]) -> tuple[str, list[str]]:
    """The experiment file and overrides, after a ``config=PATH`` override replaced the file."""
    files = [item.split("=", 1)[1] for item in overrides if item.startswith(f"{CONFIG_KEY}=")]
    if len(files) > 1:
        raise ConfigError(f"more than one '{CONFIG_KEY}=' override: {', '.join(files)}")
    rest = [item for item in overrides if not item.startswith(f"{CONFIG_KEY}=")]
    return (files[0] if files else config), rest


def _parse_command(path: Path, command) -> tuple[str, list[str]]:
    usage = f"metarec train <config> [key=value ...] {ARGS}"
    if not isinstance(command, list) or "train" not in command or ARGS not in command:
        raise SweepError(f"{path}: key 'command' must be a list: {usage}; got {command!r}")
    start, end = command.index("train") + 1, command.index(ARGS)
    if end <= start or "=" in command[start] or command[start].startswith("$"):
        raise SweepError(f"{path}: key 'command': no experiment file after 'train' ({usage})")
    return command[start], list(command[start + 1 : end])


def _samples(path: Path, key: str, spec) -> list:
    """Values of a parameter to check: all listed ones, or a distribution's bounds."""
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: parameter '{key}': expected a mapping, got {spec!r}")
    if "parameters" in spec:
        raise SweepError(
            f"{path}: parameter '{key}': nested parameters are not supported; "
            f"write dotted keys such as '{key}.<name>'"
        )
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    bounds = [spec[bound] for bound in ("min", "max") if bound in spec]
    if not bounds:
        raise SweepError(f"{path}: parameter '{key}': give values, value, or min and max")
    return bounds


def load_sweep(path: str | Path, extra: list[str] | tuple = ()) -> Sweep:
    """Read and check a sweep file; ``extra`` overrides go to every trial (e.g. data.root).

    Raises ``SweepError`` naming the file and the bad method, metric, command or parameter
    (an unknown key, or a value the config schema rejects) before anything runs.
    """
    path = Path(path)
    spec = read_yaml_mapping(path, "sweep", SweepError)
    method = spec.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: key 'method': '{method}' is not one of {', '.join(METHODS)}")
    metric = spec.get("metric")
    if not isinstance(metric, dict) or "name" not in metric:
        raise SweepError(f"{path}: key 'metric': give a name and a goal, e.g. val/mae, minimize")
    metric.setdefault("goal", "minimize")
    if metric["goal"] not in GOALS:
        raise SweepError(f"{path}: key 'metric.goal': '{metric['goal']}' is not one of "
                         f"{', '.join(GOALS)}")  # fmt: skip
    if metric["name"] not in logged_metrics():
        raise SweepError(
            f"{path}: key 'metric.name': '{metric['name']}' is not a metric metarec logs "
            f"(e.g. val/mae, val/ndcg@3, test/new_user/mae; see a run's summary.json)"
        )
    parameters = spec.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{path}: key 'parameters': expected a mapping of at least one key")
    config, fixed = _parse_command(path, spec.get("command"))
    sweep = Sweep(path=path, spec=spec, config=config, fixed=fixed, extra=list(extra))
    _check_parameters(sweep)
    _check_schema(sweep)
    return sweep


def _check_parameters(sweep: Sweep) -> None:
    """Each parameter value loads onto each experiment file the sweep can use."""
    parameters = sweep.spec["parameters"]
    configs = [sweep.config]
    if CONFIG_KEY in parameters:
        configs = [
            format_value(v) for v in _samples(sweep.path, CONFIG_KEY, parameters[CONFIG_KEY])
        ]
    for config in configs:
        try:
            load_config(config, [*sweep.fixed, *sweep.extra])
        except ConfigError as err:
            raise SweepError(f"{sweep.path}: {err}") from err
        for key, spec in parameters.items():
            if key == CONFIG_KEY:
                continue
            for value in _samples(sweep.path, key, spec):
                override = f"{key}={format_value(value)}"
                try:
                    load_config(config, [*sweep.fixed, *sweep.extra, override])
                except ConfigError as err:
                    raise SweepError(f"{sweep.path}: parameter '{key}': {err}") from err


def _import_sweeps():
    """The ``sweeps`` package, without its pydantic-v1 config warning (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Valid config keys have changed.*")
        import sweeps
    return sweeps


def _check_schema(sweep: Sweep) -> None:
    """W&B's own JSON schema of sweep files (when the ``sweeps`` package is installed)."""
    try:
        sweeps = _import_sweeps()
    except ImportError:
        return
    violations = sweeps.schema_violations_from_proposed_config(sweep.spec)
    if violations:
        raise SweepError(f"{sweep.path}: not a valid W&B sweep: {'; '.join(violations)}")


# -- local sweeps -----------------------------------------------------------------------------
@dataclass
class Trial:
    """One finished trial: its parameters, its metric (None when it failed) and run folder."""

    name: str
    params: dict
    value: float | None
    run_dir: str | None
    state: str = "finished"


def _wandb_installed() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def _run_trial(sweep: Sweep, name: str, params: dict, out: Path) -> Trial:
    from metarec.train import train

    overrides = [*sweep.fixed, *sweep.extra, *(f"{k}={format_value(v)}" for k, v in params.items())]
    config, overrides = split_config(sweep.config, overrides)
    tracking = ["tracking.wandb=true", "tracking.mode=offline", f"tracking.group={sweep.name}"]
    overrides += [*(tracking if _wandb_installed() else []), f"output_dir={out}", f"name={name}"]
    cfg = load_config(config, overrides)
    try:
        result = train(cfg)
    except TrainingDiverged as err:
        log.warning("%s diverged: %s", name, err)
        return Trial(name, params, None, None, state="failed")
    summary = json.loads((result.run_dir / "summary.json").read_text())
    if sweep.metric not in summary:
        raise SweepError(f"{name}: '{sweep.metric}' is not in {result.run_dir / 'summary.json'}")
    value = float(summary[sweep.metric])
    return Trial(name, params, None if math.isnan(value) else value, str(result.run_dir))


class EngineRandom:
    """The engine's own random state. ``sweeps`` draws from the global ``random`` and numpy
    generators, which every trial reseeds (Lightning's ``seed_everything``): without a state of
    its own the engine would propose the same random points again after each trial."""

    def __init__(self, seed: int = 0):
        self.python = random.Random(seed).getstate()
        self.numpy = np.random.RandomState(seed).get_state()

    @contextmanager
    def active(self):
        saved = random.getstate(), np.random.get_state()
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        try:
            yield
        finally:
            self.python, self.numpy = random.getstate(), np.random.get_state()
            random.setstate(saved[0])
            np.random.set_state(saved[1])


def ranked(trials: list[Trial], goal: str) -> list[Trial]:
    """Trials best first by their metric; failed ones (no metric) last."""
    sign = 1.0 if goal == "minimize" else -1.0
    return sorted(trials, key=lambda t: (t.value is None, sign * (t.value or 0.0)))


def run_local(
    sweep: Sweep, count: int | None = None, out: str | Path | None = None
) -> tuple[list[Trial], Path]:
    """Run the sweep here with the ``sweeps`` engine; returns the ranked trials and the folder
    holding their run folders and ``summary.{md,csv,json}``.

    A grid sweep runs every point (at most ``count``); random and bayes need ``count``.
    """
    try:
        sweeps = _import_sweeps()
    except ImportError as err:
        raise SweepError(
            "local sweeps need the 'sweeps' package: pip install --no-deps sweeps==0.3.0 "
            "jsonref jsonschema"
        ) from err
    if count is None and sweep.spec["method"] != "grid":
        raise SweepError(f"{sweep.path}: a {sweep.spec['method']} sweep needs --count")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out else Path("runs") / "sweeps" / f"{sweep.name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.spec, sort_keys=False))
    runs, trials, engine = [], [], EngineRandom()
    while count is None or len(trials) < count:
        with engine.active():
            suggestion = sweeps.next_run(sweep.spec, runs, validate=True)
        if suggestion is None:  # a grid with every point run
            break
        name = f"trial-{len(trials):03d}"
        params = {key: entry["value"] for key, entry in suggestion.config.items()}
        trial = _run_trial(sweep, name, params, out)
        trials.append(trial)
        metrics = {} if trial.value is None else {sweep.metric: trial.value}
        runs.append(sweeps.SweepRun(name=name, config=suggestion.config, summary_metrics=metrics,
                                    history=[metrics] if metrics else [],
                                    state=trial.state))  # fmt: skip
        shown = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
        log.info("%s %s: %s = %s", name, shown, sweep.metric, trial.value)
    trials = ranked(trials, sweep.goal)
    write_summary(sweep, trials, out)
    return trials, out


def summary_rows(sweep: Sweep, trials: list[Trial]) -> list[dict]:
    """One row per trial, best first: trial, each parameter, the metric, state, run folder."""
    keys = list(sweep.spec["parameters"])
    return [{"trial": t.name, **{k: format_value(t.params.get(k, "")) for k in keys},
             sweep.metric: t.value, "state": t.state, "run_dir": t.run_dir}
            for t in trials]  # fmt: skip


def _cell(value, digits: bool) -> str:
    """A metric with 4 decimals; a float parameter with 4 significant digits."""
    if digits and isinstance(value, float):
        return f"{value:.4f}"
    try:
        return f"{float(value):.4g}" if "." in str(value) else str(value)
    except ValueError:
        return str(value)


def markdown_summary(sweep: Sweep, trials: list[Trial]) -> str:
    """The ranked trials as a Markdown table."""
    rows = summary_rows(sweep, trials)
    columns = [c for c in rows[0] if c != "run_dir"] if rows else ["trial", sweep.metric]
    lines = [f"| {' | '.join(columns)} |", f"|{'|'.join('---' for _ in columns)}|"]
    for row in rows:
        cells = [_cell(row[c], digits=c == sweep.metric) for c in columns]
        lines.append(f"| {' | '.join(cells)} |")
    goal = "lower" if sweep.goal == "minimize" else "higher"
    return f"Sweep {sweep.name} ({sweep.spec['method']}): {sweep.metric}, {goal} is better\n\n" + (
        "\n".join(lines) + "\n"
    )


def write_summary(sweep: Sweep, trials: list[Trial], out: Path) -> None:
    """``summary.md``, ``summary.csv`` and ``summary.json`` in ``out``, each written atomically."""
    rows = summary_rows(sweep, trials)
    atomic_write_text(out / "summary.md", markdown_summary(sweep, trials))
    head = {"metric": sweep.metric, "goal": sweep.goal, "method": sweep.spec["method"]}
    atomic_write_json(out / "summary.json", {**head, "trials": rows})
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(out / "summary.csv", text.getvalue())


# -- sweeps on W&B ----------------------------------------------------------------------------
def wandb_available() -> bool:
    """Whether a sweep can run on W&B: wandb installed, a key, and the host reachable."""
    from metarec.tracking import resolve_mode

    return _wandb_installed() and resolve_mode("online") == "online"


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
