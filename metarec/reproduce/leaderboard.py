"""``metarec leaderboard``: every dataset x every method on identical tasks, one ranked page.

For each dataset with an experiments folder (``experiments/<dataset>/``) whose data are found,
:func:`metarec.reproduce.reproduce` runs (or resumes: finished runs are kept by their config
hash) every experiment file with held-out warm users and varied data seeds into
``<out>/<dataset>/``; then ``<out>/leaderboard.md`` ranks the methods per dataset and scenario
(:mod:`metarec.report.leaderboard`) over every dataset folder in ``<out>`` (this call's and
earlier calls', e.g. one call per dataset with its own ``--methods``), with each dataset's runs,
wall time and call. A dataset whose data are missing is
listed as not run, with the path looked at; it is never silently dropped. The page ends with
every registered learner x dataset: on the board, or the reason it is not
(``experiments/coverage.yaml``), and every experiment file without a row.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from metarec.config.experiments import check_experiments
from metarec.errors import ConfigError
from metarec.io import atomic_write_text, writable_folder
from metarec.paths import datasets_found, experiments_folder, experiments_root
from metarec.report.leaderboard import (
    LEGEND,
    board,
    board_lines,
    coverage_lines,
    simple_lines,
    wins_lines,
)

COVERAGE_FILE = "coverage.yaml"  # in the experiments folder: why a learner or file has no row


def _data_root(dataset: str, roots: dict[str, str]) -> tuple[Path | None, bool]:
    """Where ``dataset``'s data are (``--root NAME=PATH``, else its experiments' ``data.root``
    or the download folder, :func:`metarec.catalog.data_root`; None for data made in memory),
    and whether that folder holds any file."""
    from metarec.catalog import DATASETS, data_root
    from metarec.config.load import experiment_files, load_config

    cfg = load_config(experiment_files(experiments_folder(dataset))[0]).data
    if not DATASETS.get(cfg.name).on_disk:
        return None, True
    root = Path(roots[dataset]) if dataset in roots else data_root(cfg)
    return root, root.is_dir() and any(root.iterdir())


def _has_experiment(dataset: str, method: str) -> bool:
    return (experiments_folder(dataset) / f"{method}.yaml").is_file()


def leaderboard(
    names: list[str] | None = None,
    roots: dict[str, str] | None = None,
    seeds: int = 3,
    jobs: int = 1,
    out: Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    methods: list[str] | None = None,
    texts: list[str] | None = None,
) -> tuple[str, float]:
    """Run every dataset's table (resumable; ``methods``: only those experiment files;
    ``texts``: the ``item.text`` variants of learners that read it, default none and join) and
    write ``leaderboard.md``; its text and the wall time in seconds."""
    from metarec.reproduce import reproduce

    start = time.perf_counter()
    out = writable_folder(Path(out or Path("results") / "leaderboard"), "output folder")
    roots = roots or {}
    missing = []
    # Every file with every setting first: a bad one fails before any run, data found or not.
    check_experiments(datasets_found(names), methods, list(overrides or []), roots)
    for name in datasets_found(names):
        root, found = _data_root(name, roots)
        if not found:
            missing.append(f"- {name}: no data at {root} (`--root {name}=PATH`)")
            continue
        extra = [f"data.root={root}"] if root is not None else []
        here = methods and [m for m in methods if _has_experiment(name, m)]
        if methods and not here:
            continue
        reproduce(name, seeds=seeds, methods=here or None, texts=texts,
                  overrides=[*extra, *(overrides or [])], out=out / name.replace("-", "_"),
                  jobs=jobs, progress=progress, warms=["heldout"], data_seeds=True)  # fmt: skip
    seconds = time.perf_counter() - start
    text = write_leaderboard(out, missing)
    return text, seconds


def learners_of(dataset: str) -> dict[str, str]:
    """Each experiment file of ``dataset`` (by name) and the learner it trains."""
    from metarec.config.load import experiment_files, load_config

    files = experiment_files(experiments_folder(dataset))
    return {path.stem: load_config(path).learner.name for path in files}


def coverage_reasons(root: Path | None = None) -> dict[str, dict[str, str]]:
    """``experiments/coverage.yaml``: per dataset, why a learner or experiment file has no row
    on the leaderboard; its names checked against the experiments and the learners."""
    from omegaconf import OmegaConf

    from metarec.catalog import LEARNERS

    root = root or experiments_root()
    path = root / COVERAGE_FILE
    if not path.is_file():
        return {}
    reasons = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(reasons, dict):
        raise ConfigError(f"{path}: expected a mapping of dataset -> name -> reason")
    for dataset, names in reasons.items():
        folder = root / dataset.replace("-", "_")
        if not folder.is_dir() or not isinstance(names, dict):
            raise ConfigError(f"{path}: '{dataset}' is not a dataset with experiments, "
                              "mapping names to reasons")  # fmt: skip
        for name in names:
            if name not in LEARNERS and not (folder / f"{name}.yaml").is_file():
                raise ConfigError(f"{path}: '{dataset}.{name}' is neither a learner nor an "
                                  f"experiment file of {folder}")  # fmt: skip
    return reasons


def _coverage(boards: list) -> tuple[list[str], dict[tuple[str, str], str]]:
    """The coverage section of the page, and each (dataset, method)'s learner."""
    from metarec.catalog import LEARNERS

    datasets = datasets_found(None)
    files = {name: learners_of(name) for name in datasets}
    on_board = {b.dataset: {e["method"] for _, _, es in b.groups for e in es} for b in boards}
    ran = {name: {files[name][m] for m in on_board.get(name, ()) if m in files[name]}
           for name in datasets}  # fmt: skip
    idle = {name: sorted(set(files[name]) - on_board.get(name, set())) for name in datasets}
    lines = coverage_lines(datasets, sorted(LEARNERS.names()), ran, coverage_reasons(), idle)
    return lines, {(name, m): learner for name in datasets for m, learner in files[name].items()}


