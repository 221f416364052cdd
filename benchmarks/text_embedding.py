"""Text embedding speed: metarec's TextEncoder against sentence-transformers, same model and texts.

    python benchmarks/text_embedding.py --root ../shared/data/melu-ml1m --repeat 2
    python benchmarks/text_embedding.py --limit 500

Embeds the MeLU ML-1M item texts with ``TextEncoder.encode`` and with sentence-transformers'
``SentenceTransformer.encode`` (its defaults: batch 32, max length 256 from the model folder,
plus ``normalize_embeddings``) in one process, on the same torch thread count, after a
warm-up on a few texts; rounds alternate which encoder runs first and each reports its best
round. Then the cosine of every pair of embeddings, and the time of ``embed_texts`` once its
cache is filled (in a temp folder; the model must not be loaded). Writes ``--out`` atomically.

The machine may be shared: ``other_cpu_cores`` is the CPU that other processes used during a
round (Linux), and a warning is printed when that could have skewed the times.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from metarec.config.schema import DataConfig
from metarec.config.text import EncoderConfig
from metarec.datasets.melu_ml1m import MeluML1M
from metarec.encoders import text
from metarec.encoders.cache import embed_texts
from metarec.io import atomic_write_json

WARMUP_TEXTS = 16
BUSY_CORES = 0.2  # other processes' CPU use above which a round is flagged as disturbed


def _busy_ticks() -> int | None:
    """CPU ticks spent by the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except OSError:
        return None
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


def timed(run) -> tuple[float, float | None, object]:
    """``(seconds, cores other processes used meanwhile, result)`` of ``run()``."""
    busy, mine = _busy_ticks(), time.process_time()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    if busy is None:
        return seconds, None, result
    machine = (_busy_ticks() - busy) / os.sysconf("SC_CLK_TCK")
    other = max(machine - (time.process_time() - mine), 0.0) / seconds
    return seconds, round(other, 2), result


@contextmanager
def model_loading_forbidden():
    """Any model load inside the block fails: the cached call must not need one."""
    original = text.load_text_model

    def refuse(*args, **kwargs):
        raise RuntimeError("the cached embed_texts call loaded the model")

    text.load_text_model = refuse
    try:
        yield
    finally:
        text.load_text_model = original


def compare(texts: list[str], cfg: EncoderConfig, repeat: int) -> dict:
    """Both encoders on ``texts``: best seconds, items/s, and how close their vectors are."""
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    encoder = text.TextEncoder(cfg)
    ours_load = time.perf_counter() - start
    start = time.perf_counter()
    folder = str(text.resolve_model(cfg.model))
    reference = SentenceTransformer(folder, device=str(encoder.device))
    reference.max_seq_length = cfg.max_length
    theirs_load = time.perf_counter() - start

    runs = {
        "metarec": lambda: encoder.encode(texts, progress=False),
        "sentence_transformers": lambda: torch.as_tensor(
            reference.encode(texts, normalize_embeddings=cfg.normalize)
        ),
    }
    # warm-up: first-call allocations, lazy imports, thread pools
    encoder.encode(texts[:WARMUP_TEXTS], progress=False)
    reference.encode(texts[:WARMUP_TEXTS])

    rounds: dict[str, list[dict]] = {name: [] for name in runs}
    vectors = {}
    for index in range(repeat):
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        for name in order:
            seconds, other, vectors[name] = timed(runs[name])
            rounds[name].append({"seconds": round(seconds, 3), "other_cpu_cores": other})
            print(f"round {index + 1} {name}: {seconds:.2f} s ({len(texts) / seconds:.1f} items/s)")
    cosine = (vectors["metarec"] * vectors["sentence_transformers"]).sum(dim=1)
    result = {}
    for name, loaded in (("metarec", ours_load), ("sentence_transformers", theirs_load)):
        best = min(entry["seconds"] for entry in rounds[name])
        result[name] = {
            "best_seconds": best,
            "items_per_s": round(len(texts) / best, 2),
            "load_seconds": round(loaded, 2),
            "rounds": rounds[name],
        }
    result["ratio"] = round(
        result["metarec"]["items_per_s"] / result["sentence_transformers"]["items_per_s"], 3
    )
    result["cosine_min"] = round(cosine.min().item(), 6)
    result["cosine_mean"] = round(cosine.mean().item(), 6)
    result["settings"] = {
        "device": str(encoder.device),
        "dtype": str(encoder.dtype).removeprefix("torch."),
        "metarec_batch_size": cfg.batch_size,
        "metarec_token_budget": encoder.token_budget,
        "sentence_transformers_batch_size": 32,
        "max_length": cfg.max_length,
        "tokens": sum(len(ids) for ids in text.token_ids(encoder.tokenizer, texts, cfg.max_length)),
    }
    return result


def cached_rerun(texts: list[str], cfg: EncoderConfig) -> dict:
    """Seconds of ``embed_texts`` filling an empty cache, then reading it back (no model)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        fill, _, filled = timed(lambda: embed_texts(texts, cfg, cache_dir, progress=False))
        with model_loading_forbidden():
            cached, _, again = timed(lambda: embed_texts(texts, cfg, cache_dir, progress=False))
        same = torch.equal(filled, again)
    print(f"embed_texts: filling the cache {fill:.2f} s, cached re-run {cached:.3f} s")
    return {
        "fill_seconds": round(fill, 2),
        "cached_seconds": round(cached, 3),
        "model_loaded": False,
        "same_vectors": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path("../shared/data/melu-ml1m"), help="MeLU ML-1M data folder"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results/bench/text_embedding.json"), help="JSON report"
    )
    parser.add_argument("--limit", type=int, help="embed only the first N item texts")
    parser.add_argument(
        "--repeat", type=int, default=1, help="timed rounds per encoder; the best counts"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch CPU threads, both encoders",
    )
    parser.add_argument("--model", default=EncoderConfig.model, help="encoder.model")
    parser.add_argument("--device", default="auto", help="encoder.device (both encoders)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="encoder.dtype (metarec only; sentence-transformers keeps its float32)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    texts = list(MeluML1M.load(DataConfig(name="melu-ml1m"), Path(args.root)).item_text.values())[
        : args.limit
    ]
    cfg = EncoderConfig(model=args.model, device=args.device, dtype=args.dtype)
    print(f"{len(texts)} item texts, {args.threads} threads, model {cfg.model}")
    result = {
        "n_texts": len(texts),
        "threads": args.threads,
        "model": cfg.model,
        **compare(texts, cfg, args.repeat),
    }
    result["cache"] = cached_rerun(texts, cfg)
    result["versions"] = _versions()
    ours, theirs = result["metarec"], result["sentence_transformers"]
    print(
        f"metarec {ours['items_per_s']:.1f} items/s, sentence-transformers "
        f"{theirs['items_per_s']:.1f} items/s: ratio {result['ratio']:.2f}; "
        f"cosine min {result['cosine_min']:.6f}; "
        f"cached re-run {result['cache']['cached_seconds']:.3f} s"
    )
    busy = [
        entry["other_cpu_cores"]
        for name in ("metarec", "sentence_transformers")
        for entry in result[name]["rounds"]
        if entry["other_cpu_cores"]
    ]
    if busy and max(busy) > BUSY_CORES:
        print(
            f"warning: other processes used up to {max(busy):.2f} CPU cores during the timed "
            "rounds; the times (and the ratio) are not reliable on a busy machine"
        )
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


def _versions() -> dict:
    import sentence_transformers
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
