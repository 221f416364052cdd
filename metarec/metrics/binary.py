"""Per-task binary-relevance metrics (ROC AUC, precision, recall, F1) on padded query sets.

Every task is one user; its query set holds items with a 0/1 label (e.g. "liked": rating >= 4)
and a score from the model (a probability, a logit or a predicted rating: any real number).
Batches are padded to a common query size ``Q`` as in :mod:`metarec.metrics.rating`:
``scores`` and ``labels`` are ``(T, Q)`` tensors and ``mask`` is a ``(T, Q)`` bool tensor, True
for a real entry. Each metric is computed within a task over its real entries only, giving a
``(T,)`` float64 tensor.

Conventions, shared with ``torchmetrics.functional.classification`` and sklearn, against which
the tests check this implementation:

* **AUC counts a tie in scores as half a correctly ordered pair** and **is NaN for a task
  whose real labels are all 0 or all 1** (:mod:`metarec.metrics.auc`). Use
  :func:`nanmean_with_count` to average over the tasks where it is defined, and report how many.
* **Precision, recall and F1 threshold the raw scores**: an item is predicted positive when
  ``score >= threshold``, compared in the scores' own dtype, so a predicted rating can be
  thresholded at 3.5 directly. (torchmetrics instead applies a sigmoid to scores outside
  ``[0, 1]`` and predicts positive when ``score > threshold``; the two agree on probabilities
  that are not exactly equal to the threshold.)
* **A zero denominator gives 0** (torchmetrics' default ``zero_division=0``): precision is 0
  for a task with no predicted positive, recall and F1 are 0 for a task with no true positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import torch
from torch import Tensor

from metarec.metrics.auc import auc
from metarec.metrics.rating import check_padded_batch

__all__ = ["binary_task_metrics", "nanmean_with_count"]


def _check_inputs(scores: Tensor, labels: Tensor, mask: Tensor, threshold: float) -> None:
    """Raise ValueError on malformed batches, labels other than 0/1, or a bad threshold."""
    check_padded_batch(scores, labels, mask, names=("scores", "labels"))
    real_labels = labels[mask]
    bad = ~((real_labels == 0) | (real_labels == 1))
    if bool(bad.any()):
        examples = sorted({float(v) for v in real_labels[bad][:5].tolist()})
        raise ValueError(f"labels must be 0 or 1 at real (unmasked) entries; found e.g. {examples}")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, Real)
        or not math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")


def _safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator`` with 0 where the denominator is 0 (zero_division=0)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def binary_task_metrics(
    scores: Tensor, labels: Tensor, mask: Tensor, threshold: float
) -> dict[str, Tensor]:
    """Per-task ROC AUC, precision, recall and F1 of a padded batch of query sets.

    Args:
        scores: ``(T, Q)`` model scores (any real values: probabilities, logits, predicted
            ratings); higher means "more likely positive". Padded entries are ignored.
        labels: ``(T, Q)`` true labels, 0 or 1 at real entries (float, int or bool); padded
            entries are ignored.
        mask: ``(T, Q)`` bool, True for real entries; every task needs at least one.
        threshold: an item is predicted positive when ``score >= threshold`` (compared in the
            scores' dtype), e.g. 0.5 for probabilities or 3.5 for predicted ratings.

    Returns:
        ``{"auc", "precision", "recall", "f1"}``, each a ``(T,)`` float64 tensor on the CPU.
        AUC counts score ties as 1/2 and is NaN for a task whose real labels are all 0 or
        all 1; precision, recall and F1 are 0 where their denominator is 0 (see the module
        docstring).

    Raises:
        ValueError: on mismatched shapes, a non-bool mask, a task without real entries,
            non-finite real scores, real labels other than 0/1 or a non-finite threshold.
    """
    _check_inputs(scores, labels, mask, threshold)
    # Threshold before the float64 cast, so that 0.3 means the same as in ``scores >= 0.3``.
    predicted = (scores.detach() >= threshold).to("cpu")
    # float64 on CPU, as in rating.py; scores are compared for ties after this cast, so float32
    # inputs tie exactly when their float32 values are equal.
    scores = scores.detach().to("cpu", torch.float64)
    positive = labels.detach().to("cpu") == 1
    mask = mask.detach().to("cpu")
    predicted = predicted & mask
    actual = positive & mask
    true_pos = (predicted & actual).sum(dim=1).to(torch.float64)
    n_predicted = predicted.sum(dim=1).to(torch.float64)
    n_actual = actual.sum(dim=1).to(torch.float64)
    return {
        # padding has weight 0; a finite filler keeps the sort well defined
        "auc": auc(torch.where(mask, scores, 0.0), positive, mask),
        "precision": _safe_ratio(true_pos, n_predicted),
        "recall": _safe_ratio(true_pos, n_actual),
        # 2 TP / (2 TP + FP + FN), i.e. the harmonic mean of precision and recall
        "f1": _safe_ratio(2.0 * true_pos, n_predicted + n_actual),
    }


def nanmean_with_count(values: Tensor | Sequence[float]) -> tuple[float, int]:
    """Mean of ``values`` over the entries that are not NaN, and how many there were.

    For a per-task metric that is undefined on some tasks (AUC of a task with one class), so a
    summary reports the mean over the tasks where it is defined alongside their number. Gives
    ``(nan, 0)`` when every value is NaN (or there are none).
    """
    data = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
    defined = data[~torch.isnan(data)]
    n_defined = int(defined.numel())
    if n_defined == 0:
        return math.nan, 0
    return float(defined.mean()), n_defined
