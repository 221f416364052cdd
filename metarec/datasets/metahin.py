"""MetaHIN's DBook and MovieLens (Lu, Fang and Shi, KDD 2020): ``data.name: metahin-dbook``
and ``metahin-ml1m``.

MetaHIN's five published states (``data/dbook`` and ``data/movielens`` of ``rootlu/MetaHIN``,
parsed by :mod:`metarec.data.metahin`) are loaded as they are: ``meta_training`` is the warm
state (meta-training, validation and held-out warm users), ``user_cold_testing``,
``item_cold_testing`` and ``user_and_item_cold_testing`` the new-user, new-item and both-new
scenarios, and ``warm_up`` (10% of the warm ratings, held out) MetaHIN's non-cold-start test,
scenario ``warm_up``: tasks drawn inside those ratings, support and query alike. Tasks are
MeLU's protocol, which MetaHIN's paper follows (users with 13 to 100 ratings in a state, 10
query ratings). Beside MeLU's metrics each run reports the nDCG@5 of MetaHIN's tables, the
standard one and MetaHIN's own variant (:mod:`metarec.metrics.metahin`). Tables stand beside
MetaHIN's Table 2.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from metarec.config.schema import DataConfig
from metarec.data.files import download_files
from metarec.data.metahin import load_dbook, load_movielens
from metarec.data.schema import RecDataset
from metarec.data.source import DataSource, Files
from metarec.registry import DATASETS

# md5 of the *uncompressed* files, so a gzipped local copy verifies against the same digest.
_DBOOK_MD5 = """
meta_training.json bf3f1a32747e171fa68d88fed82ec6c4
meta_training_y.json 28ed6fd99570fc765fd61b7970763d16
warm_up.json cdb0ee151a896877eeb78fe1525d78db
warm_up_y.json d9fe19fb622f55dabf2b2bcc9d4c210c
user_cold_testing.json 37910047518af7683d58b284061d2109
user_cold_testing_y.json 5b342f08de3d783e08fe9e57ff6053ff
item_cold_testing.json fcb6a87ac38d7065415706b1ae4ad045
item_cold_testing_y.json cac757b1b50e8fb1897f88d79cae2b80
user_and_item_cold_testing.json 9601e888e3d358c5c2e142f6c66dde42
user_and_item_cold_testing_y.json e6952c752ac6c7d8ffcc30efae82aa24
original/book_author.dat 6a81a1aa0ee47d556107860cf7a4b67a
original/book_publisher.dat e3ff1511b50b1b928c40c14b943ce1ae
original/book_year.dat 373a24673d0f0f2a83c53483b7970936
original/user_location.dat 8729da0190ffed940ba577128b405c90
"""
_MOVIELENS_MD5 = """
meta_training.json a6c380834f69c0bd9cf96252fca4464e
meta_training_y.json 4bdc3ca62ed0de0c260d54d36fd56f2d
warm_up.json 8a5a5880ed5f71a567af081d10bd8d9f
warm_up_y.json aa5390445ef926d59fb2637036a56d05
user_cold_testing.json b2447a9673bc25eb99da11d7d9696640
user_cold_testing_y.json 0a488d7597910c43de2f9229257f7370
item_cold_testing.json d95335997b2e95a7e347d230600b5e04
item_cold_testing_y.json 50e067aa51b3dfb6b457be0608b5e30a
user_and_item_cold_testing.json 6841917f9cf01f09b56aa1e20aa7ec09
user_and_item_cold_testing_y.json a51fb99cab789451d07e3a5e8452d6c8
movie_actor.json eaaa6154067f2cb11c109eab6667395d
movie_director.json e77ec6ea57baa04d99709db6d6a27f91
original/users.dat 681c0711d0d4548cd3d4718a49c2dcd8
original/movies_extrainfos.dat a7a0e11c3b4d7f5216d91295488c2a84
original/m_actor.txt d306b910772306f11c8b2fca99429ac5
original/m_director.txt ddd1acf5c3e8476db4b63400f8761fa4
original/m_age.txt 2a8e5a58d40ec669678d763ca8e9cfd9
original/m_gender.txt 9d01a7198aefb974432938292609d71f
original/m_genre.txt 5b44e730d146b9d2b8a0eb86535f3e4c
original/m_occupation.txt 86bff8d8e6b6d72420504ae639e25049
original/m_rate.txt 96f73db62d8ee0620696051a752fad51
original/m_zipcode.txt 9a98f10683a039af89f953f67d3d602e
"""
ORIGINAL = "original/"  # the upstream folder of the feature files; local copies sit flat
BASE_URL = "https://raw.githubusercontent.com/rootlu/MetaHIN/master/data/"


def _digests(table: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """``{file: md5}`` of a table, and the files upstream keeps under ``original/``."""
    rows = [line.split() for line in table.strip().splitlines()]
    return (
        {path.removeprefix(ORIGINAL): md5 for path, md5 in rows},
        tuple(path.removeprefix(ORIGINAL) for path, _ in rows if path.startswith(ORIGINAL)),
    )


# MetaHIN, Table 2: MAE per scenario (warm-up, user cold, item cold, user and item cold), and
# MetaHIN's RMSE. Its nDCG@5 columns (MetaHIN's variant, ``ndcg@5_metahin``) are not transcribed.
_SCENARIOS = ("warm_up", "new_user", "new_item", "new_user_item")
_TABLE2 = {
    "dbook": {
        "MetaHIN": {
            "mae": (0.6393, 0.6019, 0.6252, 0.6318),
            "rmse": (0.7704, 0.7261, 0.7469, 0.7589),
        },
        "MeLU": {"mae": (0.6519, 0.6353, 0.6518, 0.6517)},
    },
    "movielens": {
        "MetaHIN": {
            "mae": (0.7997, 0.7869, 0.8675, 0.8586),
            "rmse": (0.9491, 0.9593, 1.0462, 1.0286),
        },
        "MeLU": {"mae": (0.8084, 0.8104, 0.9196, 0.9091)},
    },
}


def _paper(dataset: str) -> dict[str, dict[str, dict[str, float]]]:
    """``"<method> (paper)" -> scenario -> metric -> value`` of a dataset's Table 2 rows."""
    return {
        f"{method} (paper)": {
            scenario: {metric: values[column] for metric, values in columns.items()}
            for column, scenario in enumerate(_SCENARIOS)
        }
        for method, columns in _TABLE2[dataset].items()
    }


