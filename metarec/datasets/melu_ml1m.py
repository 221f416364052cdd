"""MeLU's MovieLens-1M (Lee et al., KDD 2019): ``data.name: melu-ml1m``.

MeLU's processed files (``movielens/ml-1m/`` of ``hoyeoplee/MeLU``; the format is parsed by
:mod:`metarec.data.melu`): the four rating states as MeLU published them, items with rate,
genres, directors and actors, users with gender, age, occupation and zip code. Tables stand
beside MeLU's Table 2.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from metarec.config.schema import DataConfig
from metarec.data.melu import load_melu
from metarec.data.schema import RecDataset
from metarec.data.source import DataSource, Files
from metarec.registry import DATASETS

# sha256 of the *uncompressed* files, so a gzipped local copy verifies against the same digest.
_SHA256_TABLE = """
warm_state.json 036be249428c8fe9e212def927eb3ad60de8ddd054989e75f54e7ab2291da525
warm_state_y.json 4ad7829ea3d8a4d58ca8c96a4f368c5c7eab6b8ed85430f2516ab3cd79b5dff2
user_cold_state.json ec7414e1da3b1636d34f0f3a5615e2a07bea9b82156123768049cc166ed20df1
user_cold_state_y.json 62b84d073377c183cabfa0b78cb4e745f763b0713920033edf0bbbc43e1dca11
item_cold_state.json 1cb691e39e9f64a12922f1c8da2bf8b9c07f885decc4dd4ee5aea0e5bbcc46a1
item_cold_state_y.json b9325e4b056cda7d2834f17c33c4ec34ee6516142c8b51e50103f80d2b0793bf
user_and_item_cold_state.json 9045ceae16fbc0ca0a160b3ce96bedf97d304d04328755c9fadc9a4ba55450f0
user_and_item_cold_state_y.json 5bc5057b32224d91fa1f8161f242db72b186afc1c51b571f5aab3c3e93cf0e90
movies_extrainfos.dat 18432b1713b66a5262c11f6d929801a6e6f414d861cd2adf191dfba61e45c74d
users.dat 1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3
"""
# A table rather than a dict literal: the longest name plus digest does not fit on one line.
MELU_SHA256: dict[str, str] = dict(line.split() for line in _SHA256_TABLE.strip().splitlines())
MELU_BASE_URL = "https://raw.githubusercontent.com/hoyeoplee/MeLU/master/movielens/ml-1m/"

# MeLU, Table 2, MovieLens-1M: MAE / nDCG@1 / nDCG@3 per scenario.
_TABLE2 = {
    "PPR": {"warm": (0.1820, 0.9796, 0.9831), "new_user": (1.0748, 0.8299, 0.8468),
            "new_item": (1.2441, 0.7289, 0.7632), "new_user_item": (1.2596, 0.7292, 0.7634)},
    "Wide&Deep": {"warm": (0.9047, 0.9090, 0.9117), "new_user": (1.0694, 0.8559, 0.8639),
                  "new_item": (1.2655, 0.7420, 0.7721), "new_user_item": (1.3114, 0.7680, 0.7874)},
    "MeLU-1": {"warm": (0.7661, 0.8866, 0.8904), "new_user": (0.7884, 0.8799, 0.8810),
               "new_item": (0.9361, 0.7715, 0.7990), "new_user_item": (0.9299, 0.7760, 0.8011)},
    "MeLU-5": {"warm": (0.7567, 0.8870, 0.8919), "new_user": (0.7854, 0.8803, 0.8812),
               "new_item": (0.9275, 0.7697, 0.8005), "new_user_item": (0.9235, 0.7752, 0.8008)},
}  # fmt: skip


@DATASETS.register("melu-ml1m")
class MeluML1M(DataSource):
    """MeLU's MovieLens-1M states, features and item texts (``metarec data download``)."""

    files = Files(MELU_SHA256, "sha256", MELU_BASE_URL)
    paper = {
        f"{method} (paper)": {
            scenario: dict(zip(("mae", "ndcg@1", "ndcg@3"), values, strict=True))
            for scenario, values in rows.items()
        }
        for method, rows in _TABLE2.items()
    }
    paper_source = "MeLU (Lee et al., KDD 2019), Table 2"
    paper_note = (
        "its warm rows are scored on the training users (in-sample), so they stand beside our "
        "seen-users rows (warm_seen), not beside held-out warm users (warm)"
    )
    paper_best = "MeLU-5 (paper)"
    goal = 0.70

    @classmethod
    def load(cls, cfg: DataConfig, root: Path) -> RecDataset:
        hint = (
            "run `metarec data download melu-ml1m`, or point `data.root` at a folder holding "
            "MeLU's files"
        )
        return replace(load_melu(root, cls.name, hint), source=cls)
