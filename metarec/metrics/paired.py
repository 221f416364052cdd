"""Intervals and paired tests over tasks and seeds: a two-level (hierarchical) bootstrap.

A result is a list of per-seed arrays of per-task values (a seed fixes the data split, which
users were sampled and which ratings are query, and the training run). One bootstrap replicate
draws the seeds with replacement, then within each drawn seed its tasks with replacement, and
averages; its spread so holds both the tasks' sampling and the seeds' spread. A paired test
runs the same bootstrap on per-task differences between two methods on identical tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 4_000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds of the per-seed task means, and its bootstrap interval."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedTest:
    """Mean per-task difference (a - b), its bootstrap interval and two-sided p-value."""

    diff: float
    low: float
    high: float
    p: float


def _finite(values: list[np.ndarray]) -> list[np.ndarray]:
    kept = [np.asarray(v, dtype=np.float64) for v in values]
    kept = [v[np.isfinite(v)] for v in kept]
    kept = [v for v in kept if len(v)]
    if not kept:
        raise ValueError("no finite per-task values to bootstrap")
    return kept


def bootstrap_means(values: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` replicates of the two-level bootstrap mean (seeds, then tasks in each)."""
    values = _finite(values)
    rng = np.random.default_rng(seed)
    per_seed = np.empty((n_boot, len(values)))
    for column, tasks in enumerate(values):  # each seed's task-resampled means, chunked
        for start in range(0, n_boot, 1000):
            stop = min(start + 1000, n_boot)
            draws = rng.integers(0, len(tasks), size=(stop - start, len(tasks)))
            per_seed[start:stop, column] = tasks[draws].mean(1)
    chosen = rng.integers(0, len(values), size=(n_boot, len(values)))
    return np.take_along_axis(per_seed, chosen, axis=1).mean(1)


def estimate(values: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """The mean and a ``LEVEL`` percentile interval of per-task values over seeds."""
    values = _finite(values)
    replicates = bootstrap_means(values, n_boot, seed)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return Estimate(float(np.mean([v.mean() for v in values])), float(low), float(high))


def paired_test(
    a: list[np.ndarray], b: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0
) -> PairedTest:
    """Paired bootstrap test of ``a`` against ``b``: per seed, the same tasks in the same order.

    The p-value is two-sided: twice the share of replicates on the far side of zero from the
    observed mean difference (at least ``1 / n_boot``; 1 when the difference is 0).
    """
    if len(a) != len(b):
        raise ValueError(f"paired test over {len(a)} seeds against {len(b)}")
    diffs = []
    for seed_a, seed_b in zip(a, b, strict=True):
        seed_a, seed_b = np.asarray(seed_a, np.float64), np.asarray(seed_b, np.float64)
        if seed_a.shape != seed_b.shape:
            raise ValueError(f"paired test over {len(seed_a)} tasks against {len(seed_b)}")
        keep = np.isfinite(seed_a) & np.isfinite(seed_b)
        diffs.append(seed_a[keep] - seed_b[keep])
    replicates = bootstrap_means(diffs, n_boot, seed)
    observed = float(np.mean([d.mean() for d in _finite(diffs)]))
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    if observed == 0:
        return PairedTest(0.0, float(low), float(high), 1.0)
    far = np.mean(replicates <= 0) if observed > 0 else np.mean(replicates >= 0)
    p = min(1.0, max(2 * float(far), 1 / n_boot))
    return PairedTest(observed, float(low), float(high), p)
