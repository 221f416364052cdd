"""Load a YAML experiment file onto the structured schema, then apply key=value overrides.

Layers, each over the one before: the schema's defaults (:mod:`metarec.config.schema`), the
``base.yaml`` of the experiment file's folder when there is one (what every experiment of that
dataset shares: ``experiments/<dataset>/base.yaml``; the file itself holds only its deltas),
the file, then the overrides. A folder without ``base.yaml`` has no such layer; ``base.yaml``
is not an experiment of its own (:func:`experiment_files` leaves it out). Its ``learner``
section may hold only the settings every learner has (:class:`LearnerConfig`).

The ``data`` and ``learner`` sections are typed by the chosen dataset's and learner's own
``Settings`` dataclasses (:mod:`metarec.config.registries`: the catalog's built-in ones,
installed plug-ins, and the modules named by ``plugins``, imported first; or the same settings
rebuilt from the schema cache, :mod:`metarec.config.schema_cache`). Checks that need the chosen
learner's class (the task unit, item text, the meta-batch's share per process) run here too,
so a bad combination stops before any data is read; they and each setting's own checks (type,
choices, domain) come before the checks across settings (the dataclasses' ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metarec.config.domain import violation
from metarec.config.registries import INSTALLED, Registries
from metarec.config.schema import DEFAULT_DATASET, DEFAULT_LEARNER, RunConfig
from metarec.errors import ConfigError
from metarec.paths import experiments_root
from metarec.registry import Registry

# In an experiment folder: the settings its other files share, merged under each of them.
BASE_FILE = "base.yaml"


def _describe(err: OmegaConfBaseException, prefix: str = "") -> str:
    key = getattr(err, "full_key", None)
    reason = str(err).splitlines()[0]
    return f"key '{prefix}{key}': {reason}" if key else reason


def read_yaml_mapping(path: Path, kind: str = "config", error: type = ConfigError) -> dict:
    """A YAML file whose top level is a mapping; ``error`` (a ``ConfigError``) names the file
    when it is missing, not YAML, or not a mapping. ``kind`` says what file it should be."""
    if not path.is_file():
        raise error(f"{kind} file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"{path}{where}: not valid YAML ({problem})") from err
    if not isinstance(content, dict):
        raise error(f"{path}: expected a mapping at the top level")
    return content


def builtin_experiments() -> dict[str, Path]:
    """metarec's own experiment files by name, ``<dataset folder>/<file stem>``
    (``synthetic/maml``), from :func:`metarec.paths.experiments_root`; sweep files aside."""
    root = experiments_root()
    return {
        f"{folder.name}/{path.stem}": path
        for folder in sorted(root.iterdir())
        if folder.is_dir() and folder.name != "sweeps"
        for path in experiment_files(folder)
    }


def experiment_files(folder: Path) -> list[Path]:
    """The experiments of a dataset folder, sorted: its ``*.yaml`` files but ``base.yaml``."""
    return sorted(path for path in folder.glob("*.yaml") if path.name != BASE_FILE)


def experiment_layers(path: Path) -> list[Path]:
    """The files an experiment file stands for, in merge order: its folder's ``base.yaml``
    (unless it is that file, or there is none), then the file."""
    base = path.parent / BASE_FILE
    return [base, path] if path.name != BASE_FILE and base.is_file() else [path]


def read_experiment(path: Path) -> dict:
    """What an experiment file sets, its folder's ``base.yaml`` included (no defaults)."""
    merged = OmegaConf.merge(*(_read_yaml(layer) for layer in experiment_layers(path)))
    return OmegaConf.to_container(merged)


