"""A sweep file read and checked: W&B's spec, the ``metarec train`` call its command makes.

Everything is checked before the first trial: parameter keys and values against the config
schema (with :func:`metarec.config.load_config`, on every experiment file the sweep can use),
the method, the metric (one a run writes to its ``summary.json``), the command, and W&B's own
JSON schema of sweep files when the ``sweeps`` package is installed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from metarec.config.load import load_config, read_yaml_mapping
from metarec.config.registries import INSTALLED, Installed, Registries
from metarec.errors import ConfigError

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


def run_metrics(cfg) -> set[str]:
    """Every metric name a run of ``cfg`` writes to ``summary.json`` (as Lightning logs it):
    its dataset's scoring's metrics on the validation tasks and on each scenario it tests."""
    from metarec.catalog import DATASETS
    from metarec.data.scenarios import planned_scenarios
    from metarec.metrics.evaluate import Scoring, metric_key

    source = DATASETS.get(cfg.data.name)
    scoring = Scoring(
        source.scoring,
        full_ranking=cfg.task.full_ranking,
        extra=source.extra_metrics,
        primary=source.table[0] if source.table else "",
    )
    names = {metric_key("val", None, name) for name in scoring.names(cfg.task.target, False)}
    for scenario in planned_scenarios(source, cfg.task):
        names |= {
            metric_key("test", scenario, name) for name in scoring.names(cfg.task.target, True)
        }
    return names | {"val/auc_n_tasks", "time/seconds"}


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


def load_sweep(
    path: str | Path, extra: list[str] | tuple = (), catalog: Registries = INSTALLED
) -> Sweep:
    """Read and check a sweep file; ``extra`` overrides go to every trial (e.g. data.root).

    Raises ``SweepError`` naming the file and the bad method, metric, command or parameter
    (an unknown key, or a value the config schema rejects) before anything runs. With another
    ``catalog`` than the installed one (the schema cache's), the checks stop after the
    parameters: the metric's and W&B's schema are checked by the full check only.
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
    parameters = spec.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{path}: key 'parameters': expected a mapping of at least one key")
    config, fixed = _parse_command(path, spec.get("command"))
    sweep = Sweep(path=path, spec=spec, config=config, fixed=fixed, extra=list(extra))
    _check_parameters(sweep, catalog)
    if isinstance(catalog, Installed):  # the metric's check runs the datasets' own code
        _check_metric(sweep)
        _check_schema(sweep)
    return sweep


def _check_metric(sweep: Sweep) -> None:
    """Every trial's run writes the sweep's metric (its dataset's scoring, its scenarios),
    checked on each experiment file the sweep can use, before any trial trains."""
    parameters = sweep.spec["parameters"]
    configs = [sweep.config]
    if CONFIG_KEY in parameters:
        configs = [
            format_value(v) for v in _samples(sweep.path, CONFIG_KEY, parameters[CONFIG_KEY])
        ]
    for config in configs:
        written = run_metrics(load_config(config, [*sweep.fixed, *sweep.extra]))
        if sweep.metric not in written:
            shown = ", ".join(sorted(name for name in written if name.startswith("val/")))
            raise SweepError(
                f"{sweep.path}: key 'metric.name': a run of {config} never writes "
                f"'{sweep.metric}' (its validation metrics: {shown}; test metrics are "
                "test/<scenario>/<metric>)"
            )


def _check_parameters(sweep: Sweep, catalog: Registries) -> None:
    """Each parameter value loads onto each experiment file the sweep can use."""
    parameters = sweep.spec["parameters"]
    configs = [sweep.config]
    if CONFIG_KEY in parameters:
        configs = [
            format_value(v) for v in _samples(sweep.path, CONFIG_KEY, parameters[CONFIG_KEY])
        ]
    for config in configs:
        try:
            load_config(config, [*sweep.fixed, *sweep.extra], catalog)
        except ConfigError as err:
            raise SweepError(f"{sweep.path}: {err}") from err
        for key, spec in parameters.items():
            if key == CONFIG_KEY:
                continue
            for value in _samples(sweep.path, key, spec):
                override = f"{key}={format_value(value)}"
                try:
                    load_config(config, [*sweep.fixed, *sweep.extra, override], catalog)
                except ConfigError as err:
                    raise SweepError(f"{sweep.path}: parameter '{key}': {err}") from err


def import_sweeps():
    """The ``sweeps`` package, without its pydantic-v1 config warning (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Valid config keys have changed.*")
        import sweeps
    return sweeps


def _check_schema(sweep: Sweep) -> None:
    """W&B's own JSON schema of sweep files (when the ``sweeps`` package is installed)."""
    try:
        sweeps = import_sweeps()
    except ImportError:
        return
    violations = sweeps.schema_violations_from_proposed_config(sweep.spec)
    if violations:
        raise SweepError(f"{sweep.path}: not a valid W&B sweep: {'; '.join(violations)}")
