"""The registry commands: ``metarec learners``, ``metarec datasets`` (every entry, or one
entry's settings) and ``metarec data download|verify`` (a dataset's files, checksums checked).

Imports stay inside the commands, as in :mod:`metarec.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from metarec.errors import ConfigError


def data_command(args: argparse.Namespace) -> int:
    from metarec.catalog import DATASETS, data_root
    from metarec.config.schema import DataConfig

    with_files = [name for name in DATASETS.names() if DATASETS.get(name).files is not None]
    if args.dataset not in with_files:
        raise ConfigError(
            f"dataset '{args.dataset}': no files to download or verify (datasets with files: "
            f"{', '.join(with_files)})"
        )
    source = DATASETS.get(args.dataset)
    root = Path(args.root) if args.root else data_root(DataConfig(name=args.dataset))
    if args.action == "download":
        source.download(root)
    statuses = source.verify(root)
    width = max(map(len, statuses))
    for name, status in statuses.items():
        print(f"{name:<{width}}  {status}")
    bad = {status: sum(s == status for s in statuses.values()) for status in statuses.values()
           if status != "ok"}  # fmt: skip
    if not bad:
        print(f"{args.dataset} in {root}: all {len(statuses)} files ok")
        return 0
    counts = ", ".join(f"{count} {status}" for status, count in bad.items())
    print(
        f"{args.dataset} in {root}: {counts}; fetch them with `metarec data download "
        f"{args.dataset} --root {root}` (checksums checked, a mismatched file replaced), or point "
        "--root (data.root, $METAREC_DATA_DIR) at the folder that holds them"
    )
    return 1


def _describe_entries(registry, name: str | None, section: str) -> None:
    """Each entry's first docstring paragraph; with ``name``, that one's settings too."""

    if name and name not in registry:
        raise ConfigError(
            f"unknown {registry.kind} '{name}' (registered: {', '.join(registry.names())})"
        )
    for entry_name in [name] if name else registry.names():
        entry = registry.get(entry_name)
        summary = " ".join((entry.__doc__ or "").strip().split("\n\n")[0].split())
        print(f"{entry_name}: {summary}")
        if name:
            for key, default, spec in _settings(entry.Settings(), f"{section}."):
                domain = spec.metadata.get("domain")
                allowed = f" ({domain})" if domain is not None else ""
                print(f"  {key} = {default!r}  # {spec.metadata.get('help', '')}{allowed}")


def _settings(node, prefix: str):
    """(dotted key, default, field) of every setting of a settings dataclass, nested ones
    flattened, ``name`` aside."""
    import dataclasses

    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        if spec.name == "name":
            continue
        if dataclasses.is_dataclass(value):
            yield from _settings(value, f"{prefix}{spec.name}.")
        else:
            yield f"{prefix}{spec.name}", value, spec


def learners_command(args: argparse.Namespace) -> int:
    from metarec.catalog import LEARNERS

    _describe_entries(LEARNERS, args.name, "learner")
    return 0


def datasets_command(args: argparse.Namespace) -> int:
    from metarec.catalog import DATASETS

    _describe_entries(DATASETS, args.name, "data")
    return 0
