"""metarec's own errors and their one-line form, in one module that imports nothing, so any
layer may raise them."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config file or override; the message names the file and the key."""


class DataError(ValueError):
    """Bad input data; the message names the file and the line, key or id that is wrong."""


class TrainingDiverged(FloatingPointError):
    """The meta-training loss stopped being finite; no number from such a run is reported."""


class OutputError(OSError):
    """A file or folder metarec writes could not be written (permission denied, a read-only
    file system, a full disk, a file where a folder should be); the message names the path."""


def one_line(err: BaseException) -> str:
    """``Type: message`` of ``err``, its first line only (for tables and marks)."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text}".splitlines()[0] if text else type(err).__name__
