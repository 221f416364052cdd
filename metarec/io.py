"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

Every write goes to a temporary file in the target's own folder and is renamed into place, so
the rename never crosses file systems (whatever ``$TMPDIR`` is). A write the file system
refuses is an :class:`~metarec.errors.OutputError` naming the path."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from metarec.errors import OutputError


def cannot_write(path: str | Path, err: OSError, setting: str | None = None) -> OutputError:
    """``err`` as one line naming ``path`` (after the ``setting`` that chose it, if given)."""
    if isinstance(err, OutputError):
        return err
    named = f"{setting} {path}" if setting else str(path)
    return OutputError(f"{named}: cannot write ({err.strerror or err})")


def writable_folder(path: str | Path, setting: str | None = None) -> Path:
    """``path``, created if missing, once a file could be made (and removed) in it: a run
    whose folder cannot take its results fails before it reads data or trains."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise cannot_write(path, err, setting) from err
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it into place."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise cannot_write(path, err) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o644)  # mkstemp makes the file private; results are for everyone
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise cannot_write(path, err) from err
        raise
    return path


def atomic_write_json(path: str | Path, data) -> Path:
    """``data`` as indented JSON, written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
