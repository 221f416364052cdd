"""End to end: `metarec train` on small synthetic data writes a complete run folder."""

from __future__ import annotations

import json

import pytest
import torch

from metarec.build import build_learner
from metarec.catalog import load_dataset
from metarec.cli import main
from metarec.config.load import load_config
from metarec.data.scenarios import SCENARIOS, ColdStartTasks
from metarec.pipeline import evaluate

from .conftest import SMALL

EPOCHS = ["trainer.max_epochs=6"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    args = ["train", "experiments/synthetic/maml.yaml", *SMALL, *EPOCHS, f"output_dir={out}"]
    assert main(args) == 0
    (folder,) = out.iterdir()
    return folder


def test_run_folder_has_config_metrics_table_checkpoint(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics) == list(SCENARIOS)
    for scenario, values in metrics.items():
        rating = {"mae", "mae_round", "rmse", "ndcg@1", "ndcg@3", "n_tasks"}
        like = {"auc", "precision", "recall", "f1"}
        assert rating | like <= set(values) <= rating | like | {"auc_n_tasks"}, scenario
        assert isinstance(values["n_tasks"], int) and values["n_tasks"] > 0
        assert 0 <= values["precision"] <= 1 and 0 <= values["f1"] <= 1
        assert 0 < values["mae"] <= values["rmse"] < 4 and 0 < values["mae_round"] < 4
        assert 0 < values["ndcg@1"] <= 1 and 0 < values["ndcg@3"] <= 1
    table = (run_dir / "table.md").read_text()
    for scenario in SCENARIOS:
        assert f"| maml | {scenario} | {metrics[scenario]['mae']:.4f} |" in table
    saved = load_config(run_dir / "config.yaml")
    assert saved.trainer.max_epochs == 6 and saved.data.synthetic.n_users == 300
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert any(key.startswith("net.decision.") for key in state["state_dict"])


def test_maml_beats_the_same_network_without_adaptation(run_dir):
    """On synthetic new users, adapting on the support set lowers MAE."""
    cfg = load_config(run_dir / "config.yaml")
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data)
    learner = build_learner(cfg, tasks)
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    learner.load_state_dict(state["state_dict"])
    adapted = evaluate(learner, tasks, cfg)
    learner.cfg.inner_steps = 0
    unadapted = evaluate(learner, tasks, cfg)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert adapted["new_user"]["mae"] == pytest.approx(saved["new_user"]["mae"], abs=1e-6)
    assert adapted["new_user"]["mae"] < unadapted["new_user"]["mae"] - 0.05


def test_bad_override_is_one_clear_line(tmp_path, capsys):
    code = main(["train", "experiments/synthetic/maml.yaml", "learner.inner_stepz=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "learner.inner_stepz" in err and "Traceback" not in err


def test_missing_melu_data_names_the_folder(tmp_path, capsys):
    code = main(["train", "experiments/melu_ml1m/maml.yaml", f"data.root={tmp_path}"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "warm_state.json" in err


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "data" in out


def test_divergence_stops_with_a_clear_error(tmp_path, capsys):
    args = ["train", "experiments/synthetic/maml.yaml", *SMALL, f"output_dir={tmp_path}"]
    code = main([*args, "learner.inner_lr=1e6", "trainer.max_epochs=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "learner.inner_lr" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*/metrics.json"))  # no numbers from a diverged run


def test_learners_command_lists_every_learner_and_one_learners_settings(capsys):
    from metarec.catalog import LEARNERS

    assert main(["learners"]) == 0
    listed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == LEARNERS.names()
    assert main(["learners", "metasgd"]) == 0
    out = capsys.readouterr().out
    assert "learner.inner_steps = 1" in out and "learner.inner_lr" in out
    assert main(["learners", "nope"]) == 2
    assert "unknown learner 'nope'" in capsys.readouterr().err