def write_leaderboard(out: Path, missing: list[str] = ()) -> str:
    """``out/leaderboard.md`` from every dataset folder in ``out`` that holds a summary (this
    call's and earlier calls'), with each one's runs, wall time and the call that made it
    (its ``timing.json``); the page's text."""
    folders = sorted(p for p in out.iterdir() if (p / "summary.json").is_file())
    boards, calls = [], []
    for folder in folders:
        name = folder.name.replace("_", "-")
        boards.append(board(name, json.loads((folder / "summary.json").read_text())))
        timing = json.loads((folder / "timing.json").read_text())
        for call in timing["calls"]:
            methods = ",".join(call.get("methods") or []) or "all"
            settings = "".join(f" --set {s}" for s in call.get("overrides") or []
                               if not s.startswith("data.root="))  # fmt: skip
            texts = f" --text {','.join(call['texts'])}" if call.get("texts") else ""
            calls.append(f"| {name} | {call['runs']} | {call['seconds'] / 60:.1f} | "
                         f"{call['jobs']} | `--methods {methods}{texts} --seeds {call['seeds']}"
                         f"{settings}` |")  # fmt: skip
    total = sum(json.loads((f / "timing.json").read_text())["seconds"] for f in folders)
    lines = ["# Leaderboard", "", LEGEND, "",
             f"Wall time on this machine: {total / 60:.1f} min in all (finished runs of an "
             "earlier call are reused, so a resumed call's time counts only what it ran), "
             "by dataset:", "",
             "| dataset | runs | minutes | worker processes | `metarec leaderboard --datasets "
             "<dataset>` with |", "|---|---|---|---|---|", *calls, ""]  # fmt: skip
    if missing:
        lines += ["Not run (data not found):", "", *missing, ""]
    coverage, learner_of = _coverage(boards)
    lines += simple_lines(boards, learner_of)
    for found in boards:
        lines += board_lines(found)
    lines += wins_lines(boards) + ["", *coverage]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "leaderboard.md", text)
    return text
