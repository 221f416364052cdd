"""Intervals and paired tests over tasks and seeds: a two-level (hierarchical) bootstrap.

A result is a list of per-seed arrays of per-task values (a seed fixes the data split, which
users were sampled and which ratings are query, and the training run). One bootstrap replicate
draws the seeds with replacement, then within each drawn seed its tasks with replacement, and
averages; its spread so holds both the tasks' sampling and the seeds' spread. A paired test
runs the same bootstrap on per-task differences between two methods on identical tasks.

The resampling, interval and p-value helpers here serve every bootstrap in metarec, including
the pooled AUC's (:mod:`metarec.metrics.pooled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BOOT = 4_000
LEVEL = 0.95
CHUNK = 1_000  # replicates drawn at once: bounds memory at CHUNK x units per draw


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


def resample_indices(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, n)`` indices: ``size`` resamples with replacement of ``n`` units."""
    return rng.integers(0, n, size=(size, n))


def resample_counts(
    n: int, groups: np.ndarray | None, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``(size, n)`` multiplicities of ``size`` resamples with replacement of ``n`` units, or of
    whole groups (``groups``: each unit's group; a unit then counts as often as its group was
    drawn): the form a weighted statistic such as the AUC takes."""
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=size)
    names, group_of = np.unique(groups, return_inverse=True)
    counts = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=size)
    return counts[:, group_of]


def over_seeds(per_seed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The second level: replicate ``r`` averages a resample of the seeds of ``per_seed[r]``
    (``(n_boot, n_seeds)``, each seed's replicates of the first level), NaNs left out."""
    n_boot, n_seeds = per_seed.shape
    chosen = resample_indices(n_seeds, n_boot, rng)
    return np.nanmean(np.take_along_axis(per_seed, chosen, axis=1), axis=1)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The ``LEVEL`` percentile interval of bootstrap replicates (NaN replicates left out)."""
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def two_sided_p(observed: float, replicates: np.ndarray) -> float:
    """Twice the share of replicates on the far side of zero from the observed difference, at
    least ``1 / len(replicates)``; 1 when the difference is 0."""
    if observed == 0:
        return 1.0
    far = np.mean(replicates <= 0) if observed > 0 else np.mean(replicates >= 0)
    return min(1.0, max(2 * float(far), 1 / len(replicates)))


def paired_result(observed: float, replicates: np.ndarray) -> PairedTest:
    """A paired test from the observed difference and its bootstrap replicates."""
    low, high = percentile_interval(replicates)
    # `or`: a difference of -0.0 is reported as 0.0
    return PairedTest(observed or 0.0, low, high, two_sided_p(observed, replicates))


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
        for start in range(0, n_boot, CHUNK):
            stop = min(start + CHUNK, n_boot)
            draws = resample_indices(len(tasks), stop - start, rng)
            per_seed[start:stop, column] = tasks[draws].mean(1)
    return over_seeds(per_seed, rng)


def estimate(values: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """The mean and a ``LEVEL`` percentile interval of per-task values over seeds."""
    values = _finite(values)
    low, high = percentile_interval(bootstrap_means(values, n_boot, seed))
    return Estimate(float(np.mean([v.mean() for v in values])), low, high)


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
    return paired_result(observed, replicates)
