"""Tests for metarec.metrics.binary: hand-computed cases, padding, ties, torchmetrics agreement."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_f1_score,
    binary_precision,
    binary_recall,
)

from metarec.metrics.binary import binary_task_metrics, nanmean_with_count

NAN = float("nan")


def _batch(rows_scores: list[list[float]], rows_labels: list[list[float]], width: int = 0):
    """Pad ragged rows to a (T, Q) batch; padding holds junk values that must be ignored."""
    q = max(width, *(len(r) for r in rows_scores))
    scores = torch.full((len(rows_scores), q), 1e30)
    labels = torch.full((len(rows_scores), q), 1.0)
    mask = torch.zeros((len(rows_scores), q), dtype=torch.bool)
    for i, (s, y) in enumerate(zip(rows_scores, rows_labels, strict=True)):
        scores[i, : len(s)] = torch.tensor(s)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(s)] = True
    return scores, labels, mask


def _random_batch(gen: torch.Generator, n_tasks: int, q: int, kind: str):
    """Random padded batch with real entries scattered over each row.

    ``kind``: "continuous" scores in [0, 1); "ties" the same rounded to 1 decimal (ties within a
    task and at the thresholds are common); "ratings" predicted ratings 1.0, 1.5, .., 5.0. Each
    task draws its own positive rate, so one-class tasks (AUC undefined) occur too.
    """
    lengths = torch.randint(1, q + 1, (n_tasks,), generator=gen)
    mask = torch.arange(q).expand(n_tasks, q) < lengths[:, None]
    perm = torch.argsort(torch.rand(n_tasks, q, generator=gen), dim=1)
    mask = mask.gather(1, perm)
    rate = torch.rand(n_tasks, 1, generator=gen)
    labels = (torch.rand(n_tasks, q, generator=gen) < rate).float()
    if kind == "ratings":
        scores = torch.randint(2, 11, (n_tasks, q), generator=gen).float() / 2
    else:
        scores = torch.rand(n_tasks, q, generator=gen)
        if kind == "ties":
            scores = torch.round(scores, decimals=1)
    # extreme junk in the padding: it would top (or bottom) every ranking if it counted
    junk = torch.where(torch.rand(n_tasks, q, generator=gen) < 0.5, 1e30, -1e30)
    scores = torch.where(mask, scores, junk)
    labels = torch.where(mask, labels, torch.full_like(labels, 7.0))
    return scores, labels, mask


def _just_below(threshold: float) -> float:
    """Largest float32 below ``threshold``: torchmetrics' ``score > it`` is our ``score >= t``."""
    t = torch.tensor(threshold, dtype=torch.float32)
    return torch.nextafter(t, torch.tensor(-math.inf)).item()


@pytest.mark.parametrize("kind", ["continuous", "ties", "ratings"])
@pytest.mark.parametrize("q", [1, 4, 10, 30])
def test_matches_torchmetrics_per_task(kind: str, q: int):
    gen = torch.Generator().manual_seed(100 * q + len(kind))
    scores, labels, mask = _random_batch(gen, 120, q, kind)
    thresholds = (3.5, 3.0) if kind == "ratings" else (0.45, 0.5)
    for threshold in thresholds:
        m = binary_task_metrics(scores, labels, mask, threshold)
        for t in range(scores.shape[0]):
            s, y = scores[t][mask[t]], labels[t][mask[t]].long()
            if 0 < int(y.sum()) < y.numel():
                # sigmoid (applied by torchmetrics to the ratings) is monotone: same AUC
                ref = binary_auroc(s, y, validate_args=False).item()
                assert m["auc"][t].item() == pytest.approx(ref, abs=1e-6), (t, "auc")
            else:
                assert math.isnan(m["auc"][t].item()), t
            # Feed torchmetrics 0/1 predictions (in range, so no sigmoid) thresholded at just
            # below 0.5, i.e. exactly our ``score >= threshold`` rule, ties at it included.
            hard = (s >= threshold).float()
            for name, fn in (
                ("precision", binary_precision),
                ("recall", binary_recall),
                ("f1", binary_f1_score),
            ):
                ref = fn(hard, y, threshold=0.5, validate_args=False).item()
                assert m[name][t].item() == pytest.approx(ref, abs=1e-6), (t, name)
                if kind != "ratings":
                    # on probabilities, torchmetrics' own thresholding agrees too
                    direct = fn(s, y, threshold=_just_below(threshold), validate_args=False)
                    assert m[name][t].item() == pytest.approx(direct.item(), abs=1e-6)


