"""Prepared tasks kept for a process that trains many runs on the same data.

``metarec reproduce``'s worker processes each make one :class:`TaskCache` and pass it to every
``train`` call (``train(cfg, task_cache=...)``): runs that differ only in the learner, its
settings or the seed share a dataset's tasks, prepared (read, text-embedded, split) once.
Reusing them changes no number: preparing tasks draws from seeded generators only, never the
global ones, and training does not change them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

if TYPE_CHECKING:
    from metarec.config.schema import RunConfig
    from metarec.data.scenarios import ColdStartTasks


class TaskCache:
    """Prepared tasks by the settings they depend on (``data``, ``item``, ``encoder``, ``task``),
    the ``size`` most recent kept (each holds a whole dataset)."""

    def __init__(self, size: int = 2):
        self.size = size
        self._tasks: dict[str, ColdStartTasks] = {}

    @staticmethod
    def key(cfg: RunConfig) -> str:
        """The settings that decide a run's tasks, as one string."""
        parts = (cfg.data, cfg.item, cfg.encoder, cfg.task)
        return "\n".join(OmegaConf.to_yaml(OmegaConf.structured(part)) for part in parts)

    def get(self, cfg: RunConfig, prepare: Callable[[RunConfig], ColdStartTasks]) -> ColdStartTasks:
        """The tasks of ``cfg``: kept ones, else ``prepare(cfg)``'s, kept (the oldest dropped)."""
        key = self.key(cfg)
        if key not in self._tasks:
            tasks = prepare(cfg)
            while self._tasks and len(self._tasks) >= self.size:
                self._tasks.pop(next(iter(self._tasks)))
            self._tasks[key] = tasks
        return self._tasks[key]

    def __len__(self) -> int:
        return len(self._tasks)
