"""The docs' how-to (docs/adding-a-learner.md): its two learners, run as they are written, are
short, need few metarec names, and learn through the normal pipeline."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from metarec.api import load_learner, train
from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import support_of
from metarec.registry import LEARNERS

from .conftest import SMALL

HOWTO = Path(__file__).resolve().parents[1] / "docs" / "adding-a-learner.md"


def howto_blocks() -> list[str]:
    """The python blocks of the "Adding a learner" page, in order."""
    return re.findall(r"```python\n(.*?)```", HOWTO.read_text(), flags=re.S)


def metarec_names(code: str) -> set[str]:
    """The names a block imports from metarec."""
    imports = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.ImportFrom)]
    return {
        alias.name for node in imports if node.module.startswith("metarec") for alias in node.names
    }


@pytest.fixture
def howto_learner(request):
    """Block ``request.param`` executed as a module of its own: the learner it registers,
    unregistered after the test."""
    code = howto_blocks()[request.param]
    module = types.ModuleType(f"howto_{request.param}")
    before = set(LEARNERS.names())
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(code, f"{HOWTO} block {request.param}", "exec"), module.__dict__)
        (name,) = set(LEARNERS.names()) - before
        yield LEARNERS.get(name)
        LEARNERS.unregister(name)
    finally:
        del sys.modules[module.__name__]


def test_the_howto_shows_two_short_complete_learners():
    blocks = howto_blocks()
    assert len(blocks) == 2
    for code in blocks:
        assert len(code.splitlines()) < 60
        assert "@LEARNERS.register(" in code and "def adapt(" in code and "def predict(" in code
        assert len(metarec_names(code)) <= 5, metarec_names(code)


def _trained(learner_cls, tmp_path, small_tasks, *extra):
    """The learner before training (the run's seed) and its best weights after a short run."""
    overrides = [*SMALL, f"learner.name={learner_cls.name}", f"output_dir={tmp_path}", *extra]
    torch.manual_seed(0)  # the run's seed: the same initial weights as the run's
    initial = build_learner(load_config(None, overrides), small_tasks).eval()
    result = train(None, overrides)
    return initial, load_learner(result.run_dir / "checkpoints" / "best.ckpt", tasks=small_tasks)


def _query_loss(learner, batch) -> float:
    with torch.enable_grad():  # adapting takes gradient steps
        pred = learner(batch).detach()
    return float(learner.loss(pred, batch["query_rating"], batch["query_mask"]).mean())


@pytest.mark.parametrize("howto_learner", [0], indirect=True)
def test_the_gradient_learner_adapts_and_its_loss_falls(howto_learner, tmp_path, small_tasks):
    initial, learner = _trained(howto_learner, tmp_path, small_tasks, "trainer.max_epochs=3")
    batch = small_tasks.train[torch.arange(64)]
    assert _query_loss(learner, batch) < 0.9 * _query_loss(initial, batch)
    tasks = small_tasks.test["new_user"][torch.arange(8)]
    with torch.enable_grad():
        adapted = learner(tasks).detach()
    unadapted = learner.net(tasks["user"].unsqueeze(-1), tasks["query_item"]).detach()
    assert (adapted - unadapted)[tasks["query_mask"]].abs().max() > 1e-2


@pytest.mark.parametrize("howto_learner", [1], indirect=True)
def test_the_closed_form_learner_is_least_squares(howto_learner, tmp_path, small_tasks):
    _, learner = _trained(howto_learner, tmp_path, small_tasks, "trainer.max_epochs=1")
    tasks = small_tasks.test["new_user"][torch.arange(5)]
    pred = learner(tasks).detach().numpy()
    support = support_of(tasks)
    with torch.no_grad():  # the shared network's predictions, the inputs of each task's fit
        f_support = learner.net(tasks["user"].unsqueeze(-1), support["item"]).double().numpy()
        f_query = learner.net(tasks["user"].unsqueeze(-1), tasks["query_item"]).double().numpy()
    l2 = learner.cfg.ridge_l2
    for t in range(len(pred)):
        seen, asked = support["mask"][t].numpy(), tasks["query_mask"][t].numpy()
        x = np.stack([np.ones(seen.sum()), f_support[t][seen]], 1)
        y = support["rating"][t][seen].double().numpy()
        # Ridge around (0, 1) as ordinary least squares: rows sqrt(l2) * I with target 0.
        rows = np.vstack([x, np.sqrt(l2) * np.eye(2)])
        target = np.concatenate([y - x @ [0.0, 1.0], [0.0, 0.0]])
        a, b = np.array([0.0, 1.0]) + np.linalg.lstsq(rows, target, rcond=None)[0]
        np.testing.assert_allclose(pred[t][asked], a + b * f_query[t][asked], atol=1e-4)
    assert np.ptp(f_query[0][tasks["query_mask"][0].numpy()]) > 0  # not a constant network
