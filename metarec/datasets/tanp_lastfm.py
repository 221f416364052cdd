"""TaNP's Last.fm benchmark (Lin et al., "Task-adaptive Neural Process for User Cold-Start
Recommendation", WWW 2021): ``data.name: tanp-lastfm``.

Data: TaNP's ``lastfm_20`` (Last.fm listening, HetRec 2011, as KGCN/MKR's implicit file: each
listened artist, label 1, beside a sampled artist, label 0) and TaNP's 70/10/20 user split as
published (the files and their safe reading: :mod:`metarec.data.lastfm`). The protocol, as
TaNP's code builds it (``utils/loader.py``, ``train_TaNP.py``, ``train.sh`` of IIEdm/TaNP):

* the training users' tasks meta-train, the validation users' pick the epoch and the test
  users' are the new-user test scenario (``new_user``), every part as published (TaNP removed
  the items no training user has from the test users);
* a user is a task when they have ``support_size + query_size`` (20 + 10) to ``max_len``
  (200) interactions; these are shuffled, the first ``support_size`` are the support set and
  **every other one the query** (10 to 36 here: 248 / 35 / 66 tasks; ``data.tanp.max_query``
  caps it);
* implicit 0/1 labels (``task.target: like``), scored by Precision, nDCG and MAP at 5, 7 and 10
  of each query ranked by score (:mod:`metarec.metrics.topk`; TaNP's precision and MAP are
  not the textbook ones, so they are named ``tanp_precision@k`` and ``tanp_map@k``).

**The draw** (``data.tanp.draw``). ``tanp`` replays TaNP's: Python's ``random`` seeded with
``replay_seed`` (2020, TaNP's default ``--seed``) first shuffles ``user_list.json`` into the
split (checked: a split it does not give is refused), then shuffles each kept user's
interactions, training users first, then validation, then test, each in file order; so the
tasks are TaNP's episodes whatever ``data.seed``. ``seeded`` draws each user's order with numpy
from ``data.seed`` instead.

Differences from TaNP's code: ties in the scores are averaged over (its sort keeps an
arbitrary order); users have no id feature (TaNP's one-hot user id gives a test user an
embedding that never trained); TaNP scores its test users after every epoch and reads no
validation users, here the epoch kept is the one best on the validation users.
``data.min_ratings``, ``max_ratings``, ``query_size``, ``val_fraction`` and ``test_fraction``
do not apply.
"""

from __future__ import annotations

import logging
import random
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, setting
from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.files import verify_files
from metarec.data.lastfm import PART_STATES, load_lastfm
from metarec.data.schema import RecDataset, UserRatings
from metarec.data.source import DataSource, Files
from metarec.data.tasks import TaskSet, padded_tasks
from metarec.errors import ConfigError, DataError, one_line
from metarec.metrics.topk import topk_names
from metarec.registry import DATASETS

# md5 of the *uncompressed* files (../shared/data/tanp-lastfm/SOURCE.md), so a gzipped local
# copy verifies against the same digest.
TANP_MD5: dict[str, str] = {
    "interaction_dict_x.json": "a46310c8c936bfd835e0c0f9edadd6ab",
    "interaction_dict_y.json": "1bcc520d79549918a7acf775bc1541b6",
    "item_list.json": "32056d3bacca2cc0120f92d6f5ac40de",
    "ratings_final.txt": "97a213baf4b73a7b5d544facead1a668",
    "test_dict_x_0.200000.pkl": "03a12ae9a9d94622218626450504c322",
    "test_dict_y_0.200000.pkl": "bfabd757095e7e2abc1e88353c152e8b",
    "training_dict_x_0.700000.pkl": "dd0b4ff36878cdb07380444ba8513d95",
    "training_dict_y_0.700000.pkl": "cc2fc0629f553c92266068c30753b8aa",
    "user_list.json": "afc663b657f6e8fda6620bb5734bec58",
    "valid_dict_x_0.100000.pkl": "7d75487b4e7df70472fb74ed7059f0ef",
    "valid_dict_y_0.100000.pkl": "54239be98ed809c8d0d21c6d88836326",
}
# The files ship inside a zip (folder lastfm_20/): recohut's copy of TaNP's data.zip, pinned.
TANP_ZIP_URL = (
    "https://github.com/recohut/coldstart-recsys/raw/"
    "da72950ca514faee94f010a2cb6e99a373044ec1/data/TaNP/data.zip"
)
TANP_FOLDER = "lastfm_20"


