"""Tests for metarec.metrics: hand-computed cases, padding, ties, torchmetrics agreement."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.retrieval import retrieval_normalized_dcg

from metarec.metrics import confidence_interval, snap, summarize, t_quantile_975, task_metrics

LOG2_3 = math.log2(3.0)


def _batch(rows_preds: list[list[float]], rows_targets: list[list[float]], width: int = 0):
    """Pad ragged rows to a (T, Q) batch; padding holds junk values that must be ignored."""
    q = max(width, *(len(r) for r in rows_preds))
    preds = torch.full((len(rows_preds), q), 99.0)
    targets = torch.full((len(rows_preds), q), 5.0)
    mask = torch.zeros((len(rows_preds), q), dtype=torch.bool)
    for i, (p, t) in enumerate(zip(rows_preds, rows_targets, strict=True)):
        preds[i, : len(p)] = torch.tensor(p)
        targets[i, : len(t)] = torch.tensor(t)
        mask[i, : len(p)] = True
    return preds, targets, mask


def test_reversed_ranking_by_hand():
    # ratings [5, 3, 1], predicted [1, 3, 5]
    preds, targets, mask = _batch([[1.0, 3.0, 5.0]], [[5.0, 3.0, 1.0]])
    m = task_metrics(preds, targets, mask, ks=(1, 3))
    # |errors| = 4, 0, 4 -> MAE 8/3; squared 16, 0, 16 -> RMSE sqrt(32/3)
    assert m["mae"].item() == pytest.approx(8 / 3)
    assert m["rmse"].item() == pytest.approx(math.sqrt(32 / 3))
    # predicted order: r=1 (gain 1), r=3 (gain 7), r=5 (gain 31); ideal order 31, 7, 1
    # nDCG@1 = (2^1 - 1) / (2^5 - 1) = 1/31
    assert m["ndcg@1"].item() == pytest.approx(1 / 31)
    # DCG@3  = 1/log2(2) + 7/log2(3) + 31/log2(4) = 1 + 7/log2(3) + 15.5
    # IDCG@3 = 31/log2(2) + 7/log2(3) + 1/log2(4) = 31 + 7/log2(3) + 0.5
    expected = (16.5 + 7 / LOG2_3) / (31.5 + 7 / LOG2_3)  # ~0.58237
    assert m["ndcg@3"].item() == pytest.approx(expected)
    assert expected == pytest.approx(0.58237, abs=1e-5)
    for value in m.values():
        assert value.dtype == torch.float64 and value.shape == (1,)


def test_perfect_ranking_gives_one():
    # any strictly order-preserving prediction ranks perfectly, even with rating errors
    preds, targets, mask = _batch([[4.9, 1.2, 3.3, 2.0]], [[5.0, 1.0, 4.0, 2.0]])
    m = task_metrics(preds, targets, mask, ks=(1, 3, 10))
    for k in (1, 3, 10):
        assert m[f"ndcg@{k}"].item() == pytest.approx(1.0)
    # errors 0.1, 0.2, 0.7, 0 -> MAE 1.0/4; squares 0.01+0.04+0.49+0 -> RMSE sqrt(0.54/4)
    assert m["mae"].item() == pytest.approx(0.25)
    assert m["rmse"].item() == pytest.approx(math.sqrt(0.54 / 4))


def test_padding_is_ignored():
    rows_p, rows_t = [[1.0, 3.0, 5.0]], [[5.0, 3.0, 1.0]]
    plain = task_metrics(*_batch(rows_p, rows_t), ks=(1, 3, 5))
    # padded to width 7 with junk (pred 99, rating 5) that would top both rankings if counted
    padded = task_metrics(*_batch(rows_p, rows_t, width=7), ks=(1, 3, 5))
    for name in plain:
        assert torch.allclose(plain[name], padded[name], rtol=0, atol=1e-12), name
    # other junk: NaN/inf in padded slots must not leak either
    preds, targets, mask = _batch(rows_p, rows_t, width=5)
    preds[0, 3:] = float("nan")
    targets[0, 3:] = float("inf")
    weird = task_metrics(preds, targets, mask, ks=(1, 3, 5))
    for name in plain:
        assert torch.allclose(plain[name], weird[name], rtol=0, atol=1e-12), name


def test_per_task_values_and_per_task_average():
    # task A: 1 item, rating 4 predicted 3 -> MAE 1, RMSE 1, nDCG 1 (single item)
    # task B: 4 items, ratings [2, 2, 2, 2] predicted [2, 2, 2, 6] -> MAE 1, RMSE sqrt(16/4)=2
    preds, targets, mask = _batch([[3.0], [2.0, 2.0, 2.0, 6.0]], [[4.0], [2.0, 2.0, 2.0, 2.0]])
    m = task_metrics(preds, targets, mask, ks=(1,))
    assert m["mae"].tolist() == pytest.approx([1.0, 1.0])
    assert m["rmse"].tolist() == pytest.approx([1.0, 2.0])
    assert m["ndcg@1"].tolist() == pytest.approx([1.0, 1.0])  # equal ratings: any order ideal
    s = summarize(m)
    # per-task mean: RMSE (1 + 2) / 2 = 1.5, not the pooled sqrt((1 + 16) / 5)
    assert s["rmse"] == pytest.approx(1.5)
    assert s["mae"] == pytest.approx(1.0)
    assert s["n_tasks"] == 2 and isinstance(s["n_tasks"], int)
    assert all(isinstance(s[k], float) for k in ("mae", "rmse", "ndcg@1"))


def test_mae_average_differs_from_pooled():
    # task A: 1 item error 3; task B: 3 items error 1 each -> per-task MAE mean (3 + 1) / 2 = 2
    # (a pooled mean would be (3 + 3) / 4 = 1.5)
    preds, targets, mask = _batch([[4.0], [2.0, 3.0, 4.0]], [[1.0], [1.0, 2.0, 3.0]])
    assert summarize(task_metrics(preds, targets, mask))["mae"] == pytest.approx(2.0)


def test_all_tied_predictions_are_averaged():
    # ratings [5, 3, 1] all predicted 2: each item gets the mean discount of positions 1..3
    preds, targets, mask = _batch([[2.0, 2.0, 2.0]], [[5.0, 3.0, 1.0]])
    m = task_metrics(preds, targets, mask, ks=(1, 3))
    # nDCG@1: mean discount truncated at 1 = (1 + 0 + 0)/3; DCG@1 = (31 + 7 + 1)/3 = 13
    assert m["ndcg@1"].item() == pytest.approx(13 / 31)
    # nDCG@3: DCG = 39 * (1 + 1/log2(3) + 1/2) / 3; IDCG = 31 + 7/log2(3) + 1/2
    expected = 39 * (1.5 + 1 / LOG2_3) / 3 / (31.5 + 7 / LOG2_3)  # ~0.77128
    assert m["ndcg@3"].item() == pytest.approx(expected)


def test_partial_tie_straddling_cutoff():
    # ratings [1, 5, 3] predicted [3, 2, 2]: r=1 first; r=5 and r=3 tie over positions 2..3
    preds, targets, mask = _batch([[3.0, 2.0, 2.0]], [[1.0, 5.0, 3.0]])
    m = task_metrics(preds, targets, mask, ks=(1, 2))
    assert m["ndcg@1"].item() == pytest.approx(1 / 31)
    # @2: the tied pair shares position 2's discount only: (1/log2(3) + 0)/2 each
    # DCG@2 = 1 + (31 + 7) * 0.5/log2(3); IDCG@2 = 31 + 7/log2(3)
    expected = (1 + 19 / LOG2_3) / (31 + 7 / LOG2_3)  # ~0.36671
    assert m["ndcg@2"].item() == pytest.approx(expected)


def test_ties_do_not_depend_on_item_order():
    preds = torch.tensor([[2.0, 2.0, 4.0, 2.0, 1.0]])
    targets = torch.tensor([[5.0, 1.0, 3.0, 2.0, 4.0]])
    mask = torch.ones_like(preds, dtype=torch.bool)
    base = task_metrics(preds, targets, mask, ks=(1, 2, 3))
    for seed in range(5):
        perm = torch.randperm(5, generator=torch.Generator().manual_seed(seed))
        shuffled = task_metrics(preds[:, perm], targets[:, perm], mask, ks=(1, 2, 3))
        for name in base:
            assert torch.allclose(base[name], shuffled[name], rtol=0, atol=1e-12), name


def test_k_larger_than_query_set_scores_all_items():
    preds, targets, mask = _batch([[1.0, 3.0, 5.0], [1.0, 2.0]], [[5.0, 3.0, 1.0], [4.0, 2.0]], 6)
    m = task_metrics(preds, targets, mask, ks=(3, 6))
    assert torch.allclose(m["ndcg@3"], m["ndcg@6"])
    # task 2: order r=2 (gain 3), r=4 (gain 15): DCG = 3 + 15/log2(3); IDCG = 15 + 3/log2(3)
    assert m["ndcg@6"][1].item() == pytest.approx((3 + 15 / LOG2_3) / (15 + 3 / LOG2_3))


def test_zero_ideal_dcg_gives_zero():
    # rating 0 has gain 2^0 - 1 = 0, so the ideal DCG is 0: nDCG defined as 0, not NaN
    preds, targets, mask = _batch([[1.0, 2.0]], [[0.0, 0.0]])
    m = task_metrics(preds, targets, mask, ks=(1, 2))
    assert m["ndcg@1"].item() == 0.0 and m["ndcg@2"].item() == 0.0


def test_torchmetrics_uses_linear_gain_so_we_pass_exponential():
    # torchmetrics' gain is the target itself; 2**r - 1 turns it into MeLU's exponential gain
    p = torch.tensor([1.0, 3.0, 5.0])
    r = torch.tensor([5.0, 3.0, 1.0])
    linear = (1 + 3 / LOG2_3 + 5 / 2) / (5 + 3 / LOG2_3 + 1 / 2)
    assert retrieval_normalized_dcg(p, r, top_k=3).item() == pytest.approx(linear, rel=1e-6)
    expo = retrieval_normalized_dcg(p, 2**r - 1, top_k=3).item()
    assert expo == pytest.approx((16.5 + 7 / LOG2_3) / (31.5 + 7 / LOG2_3), rel=1e-6)


def _random_batch(gen: torch.Generator, n_tasks: int, q: int, discrete: bool):
    """Random padded batch; discrete predictions make ties (including at cut-offs) common."""
    lengths = torch.randint(1, q + 1, (n_tasks,), generator=gen)
    mask = torch.arange(q).expand(n_tasks, q) < lengths[:, None]
    # scatter real entries over the row, so padding is not always at the end
    perm = torch.argsort(torch.rand(n_tasks, q, generator=gen), dim=1)
    mask = mask.gather(1, perm)
    targets = torch.randint(1, 6, (n_tasks, q), generator=gen).float()
    if discrete:
        preds = torch.randint(1, 6, (n_tasks, q), generator=gen).float() / 2
    else:
        preds = torch.rand(n_tasks, q, generator=gen) * 4 + 1
    return preds, targets, mask


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("q", [1, 3, 10, 25])
def test_ndcg_matches_torchmetrics(discrete: bool, q: int):
    gen = torch.Generator().manual_seed(1000 * q + discrete)
    preds, targets, mask = _random_batch(gen, 200, q, discrete)
    ks = (1, 3, 5, 10)
    m = task_metrics(preds, targets, mask, ks=ks)
    for t in range(preds.shape[0]):
        p, r = preds[t][mask[t]], targets[t][mask[t]]
        for k in ks:
            ref = retrieval_normalized_dcg(p, 2**r - 1, top_k=k).item()
            # torchmetrics accumulates in float32
            assert m[f"ndcg@{k}"][t].item() == pytest.approx(ref, abs=1e-5), (t, k)
        err = p.double() - r.double()
        assert m["mae"][t].item() == pytest.approx(err.abs().mean().item())
        assert m["rmse"][t].item() == pytest.approx(err.square().mean().sqrt().item())


def test_grouped_torchmetrics_mean_matches_summary():
    # torchmetrics' grouped metric averages per query (task), like summarize
    from torchmetrics.retrieval import RetrievalNormalizedDCG

    gen = torch.Generator().manual_seed(7)
    preds, targets, mask = _random_batch(gen, 300, 10, discrete=True)
    indexes = torch.arange(300)[:, None].expand(300, 10)
    metric = RetrievalNormalizedDCG(top_k=3)
    ref = metric(preds[mask], (2 ** targets[mask] - 1), indexes=indexes[mask]).item()
    ours = summarize(task_metrics(preds, targets, mask, ks=(3,)))["ndcg@3"]
    assert ours == pytest.approx(ref, abs=1e-5)


def test_float64_inputs_give_same_result_and_keys():
    preds, targets, mask = _batch([[1.0, 3.0, 5.0]], [[5.0, 3.0, 1.0]])
    a = task_metrics(preds, targets, mask)
    b = task_metrics(preds.double(), targets.double(), mask)
    for name in a:
        assert torch.allclose(a[name], b[name])
    assert set(a) == {"mae", "rmse", "ndcg@1", "ndcg@3"}


def test_gradients_not_tracked():
    preds, targets, mask = _batch([[1.0, 3.0, 5.0]], [[5.0, 3.0, 1.0]])
    preds.requires_grad_(True)
    m = task_metrics(preds, targets, mask)
    assert not any(v.requires_grad for v in m.values())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, t, m: (p[:, :2], t, m), "same"),
        (lambda p, t, m: (p, t, m.float()), "bool"),
        (lambda p, t, m: (p, t, torch.zeros_like(m)), "at least one"),
        (lambda p, t, m: (p.fill_(float("nan")), t, m), "NaN"),
        (lambda p, t, m: (p[0], t[0], m[0]), "same"),
    ],
)
def test_bad_inputs_raise(mutate, message):
    preds, targets, mask = _batch([[1.0, 3.0, 5.0]], [[5.0, 3.0, 1.0]])
    with pytest.raises(ValueError, match=message):
        task_metrics(*mutate(preds, targets, mask))


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match="positive int"):
        task_metrics(*_batch([[1.0]], [[1.0]]), ks=(k,))


def test_summarize_rejects_mismatched_or_empty():
    with pytest.raises(ValueError):
        summarize({})
    with pytest.raises(ValueError):
        summarize({"mae": torch.ones(2), "rmse": torch.ones(3)})


def test_confidence_interval_three_seeds():
    # [1, 2, 3]: mean 2, sample sd 1 -> half-width t_{0.975,2} * 1/sqrt(3) = 4.303/sqrt(3)
    assert confidence_interval([1.0, 2.0, 3.0]) == pytest.approx(4.303 / math.sqrt(3))
    assert confidence_interval(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(2.48434, abs=1e-4)


def test_confidence_interval_edge_cases():
    assert math.isnan(confidence_interval([0.5]))
    assert confidence_interval([2.0, 2.0, 2.0, 2.0]) == 0.0
    # df > 30 falls back to the normal quantile: 40 values of sd 1 -> 1.96 / sqrt(40)
    values = [0.0, 2.0] * 20  # mean 1, sample sd sqrt(40/39)
    expected = 1.959964 * math.sqrt(40 / 39) / math.sqrt(40)
    assert confidence_interval(values) == pytest.approx(expected)
    with pytest.raises(ValueError):
        confidence_interval([])
    with pytest.raises(ValueError):
        confidence_interval([1.0, 2.0], level=0.9)


def test_t_table():
    assert t_quantile_975(1) == 12.706
    assert t_quantile_975(2) == 4.303
    assert t_quantile_975(30) == 2.042
    assert t_quantile_975(31) == pytest.approx(1.96, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile_975(0)


def test_snap_takes_the_nearest_level_and_the_lower_on_a_tie():
    levels = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    preds = torch.tensor([[0.2, 1.49, 2.5, 3.51, 7.0]])
    assert snap(preds, levels).tolist() == [[1.0, 1.0, 2.0, 4.0, 5.0]]
    half = torch.tensor([0.5, 1.0, 1.5])
    assert snap(torch.tensor([0.7, 1.3, 9.0]), half).tolist() == [0.5, 1.5, 1.5]


def test_mae_round_scores_rounded_predictions_and_only_with_levels():
    preds, targets, mask = _batch([[3.6, 1.2, 4.4], [2.51]], [[4.0, 2.0, 5.0], [2.0]], width=4)
    assert "mae_round" not in task_metrics(preds, targets, mask)
    levels = torch.arange(1.0, 6.0)
    m = task_metrics(preds, targets, mask, levels=levels)
    # rounded: [4, 1, 4] against [4, 2, 5] -> 2/3; [3] against [2] -> 1 (padding ignored)
    torch.testing.assert_close(m["mae_round"], torch.tensor([2 / 3, 1.0], dtype=torch.float64))
    torch.testing.assert_close(
        m["mae"], torch.tensor([(0.4 + 0.8 + 0.6) / 3, 0.51], dtype=torch.float64)
    )
    # ranking metrics read the predictions themselves, not the rounded ones
    assert m["ndcg@3"].tolist() == task_metrics(preds, targets, mask)["ndcg@3"].tolist()
