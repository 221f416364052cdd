"""Every registered learner, picked up from the registry: a quick run, the outer step reaching
every slow weight, and no way to read query ratings while adapting."""

from __future__ import annotations

import copy
import json
import math

import lightning as L
import pytest
import torch

from metarec.build import build_learner
from metarec.catalog import LEARNERS
from metarec.cli import main
from metarec.config.load import load_config
from metarec.data.datamodule import ColdStartDataModule
from metarec.data.scenarios import SCENARIOS

from .conftest import SMALL, learner_overrides

ALL = LEARNERS.names()
# Learners that read the item texts only, so need item.text embeddings to run at all.
TEXT_ONLY = {"textsim"}


def _config(name, *overrides):
    return load_config(None, [*SMALL, *learner_overrides(name), *overrides])


@pytest.fixture
def tasks_for(small_tasks, small_text_tasks):
    return lambda name: small_text_tasks if name in TEXT_ONLY else small_tasks


@pytest.mark.parametrize("name", ALL)
def test_quick_run_writes_finite_metrics(name, tmp_path, tiny_text_model):
    args = ["train", "experiments/synthetic/maml.yaml", *SMALL, f"learner.name={name}"]
    args += [
        f"output_dir={tmp_path / 'runs'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
    ]
    if name in TEXT_ONLY:  # texts embedded by the tiny model, cached in the test's folder
        args += [
            "item.text=replace",
            f"encoder.model={tiny_text_model}",
            f"encoder.cache_dir={tmp_path / 'cache'}",
        ]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics) == list(SCENARIOS)
    for values in metrics.values():
        assert all(math.isfinite(values[key]) for key in ("mae", "rmse", "ndcg@1", "ndcg@3"))
        assert 0 < values["mae"] < 3


@pytest.mark.parametrize("name", ALL)
def test_one_outer_step_moves_every_slow_weight(name, tasks_for):
    torch.manual_seed(0)
    cfg = _config(name)
    learner = build_learner(cfg, tasks_for(name))
    if not learner.trainable:
        pytest.skip(f"{name} has no weights to train")
    before = copy.deepcopy(dict(learner.named_parameters()))
    datamodule = ColdStartDataModule(tasks_for(name), 8, 8, seed=0)
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
    )
    trainer.fit(learner, datamodule=datamodule)
    for param_name, param in learner.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, before[param_name]), f"{name}: {param_name} unchanged"


@pytest.mark.parametrize("name", ALL)
def test_predictions_never_depend_on_query_ratings(name, tasks_for):
    torch.manual_seed(0)
    learner = build_learner(_config(name), tasks_for(name)).eval()
    batch = tasks_for(name).test["new_user"][torch.arange(6)]
    scrambled = dict(batch)
    order = torch.randperm(batch["query_rating"].shape[1])
    scrambled["query_rating"] = 6.0 - batch["query_rating"][:, order]
    with torch.enable_grad():  # as in evaluation, which adapts with gradients
        expected, actual = learner(batch), learner(scrambled)
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    assert expected.shape == batch["query_item"].shape


def test_duplicate_name_is_an_error():
    with pytest.raises(KeyError, match="maml"):

        @LEARNERS.register("maml")
        class Again(LEARNERS.get("maml")):
            pass


def test_only_the_id_only_models_say_they_ignore_item_text():
    assert {name for name in ALL if not LEARNERS.get(name).reads_item_text} == {"mean", "mf"}


@pytest.mark.parametrize("name", [name for name in ALL if LEARNERS.get(name).reads_item_text])
def test_every_learner_reads_the_item_text(name, small_text_tasks):
    torch.manual_seed(0)
    learner = build_learner(_config(name), small_text_tasks).eval()
    batch = small_text_tasks.test["new_item"][torch.arange(4)]
    with torch.enable_grad():
        before = learner(batch).detach()
    texts = [buffer for key, buffer in learner.named_buffers() if key.endswith("text")]
    assert texts, f"{name} holds no item text"
    texts = list({text.data_ptr(): text for text in texts}.values())  # modules may share one
    row = batch["query_item"][0, 0]
    for text in texts:
        text[row] = -text[row]  # another description for one query item
    with torch.enable_grad():
        after = learner(batch).detach()
    assert (before[0, 0] - after[0, 0]).abs() > 1e-6, f"{name} ignores the item text"
