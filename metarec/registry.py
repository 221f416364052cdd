"""Registries: learners and datasets register themselves under a name; a duplicate is an error.

This module knows no entry: :mod:`metarec.catalog` imports every built-in one, a researcher's
package plugs in through the ``metarec.learners`` / ``metarec.datasets`` entry points, and a
module named by ``plugins`` (``--plugin``) is imported before the config is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry:
    """Maps names to classes; ``@REGISTRY.register("name")`` adds one."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering under ``name``; raises if the name is taken."""

        def add(cls: type[T]) -> type[T]:
            if name in self._entries:
                taken_by = self._entries[name].__qualname__
                raise KeyError(f"{self.kind} '{name}' is already registered by {taken_by}")
            self._entries[name] = cls
            cls.name = name
            return cls

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for throwaway entries in notebooks and tests)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> type:
        """The class registered under ``name``."""
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}' (registered: {known})")
        return self._entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


LEARNERS = Registry("learner")
DATASETS = Registry("dataset")
