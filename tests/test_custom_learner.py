"""A researcher's own learner: a few lines, registered, run through `metarec train`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from metarec.catalog import LEARNERS
from metarec.cli import main
from metarec.config.domain import setting
from metarec.config.schema import LearnerConfig
from metarec.learners.base import MetaLearner

from .conftest import SMALL


@pytest.fixture
def shift_learner():
    """Global network plus the task's mean support residual, shrunk toward zero."""

    @dataclass
    class ShiftSettings(LearnerConfig):
        shrink: float = setting(5.0, "pseudo-count pulling the offset toward 0")

    @LEARNERS.register("shift")
    class Shift(MetaLearner):
        Settings = ShiftSettings

        def adapt(self, support):
            residual = support["rating"] - self.net(support["user"][:, None], support["item"])
            residual = residual * support["mask"]
            return residual.sum(1) / (support["mask"].sum(1) + self.cfg.shrink)

        def predict(self, offset, query):
            return self.net(query["user"][:, None], query["item"]) + offset[:, None]

    yield Shift
    LEARNERS.unregister("shift")


def test_registered_learner_runs_through_metarec_train(shift_learner, tmp_path):
    args = ["train", "experiments/synthetic/maml.yaml", *SMALL, "learner.name=shift"]
    args += ["learner.shrink=2.5", f"output_dir={tmp_path}", "trainer.max_epochs=2"]
    assert main(args) == 0
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert all(0 < metrics[s]["mae"] < 3 for s in metrics)
    saved = (run_dir / "config.yaml").read_text()
    assert "name: shift" in saved and "shrink: 2.5" in saved
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert any(key.startswith("net.") for key in state["state_dict"])


def test_unknown_setting_of_a_custom_learner_names_it(shift_learner, capsys):
    # MAML's settings are not the custom learner's: the override is rejected before any work.
    assert (
        main(
            [
                "train",
                "experiments/synthetic/maml.yaml",
                "learner.name=shift",
                "learner.inner_steps=3",
            ]
        )
        == 2
    )
    assert "learner.inner_steps" in capsys.readouterr().err


def test_unknown_learner_lists_the_registered_ones(capsys):
    assert main(["train", "experiments/synthetic/maml.yaml", "learner.name=nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "maml" in err
