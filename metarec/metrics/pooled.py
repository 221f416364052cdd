"""AUC pooled over every query of a scenario, with bootstrap intervals over samples and seeds.

For tasks with a single query (TALLRec's samples, ``metarec/data/tallrec.py``) a per-task AUC
is undefined; the AUC is that of all the scenario's (score, label) pairs at once, as TALLRec
computes it (``roc_auc_score`` over its test set). Ties in scores count half, as everywhere in
metarec (:mod:`metarec.metrics.auc`); a pool without both classes has a NaN AUC.

Intervals are a two-level bootstrap as in :mod:`metarec.metrics.paired`, the statistic being the
pooled AUC rather than a mean: one replicate draws the seeds with replacement, then within each
drawn seed its samples (or, with ``groups``, whole groups such as users, whose samples are not
independent) with replacement, recomputes each seed's AUC on the draw and averages them. A
resample is a vector of multiplicities (:func:`metarec.metrics.paired.resample_counts`), so
the replicates' AUCs all come from one sort of the samples' scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from metarec.metrics.auc import auc
from metarec.metrics.paired import (
    CHUNK,
    N_BOOT,
    Estimate,
    PairedTest,
    over_seeds,
    paired_result,
    percentile_interval,
    resample_counts,
)


def _real(scores, labels, mask=None) -> tuple[Tensor, Tensor]:
    """Float64 scores of the real entries and whether each is positive, checked."""
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
    return scores, labels == 1


def pooled_auc(scores, labels, mask=None) -> float:
    """ROC AUC of all (score, label) pairs at once (the real entries of padded ``(T, Q)``
    tensors when ``mask`` is given); NaN without both a positive and a negative."""
    return float(auc(*_real(scores, labels, mask)))


def _per_seed_replicates(
    seeds: list[tuple[Tensor, list[Tensor], np.ndarray | None]],
    n_boot: int,
    rng: np.random.Generator,
    shared: bool,
) -> np.ndarray:
    """(n_boot, n_methods, n_seeds) replicate AUCs; every method of a seed is scored on the
    same resamples, and with ``shared`` every seed too (``seeds``: per seed, which samples are
    positive, each method's scores, groups)."""
    if shared:
        first_positive, _, first_groups = seeds[0]
        for positive, _, groups in seeds[1:]:
            same_groups = (groups is None) == (first_groups is None) and (
                groups is None or np.array_equal(groups, first_groups)
            )
            if not (torch.equal(positive, first_positive) and same_groups):
                raise ValueError("shared=True: the seeds' test samples (labels, groups) differ")
    n_methods = len(seeds[0][1])
    out = np.empty((n_boot, n_methods, len(seeds)))
    for start in range(0, n_boot, CHUNK):
        stop = min(start + CHUNK, n_boot)
        weights = None
        for column, (positive, method_scores, groups) in enumerate(seeds):
            if weights is None or not shared:
                counts = resample_counts(len(positive), groups, stop - start, rng)
                weights = torch.from_numpy(counts)
            for method, scores in enumerate(method_scores):
                out[start:stop, method, column] = auc(scores, positive, weights).numpy()
    return out


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
        seed_scores, positive = _real(seed_scores, seed_labels)
        seeds.append((positive, [seed_scores], seed_groups))
        points.append(float(auc(seed_scores, positive)))
    replicates = over_seeds(_per_seed_replicates(seeds, n_boot, rng, shared)[:, 0, :], rng)
    low, high = percentile_interval(replicates)
    return Estimate(float(np.nanmean(points)), low, high)


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
        a, positive = _real(a, seed_labels)
        b, _ = _real(b, seed_labels)
        if len(a) != len(b):
            raise ValueError(f"paired AUC test over {len(a)} samples against {len(b)}")
        seeds.append((positive, [a, b], seed_groups))
        observed.append(float(auc(a, positive)) - float(auc(b, positive)))
    per_seed = _per_seed_replicates(seeds, n_boot, rng, shared)
    replicates = over_seeds(per_seed[:, 0, :] - per_seed[:, 1, :], rng)
    return paired_result(float(np.nanmean(observed)), replicates)
