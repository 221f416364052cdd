"""metarec's import graph, read with ``ast``: no cycle, and no import running back up a layer.

Every ``import``/``from ... import`` of a ``metarec`` module counts, at module level and inside
functions alike (a function-level import still closes a circle once the function runs).
Importing ``metarec.a.b`` also runs the package ``metarec.a``, so that is an edge too, except
to a package above the importing module: Python has run (or is running) it already.
"""

from __future__ import annotations

import ast
from pathlib import Path

import metarec

ROOT = Path(metarec.__file__).parent

# What the settings' modules must never import: everything that reads them.
CONFIG_ABOVE = (
    "metarec.config.load",
    "metarec.catalog",
    "metarec.data",
    "metarec.datasets",
    "metarec.encoders",
    "metarec.learners",
    "metarec.baselines",
)
# What each package must never import (so never run): the layers above it.
LAYERS = {
    "metarec.errors": ("metarec",),
    "metarec.registry": ("metarec",),
    # The settings' dataclasses are the bottom layer; loading a config (config.load) reads the
    # complete registries, so it sits above the catalog.
    "metarec.config.domain": ("metarec",),
    "metarec.config.schema": CONFIG_ABOVE,
    "metarec.config.text": CONFIG_ABOVE,
    "metarec.data": (
        "metarec.datasets",
        "metarec.encoders",
        "metarec.learners",
        "metarec.baselines",
        "metarec.catalog",
    ),
    "metarec.datasets": (
        "metarec.encoders",
        "metarec.learners",
        "metarec.baselines",
        "metarec.catalog",
    ),
    "metarec.learners": ("metarec.baselines", "metarec.catalog"),
    "metarec.metrics.names": ("metarec",),
    # Tables and plots from results: below training and the commands that run it.
    "metarec.report": (
        "metarec.build",
        "metarec.pipeline",
        "metarec.api",
        "metarec.sweep",
        "metarec.reproduce",
        "metarec.cli",
    ),
    "metarec.sweep": ("metarec.reproduce", "metarec.cli"),
    "metarec.reproduce": ("metarec.sweep", "metarec.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` names, relative ones resolved inside ``package``."""
    if not node.level:  # absolute
        return node.module or ""
    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]  # level 1: package
    return ".".join([*anchor, *([node.module] if node.module else [])])


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The metarec modules that ``path`` imports anywhere in its body."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node, package)
            found.add(base)
            # ``from metarec.x import y`` imports the submodule metarec.x.y when there is one.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    targets: set[str] = set()
    for target in found:
        if not under(target, "metarec"):
            continue
        parts = target.split(".")
        # The target and every package above it run, unless they already have (our own).
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if prefix in modules and prefix != name and not under(name, prefix):
                targets.add(prefix)
    return targets


def import_graph() -> dict[str, set[str]]:
    """Each metarec module, mapped to the metarec modules that importing it runs."""
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_is_read():
    graph = import_graph()
    assert "metarec.learners.maml" in graph["metarec.catalog"]
    assert "metarec.learners.base" in graph["metarec.learners.maml"]
    assert "metarec.learners" in graph["metarec.baselines.mean"]  # the package runs too
    assert "metarec.pipeline" in graph["metarec.reproduce.runner"]  # inside run_job
    assert "metarec.sweep" in graph["metarec.api"]  # `from metarec.sweep import ...` runs it


def test_relative_imports_and_cycles_are_found():
    def resolved(line: str) -> str:
        return absolute(ast.parse(line).body[0], "metarec.learners")

    assert resolved("from . import maml") == "metarec.learners"
    assert resolved("from .base import MetaLearner") == "metarec.learners.base"
    assert resolved("from ..data import schema") == "metarec.data"
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_never_import_upward():
    upward = [
        f"{source} imports {target}"
        for source, targets in import_graph().items()
        for target in sorted(targets)
        for low, banned in LAYERS.items()
        if under(source, low) and any(under(target, high) for high in banned)
    ]
    assert not upward, "\n".join(upward)
