"""``learner.residual``: learners fit what the shrunk bias baseline misses, and are scored on
ratings (the baseline's predictions added back), never on residuals."""

from __future__ import annotations

import math

import pytest
import torch

from metarec.bias import predict_bias
from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import support_of
from metarec.errors import ConfigError
from metarec.learners.evaluator import evaluate_all
from metarec.pipeline import train

from .conftest import SMALL


def _learner(small_tasks, name="maml", *extra):
    cfg = load_config(None, [*SMALL, f"learner.name={name}", "learner.residual=true", *extra])
    return cfg, build_learner(cfg, small_tasks)


def test_residuals_are_the_shrunk_baseline_errors_and_add_back_to_ratings(small_tasks):
    cfg, learner = _learner(small_tasks)
    shrunk = build_learner(
        load_config(None, [*SMALL, "learner.name=mean", "learner.kind=shrunk"]), small_tasks
    )
    assert float(learner.residual.user_pseudo) == shrunk.chosen_user_pseudo
    batch = small_tasks.test["new_user"][torch.arange(40)]
    res = learner.residual(batch)
    base = predict_bias(
        support_of(batch),
        batch["query_item"],
        shrunk.net.item_mean.double(),
        (-math.inf, math.inf),
        shrunk.net.user_pseudo,
    )
    assert torch.allclose(res["query_offset"].double(), base, atol=1e-5)
    mask = batch["query_mask"]
    assert torch.allclose(
        (res["query_rating"] + res["query_offset"])[mask], batch["query_rating"][mask], atol=1e-5
    )
    assert torch.equal(res["query_target"], batch["query_rating"])
    assert learner.residual(res) is res  # never twice


def test_a_network_predicting_zero_residual_scores_as_the_baseline(small_tasks):
    cfg, learner = _learner(small_tasks, "anil", "learner.inner_steps=0")
    with torch.no_grad():
        learner.net.head.weight.zero_()
        learner.net.head.bias.zero_()
    shrunk_cfg = load_config(None, [*SMALL, "learner.name=mean", "learner.kind=shrunk"])
    shrunk = build_learner(shrunk_cfg, small_tasks)
    ours = evaluate_all(learner, {"new_user": small_tasks.test["new_user"]})["new_user"]
    theirs = evaluate_all(shrunk, {"new_user": small_tasks.test["new_user"]})["new_user"]
    # The same predictions but for the baseline's clamping to the scale.
    assert ours["mae"] == pytest.approx(theirs["mae"], abs=2e-3)
    assert ours["ndcg@3"] == pytest.approx(theirs["ndcg@3"], abs=1e-6)


def test_a_residual_run_reports_rating_metrics(tmp_path):
    overrides = [
        *SMALL,
        "learner.name=melu",
        "learner.residual=true",
        "trainer.max_epochs=1",
        f"output_dir={tmp_path}",
    ]
    metrics = train(load_config(None, overrides)).metrics
    for values in metrics.values():
        assert 0.3 < values["mae"] < 1.5 and 0.3 < values["mae_round"] < 1.6


def test_residuals_need_rating_targets(small_tasks):
    cfg = load_config(None, [*SMALL, "learner.residual=true", "task.target=like"])
    with pytest.raises(ConfigError, match="learner.residual"):
        build_learner(cfg, small_tasks)