def test_auc_hand_computed():
    scores, labels, mask = _batch(
        [
            [0.1, 0.3, 0.7, 0.9],  # perfect: both positives above both negatives
            [0.9, 0.7, 0.3, 0.1],  # reversed
            [0.4, 0.4, 0.4, 0.4],  # all tied: every pair counts 1/2
            [0.1, 0.4, 0.4, 0.8],  # one tied pos/neg pair: (1 + 1/2 + 1 + 1) / 4
            [2.0, 9.0, 5.0],  # labels 1, 0, 1: pairs (2 < 9) and (5 < 9) wrong -> 0
        ],
        [[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 0, 1]],
    )
    m = binary_task_metrics(scores, labels, mask, threshold=0.5)
    assert m["auc"].tolist() == pytest.approx([1.0, 0.0, 0.5, 0.875, 0.0])
    for value in m.values():
        assert value.dtype == torch.float64 and value.shape == (5,)
        assert value.device.type == "cpu"


def test_one_class_tasks_give_nan_auc_but_defined_precision():
    scores, labels, mask = _batch([[0.9, 0.2], [0.9, 0.2], [0.7]], [[1, 1], [0, 0], [1]])
    m = binary_task_metrics(scores, labels, mask, threshold=0.5)
    assert all(math.isnan(v) for v in m["auc"].tolist())
    # all positive: TP 1 (0.9), FN 1 (0.2) -> precision 1, recall 1/2, F1 2/3
    # all negative: FP 1 -> precision 0; no positives -> recall 0, F1 0
    # single positive predicted positive -> all 1
    assert m["precision"].tolist() == pytest.approx([1.0, 0.0, 1.0])
    assert m["recall"].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert m["f1"].tolist() == pytest.approx([2 / 3, 0.0, 1.0])


def test_no_predicted_positive_gives_zero_precision():
    scores, labels, mask = _batch([[0.1, 0.2, 0.3]], [[1, 0, 1]])
    m = binary_task_metrics(scores, labels, mask, threshold=0.5)
    assert m["precision"].item() == 0.0
    assert m["recall"].item() == 0.0
    assert m["f1"].item() == 0.0
    assert m["auc"].item() == pytest.approx(0.5)  # pos {0.1, 0.3} vs neg 0.2: 1 of 2 pairs


def test_predicted_ratings_thresholded_directly():
    # out-of-range scores are not squashed: ratings thresholded at 3.5 (a 3.5 counts positive)
    scores, labels, mask = _batch([[4.2, 3.5, 2.0, 4.9, 1.0, 3.0]], [[1, 0, 1, 1, 0, 1]])
    m = binary_task_metrics(scores, labels, mask, threshold=3.5)
    # predicted positive: 4.2 (TP), 3.5 (FP), 4.9 (TP); missed positives 2.0, 3.0 (FN)
    assert m["precision"].item() == pytest.approx(2 / 3)
    assert m["recall"].item() == pytest.approx(2 / 4)
    assert m["f1"].item() == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    # positives {4.2, 2.0, 4.9, 3.0} vs negatives {3.5, 1.0}: 2 + 1 + 2 + 1 = 6 of 8 pairs
    assert m["auc"].item() == pytest.approx(0.75)


def test_threshold_compared_in_scores_dtype():
    # float32(0.35) is just below the double 0.35; in float32 it equals the threshold
    scores = torch.tensor([[0.35, 0.1]], dtype=torch.float32)
    labels = torch.tensor([[1.0, 0.0]])
    mask = torch.ones_like(labels, dtype=torch.bool)
    assert float(scores[0, 0]) < 0.35
    m = binary_task_metrics(scores, labels, mask, threshold=0.35)
    assert m["precision"].item() == 1.0 and m["recall"].item() == 1.0


def test_padding_never_changes_a_result():
    rows_s = [[0.2, 0.8, 0.5, 0.5], [0.9, 0.1]]
    rows_y = [[0, 1, 1, 0], [0, 1]]
    plain = binary_task_metrics(*_batch(rows_s, rows_y), threshold=0.5)
    for pad_score, pad_label in [(1e30, 1.0), (-1e30, 0.0), (0.5, 1.0), (NAN, NAN), (math.inf, 7)]:
        scores, labels, mask = _batch(rows_s, rows_y, width=9)
        scores[~mask] = pad_score
        labels[~mask] = pad_label
        padded = binary_task_metrics(scores, labels, mask, threshold=0.5)
        for name in plain:
            assert torch.equal(plain[name], padded[name]), (name, pad_score)


