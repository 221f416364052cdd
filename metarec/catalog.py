"""The registries, complete: every built-in learner, baseline and dataset, and every installed
plug-in (a package's ``metarec.learners`` / ``metarec.datasets`` entry points); and loading
the dataset a config names.

Whatever looks an entry up (config load, the command line, ``reproduce``, the report) imports
``LEARNERS`` and ``DATASETS`` from here; the modules that register entries import them from
:mod:`metarec.registry`, which knows none.
"""

import os
from importlib.metadata import entry_points
from pathlib import Path

from metarec.baselines import finetune, mean, mf, textsim, widedeep  # noqa: F401  (registers)
from metarec.config.schema import DataConfig
from metarec.data.schema import RecDataset
from metarec.datasets import (  # noqa: F401  (registers)
    amazon_unisrec,
    csv,
    melu_ml1m,
    metahin,
    synthetic,
    tallrec_ml100k,
    tanp_lastfm,
)
from metarec.errors import ConfigError
from metarec.learners import (  # noqa: F401  (registers)
    aldi,
    attention,
    clcrec,
    dropoutnet,
    heater,
    maml,
    mamo,
    metaemb,
    metasgd,
    mwuf,
    protonet,
    reptile,
    ridge,
    tanp,
)
from metarec.registry import DATASETS, LEARNERS

ENTRY_POINT_GROUPS = {"metarec.learners": LEARNERS, "metarec.datasets": DATASETS}


def _load_entry_points() -> None:
    """Import every installed plug-in's entry point (its module registers on import)."""
    for group, registry in ENTRY_POINT_GROUPS.items():
        for point in entry_points(group=group):
            try:
                loaded = point.load()
            except Exception as err:  # a broken plug-in names itself, whatever it raised
                raise ConfigError(
                    f"entry point '{point.name} = {point.value}' ({group}) cannot be loaded: "
                    f"{type(err).__name__}: {err}"
                ) from err
            if point.name not in registry:
                raise ConfigError(
                    f"entry point '{point.name} = {point.value}' ({group}) loaded "
                    f"{getattr(loaded, '__name__', loaded)}, which registers no {registry.kind} "
                    f"'{point.name}'"
                )


_load_entry_points()


def data_root(cfg: DataConfig) -> Path:
    """``data.root``, else ``$METAREC_DATA_DIR/<name>``, else the user cache folder."""
    if cfg.root:
        return Path(cfg.root).expanduser()
    if os.environ.get("METAREC_DATA_DIR"):
        return Path(os.environ["METAREC_DATA_DIR"]).expanduser() / cfg.name
    import pooch

    return Path(pooch.os_cache("metarec")) / cfg.name


def load_dataset(cfg: DataConfig) -> RecDataset:
    """The dataset ``data.name`` names, loaded by its registered class."""
    source = DATASETS.get(cfg.name)
    return source.load(cfg, data_root(cfg) if source.on_disk else Path("."))


__all__ = ["DATASETS", "LEARNERS", "data_root", "load_dataset"]
