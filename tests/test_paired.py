"""The two-level bootstrap: intervals over tasks and seeds, paired tests on identical tasks."""

from __future__ import annotations

import numpy as np
import pytest

from metarec.metrics.paired import bootstrap_means, estimate, paired_test


def _seeds(rng, means, n=400, spread=0.3):
    return [rng.normal(mean, spread, n) for mean in means]


def test_interval_holds_the_mean_and_narrows_with_more_tasks():
    rng = np.random.default_rng(0)
    few, many = _seeds(rng, [0.8] * 3, n=50), _seeds(rng, [0.8] * 3, n=2000)
    small, large = estimate(few), estimate(many)
    assert small.low < small.mean < small.high
    assert small.mean == pytest.approx(np.mean([v.mean() for v in few]))
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_interval_includes_the_spread_between_seeds():
    """Seeds that disagree (other users held out, another training run) widen the interval
    beyond what the tasks of any one seed give."""
    rng = np.random.default_rng(1)
    agreeing = _seeds(rng, [0.80, 0.80, 0.80])
    disagreeing = _seeds(rng, [0.75, 0.80, 0.85])
    width = lambda e: e.high - e.low  # noqa: E731
    assert width(estimate(disagreeing)) > 2 * width(estimate(agreeing))
    assert estimate(disagreeing).low < 0.77 and estimate(disagreeing).high > 0.83


def test_one_seed_matches_a_plain_task_bootstrap():
    rng = np.random.default_rng(2)
    (values,) = _seeds(rng, [0.9], n=900)
    replicates = bootstrap_means([values], n_boot=4000, seed=3)
    assert replicates.std() == pytest.approx(values.std() / np.sqrt(len(values)), rel=0.1)


def test_paired_test_finds_a_small_consistent_margin_an_unpaired_view_would_miss():
    rng = np.random.default_rng(4)
    base = _seeds(rng, [0.8, 0.82, 0.78], n=1000, spread=0.4)
    better = [tasks - 0.01 + rng.normal(0, 0.02, len(tasks)) for tasks in base]
    test = paired_test(better, base)
    assert test.diff == pytest.approx(-0.01, abs=0.002) and test.high < 0 and test.p < 0.01
    reverse = paired_test(base, better)
    assert reverse.diff == pytest.approx(-test.diff) and reverse.p < 0.01
    a, b = estimate(better), estimate(base)
    assert a.high > b.low  # the two intervals overlap: only pairing shows the margin


def test_paired_test_of_noise_is_not_significant_and_of_itself_is_one():
    rng = np.random.default_rng(5)
    base = _seeds(rng, [0.8] * 3, n=500)
    same_on_average = [tasks + rng.normal(0, 0.05, len(tasks)) for tasks in base]
    assert paired_test(same_on_average, base).p > 0.05
    assert paired_test(base, base).p == 1.0


def test_paired_test_needs_the_same_tasks_and_seeds():
    rng = np.random.default_rng(6)
    base = _seeds(rng, [0.8, 0.8], n=10)
    with pytest.raises(ValueError, match="seeds"):
        paired_test(base, base[:1])
    with pytest.raises(ValueError, match="tasks"):
        paired_test(base, [base[0], base[1][:5]])


def test_undefined_task_values_are_left_out():
    values = [np.array([1.0, np.nan, 3.0]), np.array([2.0, 2.0])]
    assert estimate(values).mean == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no finite"):
        estimate([np.array([np.nan])])
