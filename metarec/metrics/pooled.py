"""AUC pooled over every query of a scenario, with bootstrap intervals over samples and seeds.

For tasks with a single query (TALLRec's samples, ``metarec/data/tallrec.py``) a per-task AUC
is undefined; the AUC is that of all the scenario's (score, label) pairs at once, as TALLRec
computes it (``roc_auc_score`` over its test set). Ties in scores count half, as everywhere in
metarec (:mod:`metarec.metrics.binary`); a pool without both classes has a NaN AUC.

Intervals are a two-level bootstrap as in :mod:`metarec.metrics.paired`, the statistic being the
pooled AUC rather than a mean: one replicate draws the seeds with replacement, then within each
drawn seed its samples (or, with ``groups``, whole groups such as users, whose samples are not
independent) with replacement, recomputes each seed's AUC on the draw and averages them. A
resample is a vector of multiplicities, so every replicate's AUC comes from one sort.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from metarec.metrics.paired import LEVEL, N_BOOT, Estimate, PairedTest

_CHUNK = 1000  # replicates drawn at once: bounds memory at _CHUNK x samples weights


def _real(scores, labels, mask=None) -> tuple[Tensor, Tensor]:
    """Float64 scores and 0/1 labels of the real entries, checked."""
    scores = torch.as_tensor(scores).detach().cpu().to(torch.float64)
    labels = torch.as_tensor(labels).detach().cpu()
    if scores.shape != labels.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and labels {tuple(labels.shape)} differ")
    if mask is not None:
        mask = torch.as_tensor(mask).detach().cpu()
        if mask.shape != scores.shape or mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(scores.shape)}")
        scores, labels = scores[mask], labels[mask]
    scores, labels = scores.flatten(), labels.flatten()
    if not torch.isfinite(scores).all():
        raise ValueError("scores must be finite")
    if not ((labels == 0) | (labels == 1)).all():
        raise ValueError("labels must be 0 or 1")
    return scores, labels.to(torch.long)


def pooled_auc(scores, labels, mask=None) -> float:
    """ROC AUC of all (score, label) pairs at once (the real entries of padded ``(T, Q)``
    tensors when ``mask`` is given); NaN without both a positive and a negative."""
    scores, labels = _real(scores, labels, mask)
    if labels.numel() == 0 or labels.min() == labels.max():
        return float("nan")
    # Dense ranks in [0, 1]: the same AUC, and torchmetrics applies no sigmoid (which could
    # tie large logits) to scores already in [0, 1].
    levels, rank = torch.unique(scores, return_inverse=True)
    unit = rank.to(torch.float64) / max(len(levels) - 1, 1)
    return float(binary_auroc(unit, labels))


def _weighted_aucs(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of each row of multiplicities ``weights`` (R, n) over the same samples: with the
    samples grouped by equal score, positives count the negatives below plus half those tied."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    positive = labels[order] == 1
    weighted = weights[:, order].astype(np.float64)
    pos = np.add.reduceat(np.where(positive, weighted, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(positive, 0.0, weighted), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(1) * neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(1) / pairs, np.nan)


def _draws(n: int, groups: np.ndarray | None, size: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicities (size, n) of ``size`` resamples with replacement of the samples, or of
    whole groups (each sample then counted as often as its group was drawn)."""
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=size)
    names, group_of = np.unique(groups, return_inverse=True)
    counts = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=size)
    return counts[:, group_of]


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = _real(scores, labels)
    return scores.numpy(), labels.numpy()


def _per_seed_replicates(
    seeds: list[tuple[np.ndarray, list[np.ndarray], np.ndarray | None]],
    n_boot: int,
    rng: np.random.Generator,
    shared: bool,
) -> np.ndarray:
    """(n_boot, n_methods, n_seeds) replicate AUCs; every method of a seed is scored on the
    same resamples, and with ``shared`` every seed too (``seeds``: per seed, labels, each
    method's scores, groups)."""
    if shared:
        first_labels, _, first_groups = seeds[0]
        for labels, _, groups in seeds[1:]:
            same_groups = (groups is None) == (first_groups is None) and (
                groups is None or np.array_equal(groups, first_groups)
            )
            if not (np.array_equal(labels, first_labels) and same_groups):
                raise ValueError("shared=True: the seeds' test samples (labels, groups) differ")
    n_methods = len(seeds[0][1])
    out = np.empty((n_boot, n_methods, len(seeds)))
    for start in range(0, n_boot, _CHUNK):
        stop = min(start + _CHUNK, n_boot)
        weights = None
        for column, (labels, method_scores, groups) in enumerate(seeds):
            if weights is None or not shared:
                weights = _draws(len(labels), groups, stop - start, rng)
            for method, scores in enumerate(method_scores):
                out[start:stop, method, column] = _weighted_aucs(scores, labels, weights)
    return out


