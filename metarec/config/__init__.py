"""Structured configs and their loading."""

from metarec.config.load import load_config, to_yaml
from metarec.config.schema import (
    DataConfig,
    EncoderConfig,
    ItemConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    SyntheticConfig,
    TaskConfig,
    TrackingConfig,
    TrainerConfig,
)
from metarec.errors import ConfigError

__all__ = [
    "ConfigError",
    "DataConfig",
    "EncoderConfig",
    "ItemConfig",
    "LearnerConfig",
    "ModelConfig",
    "RunConfig",
    "SyntheticConfig",
    "TaskConfig",
    "TrackingConfig",
    "TrainerConfig",
    "load_config",
    "to_yaml",
]
