"""MeLU's files: their names, sha256 digests and URL, checked or downloaded by
:mod:`metarec.data.files`; :mod:`metarec.data.melu` parses them."""

from __future__ import annotations

from pathlib import Path

from metarec.data.files import (  # noqa: F401  (the names' old home)
    FileStatus,
    download_files,
    locate,
    read_text,
    verify_files,
)
from metarec.errors import DataError

MELU_BASE_URL = "https://raw.githubusercontent.com/hoyeoplee/MeLU/master/movielens/ml-1m/"

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

_DOWNLOAD_HINT = (
    "run `metarec data download melu-ml1m`, or point `data.root` at a folder holding MeLU's files"
)


def require_all(root: Path) -> dict[str, Path]:
    """Path of every file in :data:`MELU_SHA256`; all missing ones are reported at once."""
    found = {name: locate(root, name) for name in MELU_SHA256}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        tried = "; ".join(f"{root / n} or {root / n}.gz" for n in missing)
        raise DataError(
            f"MeLU file(s) not found: {', '.join(missing)} (tried {tried}); {_DOWNLOAD_HINT}"
        )
    return {name: path for name, path in found.items() if path is not None}


def verify_melu(root: str | Path, strict: bool = False) -> dict[str, FileStatus]:
    """Check each file of :data:`MELU_SHA256` (:func:`metarec.data.files.verify_files`)."""
    return verify_files(root, MELU_SHA256, "sha256", "MeLU", strict)


def download_melu(root: str | Path) -> Path:
    """Download MeLU's files into ``root`` from :data:`MELU_BASE_URL`, checking each sha256
    (:func:`metarec.data.files.download_files`); returns ``root``."""
    return download_files(root, MELU_BASE_URL, MELU_SHA256, "sha256", "MeLU")
