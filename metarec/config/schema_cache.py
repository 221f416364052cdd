"""The schema cache: every registered learner's and dataset's ``Settings`` as JSON
(:mod:`metarec.config.settings_json`), so that the command line checks a config in a fraction
of a second, before torch is imported (:mod:`metarec.cli_fast`).

One file per Python environment and list of plugin modules, in ``$METAREC_CACHE_DIR/schemas/``,
else in ``schemas/`` of the user cache folder (``~/.cache/metarec`` on Linux), written
atomically once the full catalog is imported (:func:`write_cache`). It holds the
:func:`fingerprint` it was written under: the package's ``.py`` files (paths, sizes, mtimes),
metarec's version, the ``metarec.learners`` / ``metarec.datasets`` entry points and the plugin
modules; and the size and mtime of every source file outside the package that registers an
entry. A file whose fingerprint or files differ, or that cannot be read, is not used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from metarec.config.settings_json import describe, from_json, rebuild, to_json
from metarec.errors import OutputError
from metarec.io import atomic_write_json
from metarec.registry import Registry
from metarec.version import __version__

CACHE_ENV = "METAREC_CACHE_DIR"
GROUPS = ("metarec.learners", "metarec.datasets")
# What the config checks read from a registered class, besides its Settings.
TRAITS = {"learner": ("units", "reads_item_text", "needs_item_text"), "dataset": ()}
FORMAT = 1
PACKAGE = Path(__file__).resolve().parents[1]  # metarec/


class Undecided(Exception):
    """The schema cache cannot tell (it is missing or stale, or an entry's settings are more
    than JSON can say): the full check decides."""


def cache_dir() -> Path:
    """``$METAREC_CACHE_DIR/schemas``, else ``schemas`` in the user cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "schemas"
    import platformdirs  # pooch's, whose os_cache("metarec") is this folder

    return Path(platformdirs.user_cache_dir("metarec")) / "schemas"


def cache_file(plugins: Sequence[str]) -> Path:
    """The cache file of this environment and package for ``plugins`` (in import order)."""
    key = json.dumps([sys.prefix, str(PACKAGE), list(plugins)])
    return cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


@functools.cache
def installed_entry_points() -> tuple[tuple[str, str, str], ...]:
    """``(group, name, value)`` of every installed entry point of ``GROUPS``, sorted."""
    found = entry_points()
    points = {(group, p.name, p.value) for group in GROUPS for p in found.select(group=group)}
    return tuple(sorted(points))


def fingerprint(
    package: Path, plugins: Sequence[str], points: Sequence[tuple], version: str
) -> str:
    """sha256 of what the registered settings are made of: every ``.py`` file under
    ``package`` (its path, size and mtime), ``version``, the entry ``points`` and the
    ``plugins`` modules (in import order)."""
    head = [str(package), version, sys.version, list(plugins), sorted(map(list, points))]
    digest = hashlib.sha256(json.dumps(head).encode())
    for path in sorted(package.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(package)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def current_fingerprint(plugins: Sequence[str]) -> str:
    """The :func:`fingerprint` of the installed metarec with ``plugins``."""
    return fingerprint(PACKAGE, plugins, installed_entry_points(), __version__)


def _stat(path: str) -> list:
    stat = os.stat(path)
    return [path, stat.st_size, stat.st_mtime_ns]


def _outside_files(modules: set[str]) -> list[list]:
    """``[path, size, mtime]`` of each of the imported ``modules`` outside the package."""
    paths = {getattr(sys.modules.get(name), "__file__", None) for name in modules}
    inside = str(PACKAGE) + os.sep
    return [_stat(p) for p in sorted(p for p in paths if p and not p.startswith(inside))]


def _describe_entry(entry: type, name: str, kind: str, modules: set[str]) -> dict | None:
    """An entry's settings and traits as JSON; None where JSON cannot say them."""
    modules.add(entry.__module__)
    try:
        settings = describe(entry.Settings, name)
        traits = {trait: to_json(getattr(entry, trait)) for trait in TRAITS[kind]}
    except Exception:  # Unsupported, or hints that cannot be resolved: the full check decides
        return None
    modules.update(ref.partition(":")[0] for ref in settings["classes"])
    return {
        "class": entry.__qualname__,
        "doc": entry.__doc__,
        "settings": settings,
        "traits": traits,
    }


def write_cache(
    plugins: Sequence[str], learners: Registry, datasets: Registry, fingerprint: str
) -> Path | None:
    """Describe every entry of the complete registries (``plugins`` imported) into the cache
    file for ``plugins``, under the ``fingerprint`` taken before they were imported; None
    when the cache folder cannot be written (the cache is only ever a shortcut)."""
    modules = set(plugins)
    entries = {
        registry.kind: {
            name: _describe_entry(registry.get(name), name, registry.kind, modules)
            for name in registry.names()
        }
        for registry in (learners, datasets)
    }
    data = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "plugins": list(plugins),
        "files": _outside_files(modules),
        "entries": entries,
    }
    try:
        return atomic_write_json(cache_file(plugins), data)
    except OutputError:
        return None


