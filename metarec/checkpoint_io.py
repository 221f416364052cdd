"""Checkpoints written like every other result file: serialised in memory, then written to a
temporary file in the checkpoint's own folder and renamed into place
(:func:`metarec.io.atomic_write_bytes`).

Lightning's own save (``TorchCheckpointIO`` -> ``_atomic_save``) writes through fsspec, whose
local files are staged in a temporary file under ``$TMPDIR`` and then moved: a copy, not a
rename, when ``$TMPDIR`` is on another file system, so a process killed mid-copy leaves a
truncated ``last.ckpt`` that cannot be resumed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from metarec.io import atomic_write_bytes


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``CheckpointIO`` (``Trainer(plugins=[AtomicCheckpointIO()])``) that saves
    each checkpoint atomically beside its final path; loading and removing are Lightning's."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path``: the old file or the whole new one, never half."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (saving {path})")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())
