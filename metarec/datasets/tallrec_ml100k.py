"""TALLRec's few-shot MovieLens-100K benchmark (Bao et al., RecSys 2023): ``data.name:
tallrec-ml100k``.

The protocol, as TALLRec's code builds it (``SAI990323/TALLRec``, ``preprocess_movie.py``):

* a rating above 3 is a like (``int(rating) > 3``; here ``task.like_threshold``, whose default
  4 says the same of whole stars: a 3 is a dislike);
* each user's ratings are sorted by time (ties keep file order) and every rating after the
  first ``history`` (10) is the target of one **sample**: the ``history`` ratings just before
  it, with their likes, then the target item and its like;
* samples are listed user by user, users in the order of their first line in ``u.data``, each
  user's in time order (``data.tallrec.order: user``; ``time`` sorts them all by the target's
  timestamp instead); the **last** ``n_last`` (10,000) of that list are the benchmark, cut in
  list order at 80% and 90% (``int(n * 0.8)``, as TALLRec) into training, validation and test;
* a run trains on the first ``train_samples`` (16, 64 or 256) of a permutation of the training
  part drawn from ``data.seed`` (as ``datasets``' ``shuffle(seed)`` draws TALLRec's: the 16
  are among the 64), validates on the whole validation part and is tested on the test part;
* AUC over all test samples pooled (:mod:`metarec.metrics.pooled`).

In metarec a sample is a task (support: the ``history`` items with their labels; query: the
target); the test scenario is ``warm``. ``data.tallrec.extra: true`` also meta-trains on every
sample before the benchmark (extra data TALLRec's rows do not use). ``data.min_ratings``,
``query_size`` and the fractions do not apply.

Files: GroupLens' ``u.data``, ``u.item``, ``u.user`` (:mod:`metarec.data.ml100k`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from metarec.config.domain import AT_LEAST_ONE, Range, setting
from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.files import FileStatus
from metarec.data.ml100k import ML100K_MD5, STATE, download_ml100k, load_ml100k, verify_ml100k
from metarec.data.schema import RecDataset, UserRatings
from metarec.data.source import DataSource, Files
from metarec.data.tasks import TaskSet
from metarec.errors import ConfigError, DataError
from metarec.registry import DATASETS


@dataclass
class TallrecConfig:
    """TALLRec's few-shot MovieLens-100K protocol (``data.name: tallrec-ml100k``; see
    ``metarec/data/tallrec.py``): a task is one sample, a user's ``history`` ratings before a
    target (the support set) and the target (the query); data.min_ratings, max_ratings,
    query_size, val_fraction and test_fraction do not apply."""

    train_samples: int | None = setting(
        64,
        "training samples, the first of a permutation (seeded by data.seed) of the "
        "benchmark's training part: TALLRec's 16 / 64 / 256; null: all of them",
        domain=AT_LEAST_ONE,
    )
    history: int = setting(
        10, "ratings before the target in a sample (TALLRec: 10)", domain=AT_LEAST_ONE
    )
    n_last: int = setting(
        10_000,
        "last samples kept as the benchmark, cut 8:1:1 into training, validation, test",
        domain=Range(10),
    )
    order: str = setting(
        "user",
        "user: TALLRec's list, user by user (in order of first rating in u.data), each by time; "
        "time: every sample by its target's timestamp",
        choices=("user", "time"),
    )
    extra: bool = setting(
        False,
        "also meta-train on every sample before the benchmark (the rest of ML-100K): extra "
        "data TALLRec's rows do not use, so a row trained so says it",
    )


@dataclass
class TallrecSettings(DataConfig):
    tallrec: TallrecConfig = field(default_factory=TallrecConfig)


# Where TALLRec cuts the benchmark samples: training before 80%, validation before 90%.
TRAIN_END, VAL_END = 0.8, 0.9

# ---------------------------------------------------------------------------------------------
# Samples and splits
# ---------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """TALLRec's samples: row ``i`` is ``user[i]``'s ``history`` items, then the target.

    ``items`` and ``ratings`` are ``(n, history + 1)``; ``time`` is the target's timestamp.
    """

    user: list[str]
    items: np.ndarray  # object (raw item ids)
    ratings: np.ndarray  # float32
    time: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> Samples:
        """The samples at ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return Samples([self.user[i] for i in index.tolist()], self.items[index],
                       self.ratings[index], self.time[index])  # fmt: skip

    def ids(self) -> list[str]:
        """``user:target item``, unique per sample (a user rates an item once)."""
        return [f"{user}:{item}" for user, item in zip(self.user, self.items[:, -1], strict=True)]