@dataclass
class TanpConfig:
    """TaNP's Last.fm tasks (``data.name: tanp-lastfm``): the support and query sizes and how
    each user's interactions are drawn; data.min_ratings, max_ratings, query_size,
    val_fraction and test_fraction do not apply."""

    support_size: int = setting(
        20, "interactions in a support set (TaNP's --support_size)", domain=AT_LEAST_ONE
    )
    query_size: int = setting(
        10,
        "fewest query interactions: a user needs support_size + query_size (TaNP's --query_size)",
        domain=AT_LEAST_ONE,
    )
    max_query: int = setting(
        0,
        "at most this many query interactions; 0: all the rest (TaNP's code)",
        domain=NON_NEGATIVE,
    )
    max_len: int = setting(
        200, "users with more interactions are left out (TaNP's --max_len)", domain=AT_LEAST_ONE
    )
    draw: str = setting(
        "tanp",
        "tanp: replay TaNP's draw (Python's random at replay_seed, continued after the user "
        "shuffle that made the split); seeded: each user's order from data.seed",
        choices=("tanp", "seeded"),
    )
    replay_seed: int = setting(
        2020, "draw=tanp: the --seed of TaNP's run that made the split", domain=NON_NEGATIVE
    )


@dataclass
class TanpSettings(DataConfig):
    tanp: TanpConfig = field(default_factory=TanpConfig)


def _orders(dataset: RecDataset, cfg: TanpSettings, parts: list[list[UserRatings]]) -> list:
    """Per part, a function of a kept user's interaction count giving their shuffled order:
    TaNP's draw continued from the state its user shuffle left, or numpy's from data.seed."""
    settings = cfg.tanp
    if settings.draw == "seeded":
        return [np.random.default_rng([cfg.seed, index]).permutation for index in range(len(parts))]
    rng = random.Random(settings.replay_seed)
    shuffled = list(dataset.users.ids)
    rng.shuffle(shuffled)
    if shuffled != [user.user for part in parts for user in part]:
        raise DataError(
            f"{dataset.name}: the split is not user_list.json shuffled by Python's random at "
            f"seed {settings.replay_seed}, as TaNP's run drew it, so its draw cannot be "
            "replayed; set data.tanp.replay_seed to that run's --seed, or data.tanp.draw=seeded"
        )
    if cfg.seed:
        logging.getLogger(__name__).warning(
            f"{dataset.name}: data.seed={cfg.seed} does not change the tasks: "
            "data.tanp.draw=tanp replays TaNP's draw (data.tanp.draw=seeded uses data.seed)"
        )

    def order(count: int) -> list[int]:  # one stream for all parts, as TaNP's loop
        indices = list(range(count))
        rng.shuffle(indices)
        return indices

    return [order] * len(parts)


def _task_set(
    dataset: RecDataset, users: list[UserRatings], settings: TanpConfig, order, part: str
) -> TaskSet:
    """One task per user with support_size + query_size .. max_len interactions, in file
    order: ``order(n)`` is the shuffle of their interactions."""
    low, high = settings.support_size + settings.query_size, settings.max_len
    kept = [user for user in users if low <= len(user.items) <= high]
    if not kept:
        counts = sorted(len(user.items) for user in users) or [0]
        raise DataError(
            f"{dataset.name}/{part}: no user has {low}..{high} interactions (they have "
            f"{counts[0]}..{counts[-1]}); lower data.tanp.support_size or data.tanp.query_size"
        )
    end = settings.support_size + settings.max_query if settings.max_query else None
    item_row = dataset.items.row_of
    support_items, support_labels, query_items, query_labels = [], [], [], []
    for user in kept:
        shuffled = np.asarray(order(len(user.items)), dtype=np.int64)
        support, query = shuffled[: settings.support_size], shuffled[settings.support_size : end]
        items = np.array([item_row[item] for item in user.items], dtype=np.int64)
        support_items.append(items[support])
        support_labels.append(user.ratings[support])
        query_items.append(items[query])
        query_labels.append(user.ratings[query])
    rows = torch.tensor([dataset.users.row_of[user.user] for user in kept], dtype=torch.long)
    return padded_tasks(
        [user.user for user in kept], rows, support_items, support_labels, query_items, query_labels
    )


