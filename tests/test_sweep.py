"""Sweeps: W&B sweep files checked up front, run locally (offline) with the sweeps engine."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from metarec import sweep as sweep_module
from metarec.cli import main
from metarec.config.load import load_config
from metarec.metrics.names import ESTIMATED, HEADLINE, LIKE_TABLE, METRICS, NAMES, RUN_TABLE
from metarec.sweep import SweepError, Trial, load_sweep, run_local, split_config
from metarec.sweep import runner as sweep_runner

from .conftest import SMALL

TINY = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


pytestmark = pytest.mark.usefixtures("wandb_offline")


def write_sweep(folder: Path, **changes) -> Path:
    """A grid of MAML's inner lr x steps (4 trials) on tiny synthetic runs, with ``changes``."""
    spec = {
        "method": "grid",
        "metric": {"name": "val/mae", "goal": "minimize"},
        "parameters": {
            "learner.inner_lr": {"values": [0.01, 0.3]},
            "learner.inner_steps": {"values": [1, 2]},
        },
        "command": [
            "metarec",
            "train",
            "experiments/synthetic/maml.yaml",
            *TINY,
            "${args_no_hyphens}",
        ],  # fmt: skip
    }
    spec.update(changes)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_local_grid_sweep_ranks_trials_by_their_own_metric(tmp_path, capsys):
    pytest.importorskip("sweeps")
    pytest.importorskip("wandb")
    out = tmp_path / "sweep"
    assert main(["sweep", str(write_sweep(tmp_path)), "--local", "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())["trials"]
    assert len(rows) == 4
    grid = {(row["learner.inner_lr"], row["learner.inner_steps"]) for row in rows}
    assert grid == {("0.01", "1"), ("0.01", "2"), ("0.3", "1"), ("0.3", "2")}
    # each trial's metric, read back from its own run folder
    logged = {}
    for row in rows:
        run_dir = Path(row["run_dir"])
        logged[row["trial"]] = json.loads((run_dir / "summary.json").read_text())["val/mae"]
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert str(config["learner"]["inner_lr"]) == row["learner.inner_lr"]
        assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))  # offline W&B run
        assert row["val/mae"] == pytest.approx(logged[row["trial"]])
    assert len(set(logged.values())) == 4  # the parameters changed the runs
    assert rows[0]["trial"] == min(logged, key=logged.get)
    assert [row["val/mae"] for row in rows] == sorted(logged.values())
    table = (out / "summary.md").read_text()
    assert table.index(rows[0]["trial"]) < table.index(rows[-1]["trial"])
    assert f"| {rows[0]['trial']} |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"parameters": {"learner.inner_lrr": {"values": [0.1]}}}, "learner.inner_lrr"),
        ({"parameters": {"trainer.accelerator": {"values": ["tpu"]}}}, "trainer.accelerator"),
        ({"parameters": {"config": {"values": ["experiments/synthetic/nope.yaml"]}}}, "nope"),
        ({"method": "hyperband"}, "hyperband"),
        ({"metric": {"name": "val/loss", "goal": "minimize"}}, "val/loss"),
        ({"metric": {"name": "val/mae", "goal": "lowest"}}, "lowest"),
        ({"command": ["metarec", "train", "${args_no_hyphens}"]}, "command"),
    ],
)
def test_bad_sweep_files_fail_before_any_trial(tmp_path, monkeypatch, capsys, changes, named):
    def no_trial(*args, **kwargs):
        raise AssertionError("a trial ran")

    monkeypatch.setattr(sweep_runner, "run_trial", no_trial)
    out = tmp_path / "sweep"
    path = write_sweep(tmp_path, **changes)
    assert main(["sweep", str(path), "--local", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_run_count_trials_best_first(tmp_path, monkeypatch, method):
    """The engine loop on a known objective (no training): count trials, ranked by it."""
    pytest.importorskip("sweeps")
    seen = []

    def fake_trial(sweep, name, params, out):
        seen.append(params)
        value = (math.log10(params["learner.inner_lr"]) + 1.3) ** 2 + params["learner.inner_steps"]
        return Trial(name, params, value, None)

    monkeypatch.setattr(sweep_runner, "run_trial", fake_trial)
    lr = {"distribution": "log_uniform_values", "min": 0.001, "max": 0.5}
    path = write_sweep(tmp_path, method=method, parameters={
        "learner.inner_lr": lr, "learner.inner_steps": {"values": [1, 2, 3]}})  # fmt: skip
    trials, out = run_local(load_sweep(path), count=5, out=tmp_path / "out")
    assert len(trials) == len(seen) == 5
    assert all(0.001 <= p["learner.inner_lr"] <= 0.5 for p in seen)
    assert [t.value for t in trials] == sorted(t.value for t in trials)
    assert (out / "summary.csv").read_text().count("\n") == 6
    with pytest.raises(SweepError, match="needs --count"):
        run_local(load_sweep(path), count=None, out=tmp_path / "out2")


def test_shipped_sweep_files_load(tmp_path):
    files = sorted(Path("experiments/sweeps").glob("*.yaml"))
    assert {f.stem for f in files} >= {"maml_inner", "maml_inner_synthetic", "methods"}
    methods = {load_sweep(f).spec["method"] for f in files}
    assert methods >= {"grid", "bayes"}
    comparison = load_sweep("experiments/sweeps/methods.yaml")
    assert len(comparison.spec["parameters"]["config"]["values"]) >= 3


def test_config_override_replaces_the_experiment_file():
    assert split_config("a.yaml", ["x=1", "config=b.yaml"]) == ("b.yaml", ["x=1"])
    assert split_config("a.yaml", ["x=1"]) == ("a.yaml", ["x=1"])
    with pytest.raises(SweepError.__mro__[1], match="more than one"):
        split_config("a.yaml", ["config=b.yaml", "config=c.yaml"])


def test_trials_reseeding_the_global_generators_do_not_repeat_proposals(tmp_path, monkeypatch):
    """Every trial reseeds random and numpy (seed_everything); the engine keeps its own state."""
    pytest.importorskip("sweeps")
    import random

    import numpy as np

    def reseeding_trial(sweep, name, params, out):
        random.seed(0)
        np.random.seed(0)
        return Trial(name, params, float(params["learner.inner_lr"]), None)

    monkeypatch.setattr(sweep_runner, "run_trial", reseeding_trial)
    lr = {"distribution": "log_uniform_values", "min": 0.001, "max": 0.5}
    path = write_sweep(tmp_path, method="random", parameters={"learner.inner_lr": lr})
    trials, _ = run_local(load_sweep(path), count=4, out=tmp_path / "out")
    assert len({t.value for t in trials}) == 4
    assert random.random() == random.Random(0).random()  # the caller's state is left as it was


def test_a_sweep_can_minimise_mae_round(tmp_path):
    cfg = load_config("experiments/synthetic/maml.yaml")
    assert {"val/mae_round", "test/warm/mae_round"} <= sweep_module.run_metrics(cfg)
    path = write_sweep(tmp_path, metric={"name": "val/mae_round", "goal": "minimize"})
    assert load_sweep(path).spec["metric"]["name"] == "val/mae_round"


def test_the_metric_names_are_those_the_metric_functions_return():
    """``metarec.metrics.names`` is the one list: what a run reports, and every table's pick."""
    import torch

    from metarec.metrics import binary_task_metrics, task_metrics
    from metarec.metrics.names import RANKING
    from metarec.metrics.ranking import full_ranking_metrics, ranking_metrics

    preds = torch.tensor([[4.0, 2.0]])
    mask = torch.ones_like(preds, dtype=torch.bool)
    returned = {*task_metrics(preds, preds, mask, levels=preds.unique()),  # with mae_round
                *binary_task_metrics(preds / 5, preds > 3, mask, 0.5)}  # fmt: skip
    ranking = ranking_metrics(preds, (preds > 3).double(), mask)
    full = full_ranking_metrics(lambda items: items.double(), torch.tensor([1]),
                                torch.tensor([[0]]), mask[:, :1], n_items=3)  # fmt: skip
    assert set(RANKING) == {*ranking, *full}
    returned |= set(RANKING)
    # The metrics a dataset adds (DataSource.extra_metrics), each a (T,) column.
    from metarec.metrics.evaluate import EXTRA_METRICS

    labels = (preds > 3).double()
    returned |= {name for name, f in EXTRA_METRICS.items() if f(preds, labels, mask).shape == (1,)}
    assert set(NAMES) == returned == set(METRICS)
    for picked in (RUN_TABLE, LIKE_TABLE, *ESTIMATED.values(), *HEADLINE.values()):
        assert set(picked) <= set(NAMES)
    assert METRICS["mae"].better == "lower is better" and not METRICS["ndcg@3"].lower_is_better


@pytest.mark.parametrize(
    ("metric", "overrides"),
    [
        ("val/ndcg@10", []),  # a ranking metric: synthetic ratings are not ranked
        ("test/warm_seen/mae", []),  # the seen protocol is not scored by task.warm=[heldout]
        ("test/new_user/mae", ["task.cold=false"]),  # no cold scenario is scored
        ("test/new_user/mae", ["task.unit=item"]),  # item tasks: no new-user scenario
    ],
)
def test_a_metric_no_run_writes_is_refused_before_any_trial(
    tmp_path, monkeypatch, metric, overrides
):
    def no_trial(*args, **kwargs):
        raise AssertionError("a trial ran")

    monkeypatch.setattr(sweep_runner, "run_trial", no_trial)
    path = write_sweep(tmp_path, metric={"name": metric, "goal": "minimize"})
    spec = yaml.safe_load(path.read_text())
    spec["command"][3:3] = overrides
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SweepError, match=f"never writes '{metric}'"):
        load_sweep(path)
    assert main(["sweep", str(path), "--local", "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_the_metrics_a_run_plans_are_those_it_writes(tmp_path):
    """run_metrics, computed from the config alone, against a real run's summary.json."""
    for overrides in ([], ["task.warm=[heldout,seen]", "task.target=like"]):
        args = ["experiments/synthetic/mean.yaml", *SMALL, *overrides]
        cfg = load_config(args[0], args[1:])
        assert main(["train", *args, f"output_dir={tmp_path / str(len(overrides))}"]) == 0
        (run_dir,) = (tmp_path / str(len(overrides))).iterdir()
        written = set(json.loads((run_dir / "summary.json").read_text()))
        planned = sweep_module.run_metrics(cfg)
        assert written <= planned
        # What it plans and did not write: the published warm-up, which synthetic data lack.
        assert {key.split("/")[1] for key in planned - written} == {"warm_up"}