def make_samples(users: list[UserRatings], times: dict[str, np.ndarray], history: int) -> Samples:
    """Every user's sliding windows (``users`` in order, each in its own time order): the
    ``history`` ratings before each later rating, then that rating."""
    if history < 1:
        raise ConfigError(f"key 'data.tallrec.history': {history} must be at least 1")
    rows, owners, ratings, when = [], [], [], []
    for user in users:
        items = np.asarray(user.items, dtype=object)
        for end in range(history, len(items)):
            rows.append(items[end - history : end + 1])
            ratings.append(user.ratings[end - history : end + 1])
            owners.append(user.user)
            when.append(times[user.user][end])
    if not rows:
        raise DataError(f"no user has more than data.tallrec.history={history} ratings")
    return Samples(owners, np.stack(rows), np.stack(ratings).astype(np.float32),
                   np.asarray(when, dtype=np.int64))  # fmt: skip


@dataclass(frozen=True)
class Split:
    """Sample indices: before the benchmark (``extra``), then its 8:1:1 parts."""

    extra: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_samples(n_samples: int, n_last: int) -> Split:
    """The last ``n_last`` samples cut at 80% and 90% (TALLRec's ``int(n * 0.8)``); every
    earlier sample is ``extra``."""
    if not 10 <= n_last <= n_samples:
        raise DataError(
            f"data.tallrec.n_last={n_last}: the data give {n_samples} samples; keep between 10 "
            "and that many"
        )
    start = n_samples - n_last
    train_end, val_end = start + int(n_last * TRAIN_END), start + int(n_last * VAL_END)
    return Split(np.arange(start), np.arange(start, train_end), np.arange(train_end, val_end),
                 np.arange(val_end, n_samples))  # fmt: skip


def few_shot(n_train: int, train_samples: int | None, seed: int) -> np.ndarray:
    """Which training samples a run uses: the first ``train_samples`` of a permutation drawn
    from ``seed`` (all of them, permuted, for None), as TALLRec's seeded shuffle and select."""
    order = np.random.default_rng(seed).permutation(n_train)
    if train_samples is None:
        return order
    if not 1 <= train_samples <= n_train:
        raise ConfigError(
            f"key 'data.tallrec.train_samples': {train_samples} is not within 1..{n_train} "
            "(the training part of the benchmark)"
        )
    return order[:train_samples]


def benchmark(dataset: RecDataset, cfg: TallrecSettings) -> tuple[Samples, Split, np.ndarray]:
    """All samples (in ``data.tallrec.order``), their split, and the indices a run meta-trains
    on: its few-shot training samples, after every ``extra`` one with ``data.tallrec.extra``."""
    settings: TallrecConfig = cfg.tallrec
    samples = make_samples(dataset.states[STATE], dataset.meta["times"], settings.history)
    if settings.order == "time":
        samples = samples.take(np.argsort(samples.time, kind="stable"))
    split = split_samples(len(samples), settings.n_last)
    train = split.train[few_shot(len(split.train), settings.train_samples, cfg.seed)]
    if settings.extra:
        train = np.concatenate([split.extra, train])
    return samples, split, train