def tanp_tasks(
    dataset: RecDataset, cfg: TanpSettings, task: TaskConfig
) -> tuple[TaskSet, TaskSet, dict[str, TaskSet]]:
    """(meta-training, validation, ``{"new_user": test}``) task sets of TaNP's protocol."""
    if task.target != "like":
        raise ConfigError(
            f"key 'task.target': {dataset.name} is implicit (0/1 labels); use task.target=like"
        )
    if task.unit != "user" or not task.cold:
        raise ConfigError(
            f"key 'task.unit' / 'task.cold': {dataset.name}'s tasks are users and its one test "
            "scenario is new users; use task.unit=user and task.cold=true"
        )
    parts = [dataset.states[state] for state in PART_STATES.values()]
    train, val, test = (
        _task_set(dataset, users, cfg.tanp, order, part)
        for part, users, order in zip(PART_STATES, parts, _orders(dataset, cfg, parts), strict=True)
    )
    return train, val, {"new_user": test}


@DATASETS.register("tanp-lastfm")
class TanpLastfm(DataSource):
    """TaNP's Last.fm (``data.tanp``): new users' 0/1 likes, TaNP's published user split,
    support 20, the rest of each user's interactions the query; Precision, nDCG, MAP@5/7/10."""

    Settings = TanpSettings
    files = Files(TANP_MD5, "md5")
    scoring = "rating"  # per-task metrics averaged over users, and TaNP's top-k ones:
    extra_metrics = topk_names()
    # Ranked by nDCG@10 (its epoch kept is the best on validation nDCG@10, not on MAE, which
    # any constant 0.5 ties on balanced 0/1 labels); TaNP's columns, then AUC.
    table = ("ndcg@10", "precision@5", "precision@7", "precision@10", "ndcg@5", "ndcg@7",
             "tanp_map@5", "tanp_map@7", "tanp_map@10", "auc")  # fmt: skip
    scenarios = ("new_user",)
    warm_passes = ("heldout",)  # one test scenario: one pass
    # No paper rows: TaNP's Last.fm table is not in ../shared/PROTOCOLS.md, and no readable
    # copy of the paper was found; add "<method> (paper)" -> {"new_user": {metric: value}}.
    paper = {}

    @classmethod
    def load(cls, cfg: DataConfig, root: Path) -> RecDataset:
        hint = (
            f"run `metarec data download {cls.name}`, or point data.root at a folder holding "
            "TaNP's lastfm_20 files"
        )
        return replace(load_lastfm(root, cls.name, hint), source=cls)

    @classmethod
    def tasks(cls, dataset: RecDataset, cfg: TanpSettings, task: TaskConfig):
        return tanp_tasks(dataset, cfg, task)

    @classmethod
    def download(cls, root: Path) -> Path:
        """Fetch the zip (unchecked: its files are, by md5) and unpack ``lastfm_20/``'s files
        into ``root``."""
        import pooch

        root = Path(root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        try:
            archive = pooch.retrieve(
                TANP_ZIP_URL, known_hash=None, fname="tanp-data.zip", path=root
            )
        except Exception as err:  # no network, an HTTP error: one line, with the way round
            raise DataError(
                f"download of {TANP_ZIP_URL} failed ({one_line(err)}); to use a local copy of "
                f"{cls.name}'s files, pass --root DIR (or set data.root) to the folder holding them"
            ) from err
        with zipfile.ZipFile(archive) as zipped:
            members = {
                PurePosixPath(n).name: n
                for n in zipped.namelist()
                if PurePosixPath(n).parent.name == TANP_FOLDER
            }
            for name in TANP_MD5:
                if name not in members:
                    raise DataError(f"{TANP_ZIP_URL}: no {TANP_FOLDER}/{name} in the zip")
                (root / name).write_bytes(zipped.read(members[name]))
        bad = [
            name for name, status in verify_files(root, TANP_MD5, "md5").items() if status != "ok"
        ]
        if bad:
            raise DataError(f"{TANP_ZIP_URL}: {', '.join(bad)} do not match their md5")
        return root
