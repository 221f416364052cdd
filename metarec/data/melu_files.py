"""MeLU's files on disk: where each one is (plain or gzipped), reading it, and checking or
downloading it against its sha256. :mod:`metarec.data.melu` parses what these return."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path
from typing import IO, Literal

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

# verify_melu's verdict on one file.
FileStatus = Literal["ok", "missing", "unreadable", "checksum mismatch"]

_DOWNLOAD_HINT = (
    "run `metarec data download melu-ml1m`, or point `data.root` at a folder holding MeLU's files"
)

_HASH_CHUNK = 1 << 20


def _candidates(root: Path, name: str) -> tuple[Path, Path]:
    """Plain first: a user who unpacked a file by hand means that copy to be used."""
    return root / name, root / f"{name}.gz"


def locate(root: Path, name: str) -> Path | None:
    """The file to read for ``name`` (plain or ``.gz``), or None if neither exists."""
    for path in _candidates(root, name):
        if path.is_file():
            return path
    return None


def require_all(root: Path) -> dict[str, Path]:
    """Path of every file in :data:`MELU_SHA256`; all missing ones are reported at once."""
    found = {name: locate(root, name) for name in MELU_SHA256}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        tried = "; ".join(" or ".join(str(p) for p in _candidates(root, n)) for n in missing)
        raise DataError(
            f"MeLU file(s) not found: {', '.join(missing)} (tried {tried}); {_DOWNLOAD_HINT}"
        )
    return {name: path for name, path in found.items() if path is not None}


def _open_binary(path: Path) -> IO[bytes]:
    """Binary stream of the uncompressed content."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_text(path: Path) -> str:
    """Whole file as UTF-8 text; corrupt gzip or bad encoding becomes a DataError."""
    try:
        with _open_binary(path) as fh:
            raw = fh.read()
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path.name}: not valid UTF-8 at byte {err.start}") from err
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path.name}: cannot read ({err})") from err


def _sha256(path: Path) -> str | None:
    """sha256 of the uncompressed content, or None when the file cannot be read."""
    digest = hashlib.sha256()
    try:
        with _open_binary(path) as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def verify_melu(root: str | Path, strict: bool = False) -> dict[str, FileStatus]:
    """Check each file of :data:`MELU_SHA256` against its digest (of the uncompressed bytes).

    Returns ``{file name: status}`` in :data:`MELU_SHA256` order, the status being ``"ok"``,
    ``"missing"`` (neither ``NAME`` nor ``NAME.gz`` in ``root``), ``"unreadable"`` (e.g. a
    corrupt gzip) or ``"checksum mismatch"``. With ``strict=True`` any file not ``"ok"``
    raises a :class:`DataError` listing them.
    """
    root = Path(root)
    report: dict[str, FileStatus] = {}
    problems = []
    for name, expected in MELU_SHA256.items():
        path = locate(root, name)
        actual = _sha256(path) if path is not None else None
        if path is None:
            report[name] = "missing"
            problems.append(f"{name} (missing)")
        elif actual != expected:
            report[name] = "checksum mismatch" if actual else "unreadable"
            problems.append(f"{path.name} (sha256 {actual or 'unreadable'})")
        else:
            report[name] = "ok"
    if strict and problems:
        raise DataError(f"MeLU files in {root} fail verification: {', '.join(problems)}")
    return report


def download_melu(root: str | Path) -> Path:
    """Download MeLU's files into ``root`` from :data:`MELU_BASE_URL`, checking each sha256.

    Files already present (plain or ``.gz``) with the right digest are not fetched again.
    Returns ``root``.

    Raises:
        DataError: a download failed (no network, an HTTP error, a wrong digest); one line
            with the URL and how to point metarec at a local copy instead.
    """
    # Imported here so that loading local data never needs pooch.
    import pooch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, digest in MELU_SHA256.items():
        present = locate(root, name)
        if present is not None and _sha256(present) == digest:
            continue
        url = MELU_BASE_URL + name
        try:
            pooch.retrieve(url=url, known_hash=f"sha256:{digest}", fname=name, path=root)
        # requests' and urllib's errors are OSErrors, a wrong digest a ValueError; anything
        # pooch raises means no file. KeyboardInterrupt is no Exception, so Ctrl-C still stops.
        except Exception as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            raise DataError(
                f"download of {url} failed ({reason}); to use a local copy of MeLU's files, "
                f"pass --root DIR (or set data.root) to the folder holding them"
            ) from err
    return root
