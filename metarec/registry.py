"""One small registry: learners register themselves under a name; a duplicate is an error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry:
    """Maps names to classes; ``@REGISTRY.register("name")`` adds one.

    ``load_builtins``, when given, runs once before the first lookup (``get``, ``names``,
    ``in``): it registers the built-in entries, so a lookup never misses them.
    """

    def __init__(self, kind: str, load_builtins: Callable[[], None] | None = None):
        self.kind = kind
        self._entries: dict[str, type] = {}
        self._load_builtins = load_builtins

    def _loaded(self) -> dict[str, type]:
        if self._load_builtins is not None:
            # Cleared first: a lookup while the built-ins load sees those registered so far.
            load, self._load_builtins = self._load_builtins, None
            load()
        return self._entries

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
        """Remove ``name`` (for throwaway learners in notebooks and tests)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> type:
        """The class registered under ``name``."""
        entries = self._loaded()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}' (registered: {known})")
        return entries[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._loaded())

    def __contains__(self, name: str) -> bool:
        return name in self._loaded()


def _register_builtin_learners() -> None:
    # At the first lookup, not at import: the catalog imports every learner, and each of those
    # imports this module. So ``load_config`` finds them without config importing a learner.
    import metarec.catalog  # noqa: F401  (registers)


LEARNERS = Registry("learner", load_builtins=_register_builtin_learners)
