"""Per-task rating-prediction metrics (MAE, RMSE, nDCG@k) as in MeLU (Lee et al., KDD 2019).

Every task is one user; its query set holds items with a true rating (1..5) and a predicted
rating. Batches are padded to a common query size ``Q``: ``preds`` and ``targets`` are
``(T, Q)`` float tensors and ``mask`` is a ``(T, Q)`` bool tensor, True for a real entry.
Each metric is computed within a task over its real entries only, giving a ``(T,)`` float64
tensor; :func:`summarize` then averages over tasks (a per-task mean, not a per-rating mean).

nDCG follows MeLU's Eq. 5: items are ranked by predicted rating (descending), an item of true
rating ``r`` has gain ``2**r - 1``, position ``p`` (1-based) has discount ``1 / log2(p + 1)``,
DCG@k sums over the top ``k`` positions and is divided by the ideal DCG@k (items ranked by true
rating). Two conventions are fixed here and shared with
``torchmetrics.functional.retrieval_normalized_dcg`` (fed ``2**r - 1`` as its target, since it
uses the target itself as a linear gain), against which the tests check this implementation:

* **Ties in predictions are averaged** (as sklearn's ``ndcg_score`` and torchmetrics do): the
  items of a tied group share the mean of the discounts of the positions the group occupies.
  The result is deterministic and does not depend on the order of items in the query set, so
  a model that predicts a constant is not rewarded or punished by how the data was shuffled.
* **An ideal DCG of 0 gives nDCG 0** (every gain is 0, i.e. every rating is 0; impossible for
  ratings 1..5, but defined rather than NaN).

A task with fewer than ``k`` real items is scored over all of them (padding never counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["confidence_interval", "snap", "summarize", "t_quantile_975", "task_metrics"]

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (standard tables). scipy is
# not available, and with few seeds (3 -> df 2) the normal 1.96 would badly understate the
# interval; beyond df 30 the normal value is within 2% of the t value.
_T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z_975 = 1.959964


def check_padded_batch(
    preds: Tensor, targets: Tensor, mask: Tensor, names: tuple[str, str] = ("preds", "targets")
) -> None:
    """Raise ValueError on a malformed padded batch, so that silent broadcasting cannot skew a
    metric: one (T, Q) shape, a bool mask, a real entry in every task, finite predictions."""
    pred_name, target_name = names
    if preds.dim() != 2 or preds.shape != targets.shape or preds.shape != mask.shape:
        raise ValueError(
            f"{pred_name}, {target_name} and mask must all have the same (T, Q) shape; got "
            f"{tuple(preds.shape)}, {tuple(targets.shape)}, {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    if preds.shape[0] == 0:
        raise ValueError("need at least one task")
    if not bool(mask.any(dim=1).all()):
        empty = torch.nonzero(~mask.any(dim=1)).flatten().tolist()
        raise ValueError(f"every task needs at least one real query entry; empty tasks: {empty}")
    if not bool(torch.isfinite(preds[mask]).all()):
        # A diverged model should fail loudly rather than produce an arbitrary ranking.
        raise ValueError(f"{pred_name} contain NaN or infinite values at real (unmasked) entries")


def _check_inputs(preds: Tensor, targets: Tensor, mask: Tensor, ks: Sequence[int]) -> None:
    check_padded_batch(preds, targets, mask)
    if not bool(torch.isfinite(targets[mask]).all()):
        raise ValueError("targets contain NaN or infinite values at real (unmasked) entries")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"every k in ks must be a positive int, got {k!r}")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the real entries of each row; rows have >= 1 real entry."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)
    return total / mask.sum(dim=1)


def _discount_cumsum(
    n_positions: int, k: int, dtype: torch.dtype, device: torch.device | None = None
) -> Tensor:
    """``C[n] = sum of discounts 1/log2(p + 1) over positions p = 1..min(n, k)``, n = 0..Q.

    Differences of ``C`` give the summed discount of any run of positions, truncated at k,
    which is what tie averaging needs.
    """
    positions = torch.arange(1, n_positions + 1, dtype=dtype, device=device)
    discount = 1.0 / torch.log2(positions + 1.0)
    discount[k:] = 0.0
    return torch.cat([torch.zeros(1, dtype=dtype, device=device), discount.cumsum(0)])


def _tie_groups(sorted_preds: Tensor, sorted_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Start (inclusive) and end (exclusive) position of each sorted entry's tie group.

    A new group starts where the prediction changes or where real entries give way to padding,
    so padding never shares a group (and hence discounts) with real items.
    """
    n_tasks, n_pos = sorted_preds.shape
    pos = torch.arange(n_pos, device=sorted_preds.device).expand(n_tasks, n_pos)
    new_group = torch.ones_like(sorted_mask)
    new_group[:, 1:] = (sorted_preds[:, 1:] != sorted_preds[:, :-1]) | (
        sorted_mask[:, 1:] != sorted_mask[:, :-1]
    )
    start = torch.where(new_group, pos, torch.zeros_like(pos)).cummax(dim=1).values
    # The end of a group is the next group's start: a reverse running minimum of the starts
    # strictly to the right (n_pos when there is none).
    next_start = torch.where(new_group, pos, torch.full_like(pos, n_pos))
    next_start = torch.cat([next_start[:, 1:], torch.full_like(pos[:, :1], n_pos)], dim=1)
    end = next_start.flip(1).cummin(dim=1).values.flip(1)
    return start, end