def resolve_experiment(path_or_name: str | Path) -> Path:
    """An existing file as given; else the built-in experiment it names: ``synthetic/maml``,
    ``maml`` (a synthetic one), ``melu-ml1m/maml``, or a checkout path such as
    ``experiments/synthetic/maml.yaml`` used outside the checkout. Anything else is a
    ``ConfigError`` that lists the built-in names."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    parts = list(path.with_suffix("").parts if path.suffix in (".yaml", ".yml") else path.parts)
    parts = parts[1:] if parts[:1] == ["experiments"] else parts
    parts = [DEFAULT_DATASET, *parts] if len(parts) == 1 else parts
    name = "/".join([parts[0].replace("-", "_"), *parts[1:]]) if parts else ""
    known = builtin_experiments()
    if name in known:
        return known[name]
    folders: dict[str, list[str]] = {}
    for key in known:
        folder, stem = key.split("/")
        folders.setdefault(folder, []).append(stem)
    listing = ", ".join(
        f"{folder}/{{{','.join(stems)}}}"
        + (" (or the name alone)" if folder == DEFAULT_DATASET else "")
        for folder, stems in folders.items()
    )
    raise ConfigError(
        f"config file not found: {path_or_name}, nor is it a built-in experiment: {listing}"
    )


def _read_yaml(path: Path, config: DictConfig | None = None) -> DictConfig:
    """A YAML file as a config; with ``config``, a scalar where ``config`` has a list is
    taken as a one-element list."""
    content = read_yaml_mapping(path)
    return OmegaConf.create(_as_lists(config, content) if config is not None else content)


def _as_lists(config: DictConfig, content: dict) -> dict:
    """``content`` with each scalar where ``config`` holds a list made a one-element list."""
    out = {}
    for key, value in content.items():
        node = config.get(key) if isinstance(key, str) and key in config else None
        if OmegaConf.is_list(node) and not isinstance(value, (list, dict)) and value is not None:
            value = [value]
        elif OmegaConf.is_dict(node) and isinstance(value, dict):
            value = _as_lists(node, value)
        out[key] = value
    return out


def _as_list_override(config: DictConfig, override: str) -> str:
    """``key=value`` with a scalar value for a list setting written ``key=[value]``."""
    key, _, value = override.partition("=")
    node = OmegaConf.select(config, key.strip(), default=None)
    if OmegaConf.is_list(node) and not value.strip().startswith("[") and value.strip():
        return f"{key}=[{value}]"
    return override


def _typed_section(
    config: DictConfig, key: str, registry: Registry, default: str, source: str
) -> DictConfig:
    """The ``key`` section (``learner`` or ``data``) merged onto the chosen entry's own
    Settings dataclass."""
    name = config[key].get("name", default)
    try:
        settings = registry.get(name).Settings
    except KeyError as err:
        raise ConfigError(f"{source}: key '{key}.name': {err.args[0]}") from err
    try:
        return OmegaConf.merge(OmegaConf.structured(settings), config[key])
    except OmegaConfBaseException as err:
        kind = registry.kind
        raise ConfigError(f"{source}: {kind} '{name}': {_describe(err, f'{key}.')}") from err


def _unchecked(node: DictConfig):
    """``node`` as its dataclass with every field set but no ``__post_init__`` run, so that
    each setting is checked on its own before the checks across settings."""
    cls = OmegaConf.get_type(node)
    run = object.__new__(cls)
    for spec in dataclasses.fields(cls):
        value = node[spec.name]
        if OmegaConf.is_dict(value) and dataclasses.is_dataclass(OmegaConf.get_type(value)):
            value = _unchecked(value)
        elif OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        object.__setattr__(run, spec.name, value)
    return run


def _built(build, config: DictConfig, source: str):
    """``build(config)``; a value that cannot be resolved, or a failed check, a ConfigError."""
    try:
        return build(config)
    except (ValueError, OmegaConfBaseException) as err:
        cause = err.__cause__ or err
        raise ConfigError(f"{source}: {str(cause).splitlines()[0]}") from err


def _check_learner_fits(run: RunConfig, learners: Registry, source: str) -> None:
    """The chosen learner can run this config: its task unit, its item text, and a meta-batch
    that every process gets an equal share of."""
    name, learner_cls = run.learner.name, learners.get(run.learner.name)
    if run.task.unit not in learner_cls.units:
        raise ConfigError(
            f"{source}: key 'task.unit': learner '{name}' supports task.unit "
            f"{' or '.join(learner_cls.units)}, not '{run.task.unit}'"
        )
    if run.item.text == "none" and learner_cls.needs_item_text:
        raise ConfigError(
            f"{source}: key 'item.text': learner '{name}' needs the item text embeddings; "
            "set item.text=replace (or join)"
        )
    if run.item.text != "none" and not learner_cls.reads_item_text:
        raise ConfigError(
            f"{source}: key 'item.text': learner '{name}' reads no item features (IDs only), "
            f"so item.text={run.item.text} would embed texts it ignores; set item.text=none"
        )
    devices, nodes = run.trainer.devices, run.trainer.num_nodes
    # devices -1 (or 0) lets Lightning count them; the sampler checks the share then.
    if devices > 0 and run.learner.meta_batch_size % (devices * nodes):
        raise ConfigError(
            f"{source}: key 'learner.meta_batch_size': {run.learner.meta_batch_size} tasks "
            f"cannot be shared evenly by {devices * nodes} processes (trainer.devices x "
            "trainer.num_nodes); make it a multiple of that"
        )


# Overrides left out of a run's name: where or how it is written, and what a resumed run may
# change (``trainer.max_epochs``: a resumed run finds its folder by name).
UNNAMED_KEYS = ("name", "output_dir", "resume", "plugins", "data.root", "data.name",
                "learner.name", "trainer.progress_bar", "trainer.log_lines_every",
                "trainer.max_epochs", "tracking.", "encoder.cache_dir")  # fmt: skip
NAME_CHARS = 120


def run_name(run: RunConfig, path: Path | None, overrides: list[str] | tuple) -> str:
    """``<dataset>-<learner>``, then what the experiment file's name adds to the learner's
    (``maml_residual.yaml``: ``residual``), then each override that changes what runs
    (``inner_steps=3``); unsafe characters become ``_``, a long name ends in a hash."""
    parts = [run.data.name, run.learner.name]
    stem = path.stem if path is not None else ""
    rest = stem.removeprefix(run.learner.name).strip("_") if stem else ""
    parts += [rest] if rest else []
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.strip().lstrip("+")
        if not key.startswith(UNNAMED_KEYS):
            parts.append(f"{key.rsplit('.', 1)[-1]}={value.strip()}")
    name = re.sub(r"[^A-Za-z0-9._=-]+", "_", "-".join(parts)).strip("_")
    if len(name) > NAME_CHARS:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: NAME_CHARS - 9]}-{digest}"
    return name


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple = (),
    catalog: Registries = INSTALLED,
) -> RunConfig:
    """Defaults, then the YAML file at ``path`` (or the built-in experiment it names, see
    :func:`resolve_experiment`) over its folder's ``base.yaml`` if any, then ``key=value``
    overrides, type-checked.

    An unknown key or a value of the wrong type raises ``ConfigError`` naming the key and
    where it came from. The ``learner`` section is checked against the Settings dataclass of
    the learner it names, and the whole config against what that learner supports.
    ``catalog``: where the registered learners and datasets come from.
    """
    config = OmegaConf.structured(RunConfig)
    if path is not None:
        path = resolve_experiment(path)
        for layer in experiment_layers(path):
            try:
                config = OmegaConf.merge(config, _read_yaml(layer, config))
            except OmegaConfBaseException as err:
                raise ConfigError(f"{layer}: {_describe(err)}") from err
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}' is not of the form key=value")
        try:
            listed = _as_list_override(config, override)
            config = OmegaConf.merge(config, OmegaConf.from_dotlist([listed]))
        except OmegaConfBaseException as err:
            raise ConfigError(f"override '{override}': {_describe(err)}") from err
    source = f"{path} with overrides" if path and overrides else str(path or "overrides")
    learners, datasets = catalog.registries(list(config.plugins), source)
    config.data = _typed_section(config, "data", datasets, DEFAULT_DATASET, source)
    config.learner = _typed_section(config, "learner", learners, DEFAULT_LEARNER, source)
    if not _built(OmegaConf.missing_keys, config, source):  # else building names the key
        unchecked = _built(_unchecked, config, source)
        problem = violation(unchecked)
        if problem:
            raise ConfigError(f"{source}: {problem}")
        _check_learner_fits(unchecked, learners, source)
    # The dataclasses' __post_init__ check the values that depend on each other.
    run = _built(OmegaConf.to_object, config, source)
    if run.name is None:
        run.name = run_name(run, path, overrides)
    return run


def to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML, loadable again by ``load_config``."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))
