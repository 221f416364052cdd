"""The test metrics a run reports are those of the weights it chose on validation: the epoch
with the lowest ``val/mae`` (``checkpoints/best.ckpt``), not the last one trained."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from metarec.build import build_learner, prepare_tasks
from metarec.config.load import load_config
from metarec.learners.base import MetaLearner
from metarec.pipeline import evaluate, train, validate

from .conftest import SMALL

# Ridge at a high outer learning rate: validation MAE goes down and up again within five
# epochs, so the best epoch is not the last (asserted below) and the wrong weights show.
SETTINGS = ["learner.name=ridge", "learner.outer_lr=0.02", "trainer.max_epochs=5",
            "trainer.limit_train_batches=3"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The run's folder and the weights its training ended with (``checkpoints/last.ckpt``,
    rewritten after every epoch, not only with a new best)."""
    out = tmp_path_factory.mktemp("runs")
    result = train(load_config(None, [*SMALL, *SETTINGS, f"output_dir={out}"]))
    last = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 4  # the final epoch: what `resume` must continue from
    return result.run_dir, last["state_dict"]


def val_mae_by_epoch(run_dir: Path) -> dict[int, float]:
    """Each epoch's ``val/mae`` as the run logged it in ``logs/metrics.csv``."""
    with open(run_dir / "logs" / "metrics.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/mae")]
    return {int(row["epoch"]): float(row["val/mae"]) for row in rows}


def test_best_checkpoint_is_the_epoch_lowest_on_validation(run):
    run_dir, _ = run
    val_mae = val_mae_by_epoch(run_dir)
    assert sorted(val_mae) == list(range(5))
    best_epoch = min(val_mae, key=val_mae.get)
    assert best_epoch != max(val_mae), "the last epoch is the best: raise learner.outer_lr"
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == best_epoch
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val/mae"] == pytest.approx(val_mae[best_epoch])


def test_reported_test_metrics_are_those_of_the_best_checkpoint(run):
    run_dir, final = run
    cfg = load_config(run_dir / "config.yaml")
    tasks = prepare_tasks(cfg)

    def learner_with(state: dict[str, torch.Tensor]) -> MetaLearner:
        learner = build_learner(cfg, tasks)  # fresh weights, replaced by ``state``
        learner.load_state_dict(state)
        return learner

    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    reported = json.loads((run_dir / "metrics.json").read_text())
    assert evaluate(learner_with(best["state_dict"]), tasks, cfg) == reported
    # The last epoch's weights (their val/mae is the last log row's) give other numbers: had
    # the run reported those, the equality above would fail.
    last = learner_with(final)
    val_mae = val_mae_by_epoch(run_dir)
    assert validate(last, tasks, cfg)["val/mae"] == pytest.approx(val_mae[max(val_mae)])
    last_metrics = evaluate(last, tasks, cfg)
    assert all(last_metrics[scenario]["mae"] != reported[scenario]["mae"] for scenario in reported)
