"""What a reproduction runs: every experiment of a dataset x item text x warm pass x grid
point x seed.

``experiments/<dataset>/*.yaml`` (one file per table row, ``base.yaml`` aside) for every seed,
``item.text`` variant and warm-protocol pass (``task.warm=[heldout,seen]``: one training
scores held-out and seen warm users and the cold scenarios; ``task.warm=[warmup]``: MetaHIN's
warm-up, warm only, without item text), and, for a dataset with a ``grid``, every point of it
(TALLRec's 16 / 64 / 256 training samples); each run's ``key=value`` settings, and
the hash of its resolved config by which a re-run knows a finished run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from metarec.config.load import load_config, to_yaml
from metarec.errors import ConfigError

TEXTS = ("none", "join")  # item.text variants of every learner that reads item features
# Warm-protocol passes (task.warm): heldout and seen share one training; warmup trains on less.
WARM_PASSES = ("heldout,seen", "warmup")


@dataclass(frozen=True)
class Run:
    """One training run: an experiment file, its ``item.text`` variant and a seed."""

    method: str
    text: str
    seed: int
    config: Path
    warm: str = "heldout"  # task.warm, comma-separated
    data_seed: bool = False  # data.seed follows the seed
    grid: str = ""  # the grid point's key=value settings, space-separated ("" without a grid)


def grid_points(grid: dict[str, tuple] | None) -> list[str]:
    """Every point of a grid as its space-separated ``key=value`` settings (the product of the
    keys' values, the first key slowest); ``[""]`` (one point, no settings) without a grid."""
    points = [""]
    for key, values in (grid or {}).items():
        if not values:
            raise ConfigError(f"grid key '{key}' has no values")
        points = [f"{point} {key}={value}".strip() for point in points for value in values]
    return points


def dataset_of(folder: Path) -> type:
    """The registered dataset an experiments folder's files run on (its first file's)."""
    from metarec.catalog import DATASETS
    from metarec.config.load import experiment_files

    files = experiment_files(folder)
    if not files:
        raise ConfigError(f"{folder} holds no experiment files")
    return DATASETS.get(load_config(files[0]).data.name)


def plan(
    folder: Path,
    methods: Iterable[str] | None,
    seeds: int,
    texts: Iterable[str] = TEXTS,
    warms: Iterable[str] = ("heldout",),
    data_seeds: bool = False,
    grid: dict[str, tuple] | None = None,
) -> list[Run]:
    """Every (method, text, warm pass, grid point, seed) to run (``grid``: settings every row
    runs at each value of, the dataset's ``grid``). A learner that cannot read item text (an
    ID-only model) runs once per seed with none; an experiment that sets ``item.text`` itself
    (the text-only ``textsim``) runs with that setting only, and one that sets ``task.warm``
    (``melu_paper``) with its own warm protocols only."""
    from metarec.catalog import LEARNERS
    from metarec.config.load import experiment_files, read_experiment

    available = [path.stem for path in experiment_files(folder)]  # base.yaml aside
    methods = list(methods) if methods else available
    unknown = [method for method in methods if method not in available]
    if unknown:
        raise ConfigError(f"unknown methods {unknown} for {folder} (there are: {available})")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    runs = []
    for method in methods:
        path = folder / f"{method}.yaml"
        cfg, raw = load_config(path), read_experiment(path)  # base.yaml's settings too
        if "text" in (raw.get("item") or {}):
            variants = [cfg.item.text]
        elif LEARNERS.get(cfg.learner.name).reads_item_text:
            variants = list(texts)
        else:
            variants = ["none"]
        own_warm = "warm" in (raw.get("task") or {})
        passes = [",".join(cfg.task.warm)] if own_warm else list(warms)
        for warm in passes:
            # Item text is compared on the first pass; the warm-up pass runs without it
            # (where the experiment does not set its own text).
            texts_here = variants if warm != "warmup" or len(variants) == 1 else ["none"]
            runs += [Run(method, text, seed, path, warm, data_seeds, point)
                     for text in texts_here for point in grid_points(grid)
                     for seed in range(seeds)]  # fmt: skip
    return runs


def run_overrides(run: Run, overrides: list[str], out: Path) -> list[str]:
    """The ``key=value`` settings of one run: the command's, then its grid point, warm
    protocols, text, seed (and data seed) and folder. The warm-up pass scores the warm
    scenario only: its cold scenarios would repeat the other pass's on a model trained on
    fewer ratings."""
    warm = [f"task.warm=[{run.warm}]"] + (["task.cold=false"] if run.warm == "warmup" else [])
    data_seed = [f"data.seed={run.seed}"] if run.data_seed else []
    return [*overrides, *run.grid.split(), *warm, f"item.text={run.text}", f"seed={run.seed}",
            *data_seed,
            f"output_dir={out / 'runs'}", "trainer.progress_bar=false",
            "trainer.log_lines_every=0"]  # fmt: skip


def config_hash(run: Run, overrides: list[str], out: Path) -> str:
    """sha256 of the run's resolved config (output folder aside): a changed config re-runs."""
    settings = [s for s in run_overrides(run, overrides, out) if not s.startswith("output_dir=")]
    return hashlib.sha256(to_yaml(load_config(run.config, settings)).encode()).hexdigest()[:16]
