"""metarec's own errors, in one module that imports nothing, so any layer may raise them."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config file or override; the message names the file and the key."""


class DataError(ValueError):
    """Bad input data; the message names the file and the line, key or id that is wrong."""


class TrainingDiverged(FloatingPointError):
    """The meta-training loss stopped being finite; no number from such a run is reported."""