def _task_set(samples: Samples, dataset: RecDataset) -> TaskSet:
    """One task per sample: support = the history, query = the target."""
    rows = np.vectorize(dataset.items.row_of.__getitem__, otypes=[np.int64])(samples.items)
    items, ratings = torch.as_tensor(rows), torch.as_tensor(samples.ratings)
    users = [dataset.users.row_of[user] for user in samples.user]
    return TaskSet(
        user_ids=samples.ids(),
        user=torch.tensor(users, dtype=torch.long),
        support_item=items[:, :-1].contiguous(),
        support_rating=ratings[:, :-1].contiguous(),
        support_mask=torch.ones(items[:, :-1].shape, dtype=torch.bool),
        query_item=items[:, -1:].contiguous(),
        query_rating=ratings[:, -1:].contiguous(),
        query_mask=torch.ones(len(samples), 1, dtype=torch.bool),
    )


def tallrec_tasks(
    dataset: RecDataset, cfg: TallrecSettings, task: TaskConfig
) -> tuple[TaskSet, TaskSet, dict[str, TaskSet]]:
    """(meta-training, validation, ``{"warm": test}``) task sets of TALLRec's protocol, on
    ``dataset`` as ``ColdStartTasks`` hands it over (ratings already likes for
    ``task.target: like``)."""
    if task.unit != "user":
        raise ConfigError(
            f"key 'task.unit': {dataset.name}'s tasks are samples of one user, not "
            f"'{task.unit}'; use task.unit=user"
        )
    if STATE not in dataset.states or "times" not in dataset.meta:
        raise DataError(f"{dataset.name}: not loaded by metarec.data.ml100k.load_ml100k")
    samples, split, train = benchmark(dataset, cfg)
    return (_task_set(samples.take(train), dataset), _task_set(samples.take(split.val), dataset),
            {"warm": _task_set(samples.take(split.test), dataset)})  # fmt: skip


# TALLRec, Table 1, movie (MovieLens-100K), as the README of github.com/SAI990323/TALLRec gives
# it: test AUC x 100 after training on 16 / 64 / 256 samples. The baselines are trained on the
# same few samples; TALLRec tunes LLaMA-7B with LoRA.
_TABLE1 = {
    "GRU4Rec": (49.07, 49.87, 52.89),
    "Caser": (49.68, 51.06, 54.20),
    "SASRec": (50.43, 50.48, 52.25),
    "DROS": (50.76, 51.54, 54.07),
    "GRU-BERT": (50.85, 51.65, 53.44),
    "DROS-BERT": (50.21, 51.71, 53.94),
    "TALLRec": (67.24, 67.48, 71.98),
}
SAMPLE_SIZES = (16, 64, 256)
AXIS = "data.tallrec.train_samples"


@DATASETS.register("tallrec-ml100k")
class TallrecML100K(DataSource):
    """TALLRec's few-shot likes on MovieLens-100K (``data.tallrec``): a task per sample."""

    Settings = TallrecSettings
    # GroupLens' md5s; downloaded as ml-100k.zip (SHA-1 checked) and unpacked, see download().
    files = Files(ML100K_MD5, "md5")
    scoring = "pooled"
    scenarios = ("warm",)
    # The few-shot axis and "<method> (paper)" -> its value on that axis -> AUC (0-1).
    paper = {
        "axis": AXIS,
        "source": "TALLRec (Bao et al., RecSys 2023), Table 1, movie",
        "rows": {
            f"{method} (paper)": {
                samples: round(auc / 100, 4)
                for samples, auc in zip(SAMPLE_SIZES, values, strict=True)
            }
            for method, values in _TABLE1.items()
        },
    }
    paper_source = "TALLRec (Bao et al., RecSys 2023), Table 1, movie"
    grid = {AXIS: SAMPLE_SIZES}
    # One test set (scored as ``warm``), so one pass.
    warm_passes = ("heldout",)

    @classmethod
    def load(cls, cfg: DataConfig, root: Path) -> RecDataset:
        return replace(load_ml100k(root, cls.name), source=cls)

    @classmethod
    def tasks(cls, dataset: RecDataset, cfg: TallrecSettings, task: TaskConfig):
        return tallrec_tasks(dataset, cfg, task)

    @classmethod
    def verify(cls, root: Path) -> dict[str, FileStatus]:
        return verify_ml100k(root)

    @classmethod
    def download(cls, root: Path) -> Path:
        return download_ml100k(root)
