"""Every experiment file of a reproduction or the leaderboard checked before any run.

:func:`check_experiments` loads each file a ``metarec reproduce`` or ``metarec leaderboard``
call would run, with its ``--set`` settings: the commands call it first (with the installed
catalog), and the command line's fast check calls it before torch is imported (with the
schema cache's), so both tell the same first error.
"""

from __future__ import annotations

from metarec.config.load import experiment_files, load_config
from metarec.config.registries import INSTALLED, Registries
from metarec.paths import experiments_folder


def check_experiments(
    datasets: list[str],
    methods: list[str] | None,
    overrides: list[str],
    roots: dict[str, str] | None = None,
    catalog: Registries = INSTALLED,
) -> None:
    """Load every experiment file of ``datasets`` (those named in ``methods`` if given) with
    ``overrides`` (after the dataset's ``data.root`` in ``roots``): a bad file or setting is a
    ``ConfigError`` before any run starts. ``metarec reproduce`` and ``leaderboard`` call it
    first, and the CLI's fast check calls it before torch is imported."""
    for dataset in datasets:
        root = [f"data.root={roots[dataset]}"] if roots and dataset in roots else []
        for path in experiment_files(experiments_folder(dataset)):
            if methods is None or path.stem in methods:
                load_config(path, [*root, *overrides], catalog=catalog)
