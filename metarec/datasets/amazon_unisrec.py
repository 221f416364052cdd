"""Amazon Scientific in UniSRec's format (``data.name: amazon-unisrec``): implicit next-item
tasks with item text (the files: :mod:`metarec.data.amazon`; the tasks:
:mod:`metarec.data.implicit`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from metarec.config.domain import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, setting
from metarec.config.schema import DataConfig, TaskConfig
from metarec.data.amazon import load_amazon
from metarec.data.implicit import implicit_tasks
from metarec.data.schema import RecDataset
from metarec.data.source import DataSource, Files
from metarec.registry import DATASETS

# ysh-1998/CoWPiRec ("We provide a preprocessed dataset of Scientific dataset"), pinned.
AMAZON_BASE_URL = (
    "https://raw.githubusercontent.com/ysh-1998/CoWPiRec/"
    "db47560c2364650d22afc77080717287daec5079/dataset/Scientific/"
)
# md5 of the *uncompressed* files, so a gzipped local copy verifies against the same digest.
AMAZON_MD5: dict[str, str] = {
    "Scientific.text": "f2c265ddea0baad6d44e218aa72cfd94",
    "Scientific.item2index": "d286a1a7855f4e148809a6d3f7ab9fc4",
    "Scientific.user2index": "6c44eb72c2e3cbc1b001e78a6486088e",
    "Scientific.train.inter": "2ee2c54fc4d68b8dc5589cb6800704d8",
    "Scientific.valid.inter": "c24e8406e74ef5e213d086bf850e7e85",
    "Scientific.test.inter": "9c9624c6737855f40d90f2fb21f17f3a",
}


@dataclass
class AmazonConfig:
    """UniSRec-format Amazon sequences (``data.name: amazon-unisrec``) and the implicit
    next-item tasks made of them (see ``metarec/data/implicit.py``); data.query_size,
    min_ratings and max_ratings do not apply, data.val_fraction and test_fraction do."""

    domain: str = setting(
        "Scientific",
        "file prefix in data.root: <domain>.text, .item2index, .user2index, .train.inter, "
        ".valid.inter, .test.inter (plain or .gz); the download fetches Scientific",
    )
    new_item_fraction: float = setting(
        0.1,
        "share of items drawn (seeded by data.seed) as new: in no meta-training task",
        domain=FRACTION,
    )
    negatives: int = setting(
        99,
        "sampled negatives beside the next item in each validation and test query",
        domain=AT_LEAST_ONE,
    )
    train_negatives: int = setting(
        4,
        "sampled negatives beside the next item in each meta-training query (NCF's 4)",
        domain=AT_LEAST_ONE,
    )
    max_history: int = setting(
        50,
        "most recent items of a user's history kept in a support set (UniSRec's cap)",
        domain=AT_LEAST_ONE,
    )
    max_eval_tasks: int = setting(
        0,
        "at most this many validation tasks and tasks per test scenario, a seeded sample of "
        "them (the same for every learner); 0 keeps all. For CPU budgets of text-encoder runs",
        domain=NON_NEGATIVE,
    )


@dataclass
class AmazonSettings(DataConfig):
    amazon: AmazonConfig = field(default_factory=AmazonConfig)


@DATASETS.register("amazon-unisrec")
class AmazonUniSRec(DataSource):
    """UniSRec's Amazon Scientific sequences (``data.amazon``): the next item among sampled
    negatives (or every item), 10% of items new."""

    Settings = AmazonSettings
    files = Files(AMAZON_MD5, "md5", AMAZON_BASE_URL)
    scoring = "ranking"
    scenarios = ("warm", "warm_warmup", "new_item")

    @classmethod
    def load(cls, cfg: AmazonSettings, root: Path) -> RecDataset:
        return replace(load_amazon(root, cls.name, cfg.amazon.domain), source=cls)

    @classmethod
    def tasks(cls, dataset: RecDataset, cfg: AmazonSettings, task: TaskConfig):
        return implicit_tasks(dataset, cfg, task, cfg.amazon)
