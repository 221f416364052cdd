"""The fast config check of ``metarec train``, ``sweep``, ``reproduce`` and ``leaderboard``:
before torch is imported, the command's config (each trial's, for a sweep; each experiment file
with the command's ``--set`` settings, for a reproduction or the leaderboard) is loaded by the
same code as the full check
(:func:`metarec.config.load.load_config`), with the learners' and datasets' settings rebuilt
from the schema cache (:mod:`metarec.config.schema_cache`) instead of imported.

An error it finds is the full check's own, and ends the command at once. Whatever it cannot
tell (no valid cache, a plugin's settings JSON cannot hold, a check across settings that only
the learner's or dataset's code can run, reached before the error) it leaves to the full
check, which always runs next and decides. A missing or stale cache is written on the way, by
importing what the full check imports next, in its order. The check runs in a process where
nothing is registered yet (the command line's own); ``METAREC_FAST_CHECK=0`` turns it off.
"""

from __future__ import annotations

import argparse
import os

from metarec.config.schema_cache import Cached, Undecided, current_fingerprint, write_cache
from metarec.errors import ConfigError
from metarec.registry import DATASETS, LEARNERS


def train_arguments(args: argparse.Namespace) -> tuple[str, list[str]]:
    """``metarec train``'s experiment file and overrides (``--plugin`` sets ``plugins``)."""
    from metarec.sweep.spec import split_config

    plugins = [f"plugins=[{','.join(args.plugin)}]"] if args.plugin else []
    return split_config(args.config, [*args.overrides, *plugins])


def _train(args: argparse.Namespace, catalog: Cached) -> None:
    from metarec.config.load import load_config

    load_config(*train_arguments(args), catalog=catalog)


def _sweep(args: argparse.Namespace, catalog: Cached) -> None:
    from metarec.sweep.spec import load_sweep

    load_sweep(args.sweep, args.set, catalog)


def _methods(args: argparse.Namespace) -> list[str] | None:
    return args.methods.split(",") if args.methods else None


def _reproduce(args: argparse.Namespace, catalog: Cached) -> None:
    from metarec.config.experiments import check_experiments

    root = {args.dataset: args.root} if args.root else None
    check_experiments([args.dataset], _methods(args), args.set, root, catalog)


def _leaderboard(args: argparse.Namespace, catalog: Cached) -> None:
    from metarec.config.experiments import check_experiments
    from metarec.paths import datasets_found, parse_roots

    names = datasets_found(args.datasets.split(",") if args.datasets else None)
    check_experiments(names, _methods(args), args.set, parse_roots(args.root), catalog)


CHECKS = {"train": _train, "sweep": _sweep, "reproduce": _reproduce, "leaderboard": _leaderboard}


def fast_check(args: argparse.Namespace) -> str:
    """Check the command's config from the schema cache: raise its ``ConfigError`` when the
    cache tells it as the full check would; else return ``passed`` (the full check runs next
    all the same), ``undecided`` or ``off`` (another command, or turned off)."""
    check = CHECKS.get(args.command)
    if check is None or os.environ.get("METAREC_FAST_CHECK") == "0":
        return "off"
    if LEARNERS.names() or DATASETS.names():  # registered in this process (a notebook, a
        return "off"  # test): entries the cache, written by a fresh process, does not know
    catalog = Cached(args.plugin)
    try:
        check(args, catalog)
        return "passed"
    except Undecided:
        pass
    except ConfigError:
        if not catalog.skipped:  # else a check left out came first: its error may be the one
            raise
    except Exception:  # a fault of the shortcut must never stop a command the full check passes
        if os.environ.get("METAREC_DEBUG"):
            raise
    if catalog.missing is not None:
        _refresh(args, *catalog.missing)
    return "undecided"


def _refresh(args: argparse.Namespace, plugins: list[str], source: str) -> None:
    """Write the schema cache for ``plugins``: import what the full check imports next, in its
    order (the ``--plugin`` modules, the catalog, the config's plugins), so that an import that
    fails fails as it would there."""
    from metarec.config.registries import import_plugins

    fingerprint = current_fingerprint(plugins)  # before the imports: an edit meanwhile is stale
    import_plugins(args.plugin, "--plugin")
    import metarec.catalog  # noqa: F401  (registers the built-in entries and entry points)

    import_plugins(plugins, source)
    try:
        write_cache(plugins, LEARNERS, DATASETS, fingerprint)
    except Exception:  # the cache is a shortcut: the command goes on without it
        if os.environ.get("METAREC_DEBUG"):
            raise
