"""On-disk cache of text embeddings, so each text is encoded once per model and setting.

One safetensors file per key (model fingerprint, pooling, max_length, normalize) under the
cache folder, named by a hash of the key. It holds ``embeddings`` (N, D) float32 and
``hashes`` (N, 32) uint8, the sha256 of each text, plus in its metadata the key and a sha256
of both tensors' bytes (which a flipped bit in the data changes). A file that does not read
back as exactly that is reported (a ``CacheWarning``) and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor

from metarec.config.text import EncoderConfig
from metarec.encoders import text
from metarec.encoders.device import resolve_device, resolve_dtype
from metarec.errors import ConfigError
from metarec.io import atomic_write_bytes

FORMAT = "1"
DIGEST_SIZE = 32


class CacheWarning(UserWarning):
    """A cache file was unreadable or did not match its key; it is rebuilt."""


def default_cache_dir() -> Path:
    """``$METAREC_CACHE_DIR``, else ``embeddings`` in the user cache folder."""
    if os.environ.get("METAREC_CACHE_DIR"):
        return Path(os.environ["METAREC_CACHE_DIR"]).expanduser()
    import pooch

    return Path(pooch.os_cache("metarec")) / "embeddings"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=16)
def _folder_digest(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over (name, size, content sha256) of the files in ``stamp``, which keys the memo."""
    digest = hashlib.sha256()
    for name, size, _ in stamp:
        digest.update(f"{name}\0{size}\0{_file_sha256(folder / name)}\n".encode())
    return digest.hexdigest()


def model_fingerprint(model: str | Path) -> str:
    """A string that changes when the model does: a content hash of a local folder, else the hub
    name as given.

    The hash covers every file in the folder except hidden ones and ``*.md`` (so weights,
    configs, tokenizer and sentence-transformers module files), by relative name, size and
    content sha256: copying or touching the folder keeps the key. A folder is read once per
    process while its files keep their sizes and modification times.
    """
    source = model if isinstance(model, Path) else text.resolve_model(model)
    if not isinstance(source, Path):
        return source
    if not source.is_dir():
        raise ConfigError(f"encoder.model: model folder {source} does not exist")
    stamp = []
    for path in sorted(source.rglob("*")):
        parts = path.relative_to(source).parts
        if path.is_file() and path.suffix != ".md" and not any(p.startswith(".") for p in parts):
            info = path.stat()
            stamp.append(("/".join(parts), info.st_size, info.st_mtime_ns))
    return "sha256:" + _folder_digest(source, tuple(stamp))


def cache_key(cfg: EncoderConfig) -> str:
    """The settings an embedding depends on, as canonical JSON (the model by content hash)."""
    # The dtype the encoder runs in (auto: bfloat16 on CUDA, float32 elsewhere), so that
    # embeddings made in bfloat16 on a GPU are never reused as float32 ones on a CPU.
    dtype = resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    key = {
        "model": model_fingerprint(cfg.model),
        "dtype": str(dtype).removeprefix("torch."),
        "pooling": cfg.pooling,
        "max_length": cfg.max_length,
        "normalize": cfg.normalize,
    }
    return json.dumps(key, sort_keys=True)


def cache_path(key: str, cache_dir: str | Path | None = None) -> Path:
    """The file that holds the embeddings of ``key``."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"text-{hashlib.sha256(key.encode()).hexdigest()[:32]}.safetensors"


def text_digests(texts: Sequence[str]) -> list[bytes]:
    """sha256 of each text's UTF-8 bytes."""
    return [hashlib.sha256(item.encode("utf-8")).digest() for item in texts]