class MetaHIN(DataSource):
    """What MetaHIN's two datasets share: scoring, paper, warm passes, the download."""

    # Feature files upstream keeps in ``data/<folder>/original/``.
    original: ClassVar[tuple[str, ...]] = ()
    extra_metrics = ("ndcg@5", "ndcg@5_metahin")
    table = ("mae", "rmse", "ndcg@5", "ndcg@5_metahin")  # MetaHIN's Table 2 reports MAE, RMSE
    paper_source = "MetaHIN (Lu, Fang and Shi, KDD 2020), Table 2"
    paper_note = (
        "its warm-up column is MetaHIN's published warm-up test, beside our warm_up rows (our "
        "warm and warm_seen have no paper row); its nDCG@5 is MetaHIN's own variant "
        "(ndcg@5_metahin), not the standard ndcg@5"
    )
    paper_best = "MetaHIN (paper)"
    # One training scores held-out and seen warm users, MetaHIN's warm-up and the cold
    # scenarios. metarec's own warm-up protocol (task.warm=warmup) would repeat the published
    # one on fewer training ratings.
    warm_passes = ("heldout,seen",)

    @classmethod
    def download(cls, root: Path) -> Path:
        """The states (and relations) from ``data/<folder>/``, the features from its
        ``original/``, each checked against its digest."""
        digests, url = cls.files.digests, cls.files.base_url
        upstream = {
            url: [name for name in digests if name not in cls.original],
            url + ORIGINAL: list(cls.original),
        }
        for folder, names in upstream.items():
            wanted = {name: digests[name] for name in names}
            download_files(root, folder, wanted, cls.files.algorithm, cls.name)
        return Path(root)


def _hint(name: str) -> str:
    """How to get a dataset's files, said when some are missing."""
    return (
        f"run `metarec data download {name}`, or point `data.root` at a folder holding "
        "MetaHIN's files"
    )


_DBOOK_DIGESTS, _DBOOK_ORIGINAL = _digests(_DBOOK_MD5)
_MOVIELENS_DIGESTS, _MOVIELENS_ORIGINAL = _digests(_MOVIELENS_MD5)


@DATASETS.register("metahin-dbook")
class MetaHINDBook(MetaHIN):
    """MetaHIN's Douban Book: books with author, publisher and year, users with location."""

    files = Files(_DBOOK_DIGESTS, "md5", BASE_URL + "dbook/")
    original = _DBOOK_ORIGINAL
    paper = _paper("dbook")

    @classmethod
    def load(cls, cfg: DataConfig, root: Path) -> RecDataset:
        return replace(load_dbook(root, cls.name, _hint(cls.name)), source=cls)


@DATASETS.register("metahin-ml1m")
class MetaHINML1M(MetaHIN):
    """MetaHIN's MovieLens-1M: MeLU's users and movies (and item text), the movies' actors and
    directors from MetaHIN's relations."""

    files = Files(_MOVIELENS_DIGESTS, "md5", BASE_URL + "movielens/")
    original = _MOVIELENS_ORIGINAL
    paper = _paper("movielens")

    @classmethod
    def load(cls, cfg: DataConfig, root: Path) -> RecDataset:
        return replace(load_movielens(root, cls.name, _hint(cls.name)), source=cls)
