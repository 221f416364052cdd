"""What a registered dataset declares: its settings, files, loader, tasks, scoring, paper rows.

A dataset is one module that subclasses :class:`DataSource`, sets what differs from the
defaults and registers it with ``@DATASETS.register(name)`` (``metarec/datasets/`` holds the
built-in ones; a researcher's own plugs in through the ``metarec.datasets`` entry point or
``plugins``). Nothing outside that module compares a dataset's name to a string: the config,
``metarec data``, the tasks, ``metarec reproduce`` and the report read the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.files import FileStatus, download_files, verify_files
from metarec.data.schema import RecDataset


@dataclass(frozen=True)
class Files:
    """A dataset's files: each name's digest (``algorithm``, of the uncompressed bytes) and
    the URL prefix they download from (``None``: no download)."""

    digests: dict[str, str]
    algorithm: str = "sha256"
    base_url: str | None = None


class DataSource:
    """A dataset metarec can load. Subclasses implement :meth:`load` and may override the rest.

    - ``Settings``: the ``data.*`` section's dataclass (``DataConfig`` plus the dataset's own
      settings, e.g. a ``csv`` field for ``data.csv.*``), checked when the config is loaded.
    - ``files``: what ``metarec data download|verify`` fetches and checks.
    - ``scoring``: how its tasks are scored (``rating``: MeLU's metrics; ``ranking``: the next
      item among negatives; ``pooled``: one AUC over every task's one query), and
      ``extra_metrics``: per-task metrics it adds (``metarec.metrics.evaluate.EXTRA_METRICS``).
    - :meth:`tasks`: its own task sets; ``None`` (the default) runs MeLU's protocol over the
      states the loader filled (fixed by the data, or by a published split file).
    - ``paper``: the published rows beside which its tables stand; ``reproduce``: settings
      ``metarec reproduce`` runs every row at, and its warm-protocol passes.
    """

    name: ClassVar[str] = "base"
    Settings: ClassVar[type] = DataConfig
    # False for data made in memory (no data.root, no files).
    on_disk: ClassVar[bool] = True
    files: ClassVar[Files | None] = None
    scoring: ClassVar[str] = "rating"
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    # The reproduction table's columns, the first its primary metric (ranked and tested, and
    # the validation metric that picks the epoch kept); () for the scoring kind's
    # (metarec.metrics.names.ESTIMATED) and the extra metrics.
    table: ClassVar[tuple[str, ...]] = ()
    # "<method> (paper)" -> scenario -> metric -> value (rating scoring), and their source.
    paper: ClassVar[dict[str, Any]] = {}
    paper_source: ClassVar[str] = ""
    # Which of our rows the paper's stand beside, and what is not comparable (the table legend).
    paper_note: ClassVar[str] = ""
    # The paper's own method's row: a reference line in plots, counted in the findings.
    paper_best: ClassVar[str] = ""
    # The project's goal for the warm-up protocol's MAE (stated, not promised).
    goal: ClassVar[float | None] = None
    # `metarec reproduce`: settings every row runs at each value of (a table's axis), and the
    # warm-protocol passes when the command names none.
    grid: ClassVar[dict[str, tuple]] = {}
    # The test scenarios its own ``tasks`` can make (None: MeLU's protocol's).
    scenarios: ClassVar[tuple[str, ...] | None] = None
    warm_passes: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def load(cls, cfg: DataConfig, root: Path) -> RecDataset:
        """The data under ``root`` (``data.root``) in metarec's in-memory form."""
        raise NotImplementedError(f"dataset '{cls.name}' defines no load()")

    @classmethod
    def tasks(cls, dataset: RecDataset, cfg: DataConfig, task: TaskConfig) -> Any:
        """(meta-training, validation, ``{scenario: test}``) task sets, or None for MeLU's
        protocol over ``dataset.states``."""
        return None

    @classmethod
    def verify(cls, root: Path) -> dict[str, FileStatus]:
        """Each file's status in ``root`` (``ok``, ``missing``, ...)."""
        if cls.files is None:
            return {}
        return verify_files(root, cls.files.digests, cls.files.algorithm)

    @classmethod
    def download(cls, root: Path) -> Path:
        """Fetch the files into ``root``, checking each digest; returns the folder."""
        if cls.files is None or cls.files.base_url is None:
            raise NotImplementedError(f"dataset '{cls.name}' has nothing to download")
        files = cls.files
        return download_files(root, files.base_url, files.digests, files.algorithm, cls.name)