def _rank_by_prediction(preds: Tensor, gains: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
    """Sort each row by prediction (descending) with real entries before padding.

    Two stable sorts: first by prediction, then by "is padding", so padding goes last whatever
    value it holds. Returns sorted predictions, gains (0 on padding) and mask.
    """
    order = torch.sort(preds, dim=1, descending=True, stable=True).indices
    pad_first_key = (~mask).gather(1, order).to(torch.uint8)
    order = order.gather(1, torch.sort(pad_first_key, dim=1, stable=True).indices)
    return preds.gather(1, order), gains.gather(1, order), mask.gather(1, order)


def _ndcg_at_ks(
    preds: Tensor, targets: Tensor, mask: Tensor, ks: Sequence[int]
) -> dict[str, Tensor]:
    """Vectorised, masked, tie-averaged nDCG@k with gain ``2**r - 1`` for every k in ``ks``."""
    gains = torch.where(mask, torch.exp2(targets) - 1.0, torch.zeros_like(targets))
    sorted_preds, sorted_gains, sorted_mask = _rank_by_prediction(preds, gains, mask)
    start, end = _tie_groups(sorted_preds, sorted_mask)
    ideal_gains = torch.sort(gains, dim=1, descending=True).values
    n_pos = preds.shape[1]
    out = {}
    for k in ks:
        cum = _discount_cumsum(n_pos, k, preds.dtype, preds.device)
        # Each item gets the mean discount of its tie group's positions (truncated at k).
        mean_discount = (cum[end] - cum[start]) / (end - start).to(preds.dtype)
        dcg = (sorted_gains * mean_discount).sum(dim=1)
        ideal = (ideal_gains * (cum[1:] - cum[:-1])).sum(dim=1)
        safe_ideal = torch.where(ideal > 0, ideal, torch.ones_like(ideal))
        out[f"ndcg@{k}"] = torch.where(ideal > 0, dcg / safe_ideal, torch.zeros_like(dcg))
    return out


def snap(preds: Tensor, levels: Tensor) -> Tensor:
    """Each prediction replaced by the nearest of the rating ``levels`` (the lower on a tie)."""
    levels = levels.to(preds)
    return levels[(preds.unsqueeze(-1) - levels).abs().argmin(-1)]


def task_metrics(
    preds: Tensor,
    targets: Tensor,
    mask: Tensor,
    ks: Sequence[int] = (1, 3),
    levels: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-task MAE, RMSE and nDCG@k of a padded batch of query sets.

    Args:
        preds: ``(T, Q)`` predicted ratings; values at padded entries are ignored.
        targets: ``(T, Q)`` true ratings (1..5 in MeLU's data); padded entries are ignored.
        mask: ``(T, Q)`` bool, True for real entries; every task needs at least one.
        ks: cut-offs for nDCG; each a positive int.
        levels: the rating scale's values (1..5), when ratings are discrete. Then
            ``"mae_round"`` is the MAE of each prediction rounded to the nearest level: the
            point prediction MAE rewards. The MAE-optimal prediction of a rating is its
            median, which on a discrete scale is a level, not the mean a regression predicts.

    Returns:
        ``{"mae", "rmse", "ndcg@k" for k in ks}`` (and ``"mae_round"``), each a ``(T,)``
        float64 tensor on the CPU. RMSE is the root of the task's own mean squared error.
        nDCG ranks by the predictions themselves, averages over ties and is 0 when the ideal
        DCG is 0 (see the module docstring).

    Raises:
        ValueError: on mismatched shapes, a non-bool mask, a task without real entries,
            non-finite real values or a bad k.
    """
    _check_inputs(preds, targets, mask, ks)
    # float64 on CPU: a few thousand tasks are cheap, and it keeps sums exact enough that
    # metric differences between methods are not rounding noise. Predictions are compared for
    # ties after this cast, so float32 inputs tie exactly when their float32 values are equal.
    preds = preds.detach().to("cpu", torch.float64)
    targets = targets.detach().to("cpu", torch.float64)
    mask = mask.detach().to("cpu")
    error = preds - targets
    out = {
        "mae": _masked_mean(error.abs(), mask),
        "rmse": _masked_mean(error.square(), mask).sqrt(),
    }
    if levels is not None:
        out["mae_round"] = _masked_mean((snap(preds, levels) - targets).abs(), mask)
    out.update(_ndcg_at_ks(preds, targets, mask, ks))
    return out


def summarize(per_task: dict[str, Tensor]) -> dict[str, float | int]:
    """Mean over tasks of each per-task metric (python floats), plus ``"n_tasks"``.

    Every task weighs the same regardless of its query size, as in MeLU's evaluation. A metric
    undefined for some tasks (NaN, such as the AUC of a task whose labels are all alike) is
    averaged over the others, and ``"<name>_n_tasks"`` says how many that was.
    """
    if not per_task:
        raise ValueError("per_task is empty")
    sizes = {name: int(values.numel()) for name, values in per_task.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"metrics cover different numbers of tasks: {sizes}")
    n_tasks = next(iter(sizes.values()))
    if n_tasks == 0:
        raise ValueError("no tasks to summarize")
    summary: dict[str, float | int] = {}
    for name, values in per_task.items():
        values = values.detach().to(torch.float64)
        defined = ~values.isnan()
        summary[name] = float(values[defined].mean()) if defined.any() else math.nan
        if not bool(defined.all()):  # e.g. AUC of a task whose labels are all alike
            summary[f"{name}_n_tasks"] = int(defined.sum())
    summary["n_tasks"] = n_tasks
    return summary


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student-t quantile ``t_{0.975, df}``: tabled for df 1..30, else normal."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T_975[df - 1] if df <= len(_T_975) else _Z_975


def confidence_interval(values: Sequence[float] | Tensor, level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean of ``values``.

    ``t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample (n - 1) standard deviation; used to
    aggregate a metric over seeds, where n is small and the t quantile matters (n = 3 gives
    4.303 rather than 1.96). Only ``level=0.95`` is supported, since without scipy the
    quantiles come from a table. A single value has no spread estimate, so it gives NaN.
    """
    if not math.isclose(level, 0.95):
        raise ValueError(f"only level=0.95 is supported (quantiles are tabled), got {level}")
    data = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = int(data.numel())
    if n == 0:
        raise ValueError("confidence_interval needs at least one value")
    if n == 1:
        return math.nan
    std = float(data.std(correction=1))
    return t_quantile_975(n - 1) * std / math.sqrt(n)