def _over_seeds(per_seed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Second level: each replicate averages a draw (with replacement) of the seeds."""
    n_boot, n_seeds = per_seed.shape
    chosen = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    return np.nanmean(np.take_along_axis(per_seed, chosen, axis=1), axis=1)


def _groups_of(groups, n_seeds: int) -> list[np.ndarray | None]:
    if groups is None:
        return [None] * n_seeds
    if len(groups) != n_seeds:
        raise ValueError(f"groups for {len(groups)} seeds, scores for {n_seeds}")
    return [np.asarray(g) for g in groups]


def pooled_auc_estimate(
    scores: Sequence,
    labels: Sequence,
    groups: Sequence | None = None,
    shared: bool = False,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Estimate:
    """Mean over seeds of each seed's pooled AUC, and its ``LEVEL`` two-level bootstrap
    interval. ``scores[s]``, ``labels[s]`` (and ``groups[s]``, e.g. each sample's user, to
    resample whole users) are seed ``s``'s test samples. ``shared``: every seed scores the same
    test samples in the same order (a fixed test set, as TALLRec's), so one resample of them
    serves every seed of a replicate; otherwise each seed's are resampled on their own, which
    would narrow the interval of a fixed test set by counting it once per seed."""
    if len(scores) != len(labels) or not len(scores):
        raise ValueError(f"scores for {len(scores)} seeds, labels for {len(labels)}")
    rng = np.random.default_rng(seed)
    seeds, points = [], []
    for seed_scores, seed_labels, seed_groups in zip(
        scores, labels, _groups_of(groups, len(scores)), strict=True
    ):
        seed_scores, seed_labels = _as_arrays(seed_scores, seed_labels)
        seeds.append((seed_labels, [seed_scores], seed_groups))
        points.append(pooled_auc(seed_scores, seed_labels))
    replicates = _over_seeds(_per_seed_replicates(seeds, n_boot, rng, shared)[:, 0, :], rng)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    return Estimate(float(np.nanmean(points)), float(low), float(high))


def paired_auc_test(
    scores_a: Sequence,
    scores_b: Sequence,
    labels: Sequence,
    groups: Sequence | None = None,
    shared: bool = False,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> PairedTest:
    """Paired bootstrap of the pooled-AUC difference a - b: per seed, both methods' scores of
    the same samples (``labels[s]``) on the same resamples; ``groups`` and ``shared`` as in
    :func:`pooled_auc_estimate`. The p-value is two-sided, as in
    :func:`metarec.metrics.paired.paired_test`."""
    if not len(scores_a) == len(scores_b) == len(labels) or not len(labels):
        raise ValueError(
            f"paired AUC test over {len(scores_a)} and {len(scores_b)} seeds, {len(labels)} labels"
        )
    rng = np.random.default_rng(seed)
    seeds, observed = [], []
    for a, b, seed_labels, seed_groups in zip(
        scores_a, scores_b, labels, _groups_of(groups, len(labels)), strict=True
    ):
        a, seed_labels = _as_arrays(a, seed_labels)
        b, _ = _as_arrays(b, seed_labels)
        if len(a) != len(b):
            raise ValueError(f"paired AUC test over {len(a)} samples against {len(b)}")
        seeds.append((seed_labels, [a, b], seed_groups))
        observed.append(pooled_auc(a, seed_labels) - pooled_auc(b, seed_labels))
    per_seed = _per_seed_replicates(seeds, n_boot, rng, shared)
    replicates = _over_seeds(per_seed[:, 0, :] - per_seed[:, 1, :], rng)
    diff = float(np.nanmean(observed))
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(replicates, [tail, 100 - tail])
    if diff == 0:
        return PairedTest(0.0, float(low), float(high), 1.0)
    far = np.mean(replicates <= 0) if diff > 0 else np.mean(replicates >= 0)
    return PairedTest(diff, float(low), float(high), min(1.0, max(2 * float(far), 1 / n_boot)))