def test_padding_scattered_and_order_invariant():
    gen = torch.Generator().manual_seed(3)
    scores, labels, mask = _random_batch(gen, 50, 12, "ties")
    base = binary_task_metrics(scores, labels, mask, threshold=0.5)
    perm = torch.randperm(12, generator=gen)
    shuffled = binary_task_metrics(scores[:, perm], labels[:, perm], mask[:, perm], 0.5)
    for name in base:
        assert torch.allclose(base[name], shuffled[name], rtol=0, atol=1e-12, equal_nan=True)


def test_label_and_score_dtypes_give_same_result():
    scores, labels, mask = _batch([[0.2, 0.8, 0.5, 0.5]], [[0, 1, 1, 0]])
    ref = binary_task_metrics(scores, labels, mask, threshold=0.5)
    for s, y in [
        (scores.double(), labels),
        (scores, labels.long()),
        (scores, labels.bool()),
        (scores.half(), labels.int()),
    ]:
        other = binary_task_metrics(s, y, mask, threshold=0.5)
        for name in ref:
            assert torch.equal(ref[name], other[name]), name
    assert set(ref) == {"auc", "precision", "recall", "f1"}


def test_gradients_not_tracked():
    scores, labels, mask = _batch([[0.2, 0.8]], [[0, 1]])
    scores.requires_grad_(True)
    m = binary_task_metrics(scores, labels, mask, threshold=0.5)
    assert not any(v.requires_grad for v in m.values())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s, y, m: (s[:, :2], y, m), "same"),
        (lambda s, y, m: (s[0], y[0], m[0]), "same"),
        (lambda s, y, m: (s, y, m.float()), "bool"),
        (lambda s, y, m: (s[:0], y[:0], m[:0]), "at least one task"),
        (lambda s, y, m: (s, y, m & torch.tensor([[True], [False]])), "empty tasks: \\[1\\]"),
        (lambda s, y, m: (s.index_fill(1, torch.tensor([0]), NAN), y, m), "NaN"),
        (lambda s, y, m: (s.index_fill(1, torch.tensor([1]), -math.inf), y, m), "infinite"),
        (lambda s, y, m: (s, y.index_fill(1, torch.tensor([0]), 2.0), m), "0 or 1"),
        (lambda s, y, m: (s, y.index_fill(1, torch.tensor([0]), 0.5), m), "0 or 1"),
        (lambda s, y, m: (s, y.index_fill(1, torch.tensor([2]), NAN), m), "0 or 1"),
    ],
)
def test_bad_inputs_raise(mutate, message):
    scores, labels, mask = _batch([[0.2, 0.8, 0.5], [0.1, 0.3, 0.9]], [[0, 1, 1], [1, 0, 1]])
    with pytest.raises(ValueError, match=message):
        binary_task_metrics(*mutate(scores, labels, mask), threshold=0.5)


@pytest.mark.parametrize("threshold", [NAN, math.inf, None, "0.5", True, torch.tensor(0.5)])
def test_bad_threshold_raises(threshold):
    with pytest.raises(ValueError, match="threshold"):
        binary_task_metrics(*_batch([[0.2, 0.8]], [[0, 1]]), threshold=threshold)


def test_integer_threshold_accepted():
    m = binary_task_metrics(*_batch([[1.0, 4.0, 3.0]], [[0, 1, 1]]), threshold=3)
    assert m["precision"].item() == 1.0 and m["recall"].item() == 1.0


def test_nanmean_with_count():
    assert nanmean_with_count(torch.tensor([0.5, NAN, 1.0])) == (pytest.approx(0.75), 2)
    assert nanmean_with_count([0.25, 0.75]) == (pytest.approx(0.5), 2)
    mean, n = nanmean_with_count(torch.tensor([NAN, NAN]))
    assert math.isnan(mean) and n == 0
    mean, n = nanmean_with_count([])
    assert math.isnan(mean) and n == 0
    # over binary_task_metrics: the one-class task is left out of the AUC average
    scores, labels, mask = _batch([[0.1, 0.9], [0.9, 0.1], [0.3, 0.6]], [[0, 1], [0, 1], [1, 1]])
    auc = binary_task_metrics(scores, labels, mask, threshold=0.5)["auc"]
    mean, n = nanmean_with_count(auc)
    assert (mean, n) == (0.5, 2) and isinstance(mean, float) and isinstance(n, int)
