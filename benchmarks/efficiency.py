"""How the speed benchmarks time their sides, and how much of the machine a side uses.

    python benchmarks/efficiency.py results/bench/meta_training.json results/bench/serving.json

``time_rounds`` times sides in one process, alternating their order; ``by_threads`` repeats a
measurement per torch thread count. A side's efficiency is its achieved GFLOP/s (the FLOPs
of its timed work, counted once by ``torch.utils.flop_counter.FlopCounterMode``, over its best
time) and that rate's share of a large float32 matmul's (``sgemm_gflops``), measured in the
same process at the same thread count right before the side is timed. FlopCounterMode counts
matrix products only (elementwise work, gathers and padding moves are free to it), so the
share says how close a side comes to spending all its time multiplying matrices.

Run as a script it prints the two benchmarks' JSON reports side by side, one row per thread
count (``make bench`` does, after running both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from metarec.io import atomic_write_json
from metarec.learners.base import adam

DEFAULT_ROOT = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "melu-ml1m")

# The reference matmul: (SGEMM_SIZE x SGEMM_SIZE) @ (SGEMM_SIZE x SGEMM_SIZE) in float32.
SGEMM_SIZE = 1024


def time_rounds(
    sides: dict[str, Callable[[], object]], repeat: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each side's ``run()`` per round, sides alternating order round by round,
    after ``warmup`` untimed rounds; every side is run in the same process."""
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeat):
        for name in names if round_index % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sides[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def meta_step_runner(
    loss_fn: Callable[[object], torch.Tensor], module: nn.Module, batches: list, outer_lr: float
) -> Callable[[], None]:
    """Runs one meta-step (loss, backward, Adam step) of ``module`` per batch of ``batches``;
    every side the same Adam, the one metarec's learners train with (``learners.base.adam``)."""
    optimizer = adam(module.parameters(), outer_lr)

    def run() -> None:
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(batch).backward()
            optimizer.step()

    return run


def thread_counts() -> list[int]:
    """1 thread, and every core of this machine: batching has parallel work to give the
    cores that one small per-task operation after another has not."""
    return sorted({1, os.cpu_count() or 1})


def by_threads(counts: Sequence[int], measure: Callable[[], dict]) -> dict[str, dict]:
    """``measure()`` run with each of ``counts`` torch CPU threads, by thread count."""
    results = {}
    for count in counts:
        torch.set_num_threads(count)
        print(f"-- {count} thread(s)")
        results[str(count)] = measure()
    return results


def sgemm_gflops(size: int = SGEMM_SIZE, repeat: int = 5) -> float:
    """GFLOP/s of a float32 ``size``-cubed matmul at the current torch thread count, the best
    of ``repeat`` after one warm-up (2 size^3 FLOPs each)."""
    generator = torch.Generator().manual_seed(0)
    left = torch.randn(size, size, generator=generator)
    right = torch.randn(size, size, generator=generator)
    torch.mm(left, right)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        torch.mm(left, right)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of one ``run()``, as ``FlopCounterMode`` counts them (matrix products)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def achieved(flops: float, seconds: float, sgemm: float) -> dict[str, float]:
    """The achieved rate of ``flops`` done in ``seconds``, and its share of ``sgemm`` GFLOP/s."""
    achieved = flops / seconds / 1e9
    return {"gflop_per_s": achieved, "sgemm_gflop_per_s": sgemm, "share_of_sgemm": achieved / sgemm}


def describe(rate: dict[str, float]) -> str:
    """``achieved``'s numbers as one line."""
    return (
        f"{rate['gflop_per_s']:.1f} GFLOP/s, {rate['share_of_sgemm']:.1%} of sgemm "
        f"({rate['sgemm_gflop_per_s']:.0f} GFLOP/s, {SGEMM_SIZE}^3 float32)"
    )


def bench_parser(description: str, out: str, threads: bool = True) -> argparse.ArgumentParser:
    """The options every speed benchmark here takes: data, overrides, rounds, threads (a list
    of counts to time, unless ``threads`` is false: the caller's own option), out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--root", default=DEFAULT_ROOT, help="MeLU ML-1M data folder")
    parser.add_argument("--synthetic", action="store_true", help="the built-in synthetic data")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. learner.inner_steps=3")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds; the best counts")
    if threads:
        parser.add_argument("--threads", type=int, nargs="+", default=thread_counts(),
                            help="torch CPU thread counts, each timed in turn "
                                 "(default: 1 and every core)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(out), help="JSON report")
    return parser


def write_report(out: Path, result: dict) -> dict:
    """``result`` with the library versions, written atomically to ``out``."""
    result = {**result, "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.machine()}  # fmt: skip
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


def _cell(table: dict, *keys: str, fmt: str = "{:.1f}") -> str:
    for key in keys:
        if not isinstance(table, dict) or key not in table:
            return "-"
        table = table[key]
    return fmt.format(table)


def _rate_cells(report: dict) -> list[str]:
    return [
        _cell(report, "efficiency", "gflop_per_s"),
        _cell(report, "efficiency", "share_of_sgemm", fmt="{:.1%}"),
    ]


SIDES = ("metarec", "loop", "learn2learn")


def summary(meta_training: dict, serving: dict) -> str:
    """The two benchmarks' reports side by side: per thread count, meta-training tasks/s of
    each side and metarec's ratios, its GFLOP/s and share of sgemm; serving users/s, same."""
    head = (
        "threads | tasks/s metarec | loop | learn2learn | metarec/loop | metarec/learn2learn "
        "| GFLOP/s | share of sgemm | serving users/s | serving GFLOP/s | share of sgemm"
    )
    rows = [head, "|".join("---" for _ in head.split("|"))]
    counts = sorted({*meta_training.get("by_threads", {}), *serving.get("by_threads", {})}, key=int)
    for count in counts:
        train = meta_training.get("by_threads", {}).get(count, {})
        serve = serving.get("by_threads", {}).get(count, {})
        cells = [count, *(_cell(train, "tasks_per_second", side) for side in SIDES)]
        cells += [_cell(train, "ratios", f"metarec/{side}", fmt="{:.2f}x") for side in SIDES[1:]]
        cells += [*_rate_cells(train), _cell(serve, "users_per_second", "metarec")]
        cells += _rate_cells(serve)
        rows.append(" | ".join(cells))
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> str:
    paths = list(sys.argv[1:] if argv is None else argv)
    if len(paths) != 2:
        raise SystemExit("usage: efficiency.py META_TRAINING_JSON SERVING_JSON")
    reports = [json.loads(Path(path).read_text()) for path in paths]
    text = summary(*reports)
    print(text)
    return text


if __name__ == "__main__":
    main()
