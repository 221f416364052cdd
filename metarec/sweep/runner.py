"""Local sweeps: the open-source ``sweeps`` engine proposes each trial from the finished ones
(grid, random, bayes); a trial is a ``train`` call in this process (an offline W&B run when
wandb is installed) whose metric is read back from its own ``summary.json``; the ranked trials
go to ``summary.{md,csv,json}`` (:mod:`metarec.report.sweep`)."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from metarec.config.load import load_config
from metarec.errors import TrainingDiverged
from metarec.io import atomic_write_text, writable_folder
from metarec.report.sweep import sweep_markdown, write_sweep_summary
from metarec.sweep.spec import Sweep, SweepError, format_value, import_sweeps, split_config
from metarec.sweep.wandb_agent import wandb_installed

log = logging.getLogger(__name__)


@dataclass
class Trial:
    """One finished trial: its parameters, its metric (None when it failed) and run folder."""

    name: str
    params: dict
    value: float | None
    run_dir: str | None
    state: str = "finished"


def run_trial(sweep: Sweep, name: str, params: dict, out: Path) -> Trial:
    """Train one trial into ``out`` and read its metric back from its ``summary.json``; a
    diverged run is a failed trial."""
    from metarec.pipeline import train

    overrides = [*sweep.fixed, *sweep.extra, *(f"{k}={format_value(v)}" for k, v in params.items())]
    config, overrides = split_config(sweep.config, overrides)
    tracking = ["tracking.wandb=true", "tracking.mode=offline", f"tracking.group={sweep.name}"]
    overrides += [*(tracking if wandb_installed() else []), f"output_dir={out}", f"name={name}"]
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
        sweeps = import_sweeps()
    except ImportError as err:
        raise SweepError(
            "local sweeps need the 'sweeps' package: pip install --no-deps sweeps==0.3.0 "
            "jsonref jsonschema"
        ) from err
    if count is None and sweep.spec["method"] != "grid":
        raise SweepError(f"{sweep.path}: a {sweep.spec['method']} sweep needs --count")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = writable_folder(out or Path("runs") / "sweeps" / f"{sweep.name}-{stamp}", "output folder")
    atomic_write_text(out / "sweep.yaml", yaml.safe_dump(sweep.spec, sort_keys=False))
    runs, trials, engine = [], [], EngineRandom()
    while count is None or len(trials) < count:
        with engine.active():
            suggestion = sweeps.next_run(sweep.spec, runs, validate=True)
        if suggestion is None:  # a grid with every point run
            break
        name = f"trial-{len(trials):03d}"
        params = {key: entry["value"] for key, entry in suggestion.config.items()}
        trial = run_trial(sweep, name, params, out)
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


def markdown_summary(sweep: Sweep, trials: list[Trial]) -> str:
    """The ranked trials as a Markdown table."""
    return sweep_markdown(sweep.name, sweep.spec["method"], sweep.metric, sweep.goal,
                          summary_rows(sweep, trials))  # fmt: skip


def write_summary(sweep: Sweep, trials: list[Trial], out: Path) -> None:
    """``summary.md``, ``summary.csv`` and ``summary.json`` in ``out``, each written atomically."""
    head = {"metric": sweep.metric, "goal": sweep.goal, "method": sweep.spec["method"]}
    write_sweep_summary(out, summary_rows(sweep, trials), head, markdown_summary(sweep, trials))
