"""Dataset files on disk: where each one is (plain or gzipped), reading it, and checking or
downloading it against a digest of its uncompressed bytes (sha256, md5, ...). The loaders'
dataset modules (:mod:`metarec.datasets`) name their files, digests and URLs."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Literal

from metarec.errors import DataError

# A file's verdict when verified.
FileStatus = Literal["ok", "missing", "unreadable", "checksum mismatch"]

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


def require_files(root: Path, names: Iterable[str], what: str, hint: str) -> dict[str, Path]:
    """Path of every file in ``names`` (plain or ``.gz``); all missing ones are reported at
    once, with ``hint`` (how to get them)."""
    found = {name: locate(root, name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        tried = "; ".join(f"{root / n} or {root / n}.gz" for n in missing)
        raise DataError(f"{what} file(s) not found: {', '.join(missing)} (tried {tried}); {hint}")
    return {name: path for name, path in found.items() if path is not None}


def file_digest(path: Path, algorithm: str = "sha256") -> str | None:
    """Hex digest (``hashlib`` name) of the uncompressed content, or None when the file
    cannot be read."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    try:
        with _open_binary(path) as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return digest.hexdigest()


def verify_files(
    root: str | Path, digests: dict[str, str], algorithm: str
) -> dict[str, FileStatus]:
    """Check each file of ``digests`` (``{name: hex digest of the uncompressed bytes}``).

    Returns ``{file name: status}`` in ``digests`` order, the status being ``"ok"``,
    ``"missing"`` (neither ``NAME`` nor ``NAME.gz`` in ``root``), ``"unreadable"`` (e.g. a
    corrupt gzip) or ``"checksum mismatch"``.
    """
    root = Path(root)
    report: dict[str, FileStatus] = {}
    for name, expected in digests.items():
        path = locate(root, name)
        actual = file_digest(path, algorithm) if path is not None else None
        if path is None:
            report[name] = "missing"
        elif actual != expected:
            report[name] = "checksum mismatch" if actual else "unreadable"
        else:
            report[name] = "ok"
    return report


def download_files(
    root: str | Path, base_url: str, digests: dict[str, str], algorithm: str, what: str
) -> Path:
    """Download each file of ``digests`` into ``root`` from ``base_url + name``, checking its
    digest; files already present (plain or ``.gz``) with the right digest are not fetched
    again. Returns ``root``.

    Raises:
        DataError: a download failed (no network, an HTTP error, a wrong digest); one line
            with the URL and how to point metarec at a local copy of ``what``'s files instead.
    """
    # Imported here so that loading local data never needs pooch.
    import pooch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, digest in digests.items():
        present = locate(root, name)
        if present is not None and file_digest(present, algorithm) == digest:
            continue
        url = base_url + name
        try:
            pooch.retrieve(url=url, known_hash=f"{algorithm}:{digest}", fname=name, path=root)
        # requests' and urllib's errors are OSErrors, a wrong digest a ValueError; anything
        # pooch raises means no file. KeyboardInterrupt is no Exception, so Ctrl-C still stops.
        except Exception as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            raise DataError(
                f"download of {url} failed ({reason}); to use a local copy of {what}'s files, "
                f"pass --root DIR (or set data.root) to the folder holding them"
            ) from err
    return root