def read_registries(
    plugins: Sequence[str], skipped: Callable[[str], None]
) -> tuple[Registry, Registry] | None:
    """``(learners, datasets)`` rebuilt from the cache file for ``plugins``; None when it is
    missing, stale or unreadable. A rebuilt class calls ``skipped`` for a check it leaves out."""
    try:
        data = json.loads(cache_file(plugins).read_text())
        if (data["format"], data["plugins"]) != (FORMAT, list(plugins)):
            return None
        if data["fingerprint"] != current_fingerprint(plugins):
            return None
        if any(_stat(path) != [path, size, mtime] for path, size, mtime in data["files"]):
            return None
        return tuple(_registry(kind, data["entries"][kind], skipped) for kind in TRAITS)
    except Exception:  # missing, half-written by an older metarec, edited: not a cache
        return None


class _Undescribed:
    """``Settings`` of an entry the cache could not describe: the full check decides."""

    def __get__(self, instance, owner):
        raise Undecided(f"{owner.name}: settings the schema cache cannot describe")


def _registry(kind: str, entries: dict, skipped: Callable[[str], None]) -> Registry:
    registry = Registry(kind)
    for name, entry in entries.items():
        if entry is None:
            namespace = {"Settings": _Undescribed()}
        else:
            traits = {trait: from_json(value) for trait, value in entry["traits"].items()}
            settings = rebuild(entry["settings"], skipped)
            namespace = {"Settings": settings, "__doc__": entry["doc"], **traits}
        registry.register(name)(type(entry["class"] if entry else name, (), namespace))
    return registry


class Cached:
    """The registries as the schema cache describes them, for :func:`load_config`'s
    ``catalog``: nothing is imported. ``plugins`` gathers the plugin modules named so far (the
    full check imports each once, so every later config sees its entries); ``skipped``, the
    checks across settings left out; ``missing``, the plugins and source of a cache miss."""

    def __init__(self, plugins: Sequence[str] = ()):
        self.plugins = list(dict.fromkeys(plugins))
        self.skipped: list[str] = []
        self.missing: tuple[list[str], str] | None = None
        self._found: dict[tuple, tuple[Registry, Registry] | None] = {}

    def registries(self, plugins: list[str], source: str) -> tuple[Registry, Registry]:
        self.plugins = list(dict.fromkeys([*self.plugins, *plugins]))
        key = tuple(self.plugins)
        if key not in self._found:
            self._found[key] = read_registries(self.plugins, self.skipped.append)
        if self._found[key] is None:
            self.missing = (list(self.plugins), source)
            raise Undecided(f"no valid schema cache for plugins {self.plugins}")
        return self._found[key]