def _checksum(tensors: dict[str, Tensor]) -> str:
    """sha256 over each tensor's name, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _problem(path: Path, key: str) -> tuple[str | None, list[bytes], Tensor | None]:
    """``(what is wrong or None, digests, embeddings)`` of the cache file at ``path``."""
    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            names = set(handle.keys())
            if names != {"embeddings", "hashes"}:
                return f"holds tensors {sorted(names)}, not embeddings and hashes", [], None
            embeddings = handle.get_tensor("embeddings")
            hashes = handle.get_tensor("hashes")
    except Exception as err:  # truncated, garbage, not safetensors: all mean "rebuild"
        return f"unreadable ({type(err).__name__}: {err})", [], None
    if metadata.get("key") != key or metadata.get("format") != FORMAT:
        return f"written for another key ({metadata.get('key')!r})", [], None
    rows = embeddings.shape[0] if embeddings.ndim == 2 else -1
    if embeddings.dtype != torch.float32 or rows < 0:
        return (
            f"embeddings are {embeddings.dtype} {tuple(embeddings.shape)}, not float32 (N, D)",
            [],
            None,
        )
    if hashes.dtype != torch.uint8 or tuple(hashes.shape) != (rows, DIGEST_SIZE):
        return f"hashes are {hashes.dtype} {tuple(hashes.shape)}, not uint8 ({rows}, 32)", [], None
    if "sha256" not in metadata:
        return "has no checksum of its contents (an older format)", [], None
    if metadata["sha256"] != _checksum({"embeddings": embeddings, "hashes": hashes}):
        return "does not match its checksum (its contents changed on disk)", [], None
    raw = hashes.numpy().tobytes()
    digests = [raw[i : i + DIGEST_SIZE] for i in range(0, len(raw), DIGEST_SIZE)]
    if len(set(digests)) != rows:
        return "has repeated text hashes", [], None
    if not torch.isfinite(embeddings).all():
        return "has non-finite embeddings", [], None
    return None, digests, embeddings


def read_cache(path: Path, key: str) -> tuple[list[bytes], Tensor] | None:
    """The cached ``(digests, embeddings)`` of ``key``, or None when there is no usable file;
    a file that is there but unusable is reported with a ``CacheWarning``."""
    if not path.exists():
        return None
    problem, digests, embeddings = _problem(path, key)
    if problem is not None:
        warnings.warn(
            f"embedding cache {path} {problem}; rebuilding it", CacheWarning, stacklevel=3
        )
        return None
    return digests, embeddings


def write_cache(path: Path, key: str, digests: list[bytes], embeddings: Tensor) -> Path:
    """Write the cache file atomically: a temporary file beside it, then a rename."""
    hashes = torch.frombuffer(bytearray(b"".join(digests)), dtype=torch.uint8)
    tensors = {
        "embeddings": embeddings.to(torch.float32).contiguous(),
        "hashes": hashes.reshape(len(digests), DIGEST_SIZE),
    }
    metadata = {"key": key, "format": FORMAT, "sha256": _checksum(tensors)}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def embed_texts(
    texts: Sequence[str],
    cfg: EncoderConfig,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Tensor:
    """``(N, D)`` float32 embeddings of ``texts`` in order, encoding only texts not cached.

    A text is found by the sha256 of its content, so an edited text is encoded anew. The model
    is loaded only when some text is missing; the file then gains the new rows. ``cache_dir``
    overrides ``cfg.cache_dir`` (default: :func:`default_cache_dir`).
    """
    texts = list(texts)
    key = cache_key(cfg)
    path = cache_path(key, cache_dir if cache_dir is not None else cfg.cache_dir)
    digests, embeddings = read_cache(path, key) or ([], None)
    row_of = {digest: row for row, digest in enumerate(digests)}
    wanted = text_digests(texts)
    missing = {
        digest: item for digest, item in zip(wanted, texts, strict=True) if digest not in row_of
    }
    if missing:
        encoder = text.TextEncoder(cfg)
        new = encoder.encode(list(missing.values()), progress=progress)
        if embeddings is not None and embeddings.shape[1] != new.shape[1]:
            warnings.warn(
                f"embedding cache {path} holds {embeddings.shape[1]}-d vectors, the model gives "
                f"{new.shape[1]}-d; rebuilding it",
                CacheWarning,
                stacklevel=2,
            )
            digests, embeddings, row_of = [], None, {}
            missing = dict(zip(wanted, texts, strict=True))
            new = encoder.encode(list(missing.values()), progress=progress)
        for digest in missing:
            row_of[digest] = len(digests)
            digests.append(digest)
        embeddings = new if embeddings is None else torch.cat([embeddings, new])
        write_cache(path, key, digests, embeddings)
    if embeddings is None:  # no texts and no cache: nothing to say about the width
        return torch.empty(0, 0)
    return embeddings[[row_of[digest] for digest in wanted]]
