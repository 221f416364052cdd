"""Structured configs and their loading."""

from metarec.config.load import ConfigError, load_config, to_yaml
from metarec.config.schema import (
    DataConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    SyntheticConfig,
    TrainerConfig,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "LearnerConfig",
    "ModelConfig",
    "RunConfig",
    "SyntheticConfig",
    "TrainerConfig",
    "load_config",
    "to_yaml",
]
