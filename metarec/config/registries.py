"""Where :func:`metarec.config.load.load_config` finds the learners and datasets a config names.

:data:`INSTALLED` is the complete catalog (:mod:`metarec.catalog`: every built-in entry and
installed plug-in) after the config's ``plugins`` modules are imported: what a run uses, and
what decides. :class:`metarec.config.schema_cache.Cached` rebuilds the same entries' settings
from the schema cache instead, so that the command line checks a config before torch loads.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from metarec.errors import ConfigError
from metarec.registry import Registry


class Registries(Protocol):
    """A source of the learner and dataset registries."""

    def registries(self, plugins: list[str], source: str) -> tuple[Registry, Registry]:
        """``(learners, datasets)`` once the ``plugins`` modules (named in ``source``) are in."""


def import_plugins(modules: list[str], source: str = "plugins") -> None:
    """Import each module (a researcher's learners and datasets register on import)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"{source}: plugin module '{module}' cannot be imported: {err}"
            ) from err


class Installed:
    """The complete registries: the catalog, then the plugin modules imported."""

    def registries(self, plugins: list[str], source: str) -> tuple[Registry, Registry]:
        # The catalog imports every learner, so torch and Lightning: not before a config needs
        # it, so that loading one from the schema cache imports neither.
        from metarec.catalog import DATASETS, LEARNERS

        import_plugins(plugins, source)
        return LEARNERS, DATASETS


INSTALLED = Installed()
