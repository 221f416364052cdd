"""Load a YAML experiment file onto the structured schema, then apply key=value overrides."""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from metarec.config.schema import RunConfig

# Settings whose value must be one of a few names; checked at load time, not deep in a run.
CHOICES = {
    "data.name": ("synthetic", "melu-ml1m"),
    "learner.adapt": ("all", "decision"),
    "trainer.accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
}


class ConfigError(ValueError):
    """A bad config file or override; the message names the file and the key."""


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    reason = str(err).splitlines()[0]
    return f"key '{key}': {reason}" if key else reason


def _read_yaml(path: Path):
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return OmegaConf.create(content)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> RunConfig:
    """Defaults, then the YAML file at ``path``, then ``key=value`` overrides, type-checked.

    An unknown key or a value of the wrong type raises ``ConfigError`` naming the key and
    where it came from.
    """
    config = OmegaConf.structured(RunConfig)
    if path is not None:
        try:
            config = OmegaConf.merge(config, _read_yaml(Path(path)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"{path}: {_describe(err)}") from err
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}' is not of the form key=value")
        try:
            config = OmegaConf.merge(config, OmegaConf.from_dotlist([override]))
        except OmegaConfBaseException as err:
            raise ConfigError(f"override '{override}': {_describe(err)}") from err
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(config, key)
        if value not in allowed:
            raise ConfigError(f"key '{key}': '{value}' is not one of {', '.join(allowed)}")
    return OmegaConf.to_object(config)


def to_yaml(config: RunConfig) -> str:
    """The resolved config as YAML, loadable again by ``load_config``."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))
