"""The speed benchmarks compare like with like: metarec's MAML meta-gradient equals a per-task
autograd loop's and learn2learn's on the same tasks, and both harnesses run end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from metarec.build import build_learner
from metarec.config.load import load_config

from .conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
TINY = [
    *SMALL,
    "model.hidden=[8,8]",
    "model.embedding_dim=4",
    "learner.adapt=all",
    "learner.inner_steps=3",
    "learner.inner_lr=0.3",
]
# The harnesses' own options for a run on the small synthetic data.
SMALL_RUN = ["--synthetic", *(arg for key in SMALL for arg in ("--set", key))]


def _benchmark(name: str):
    if str(BENCHMARKS) not in sys.path:  # the harnesses import efficiency.py, their neighbour
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def meta_training():
    return _benchmark("meta_training")


def _learner_and_batch(small_tasks, dtype=torch.float64, n_tasks=5):
    torch.manual_seed(0)
    learner = build_learner(load_config(None, TINY), small_tasks).to(dtype).train()
    batch = small_tasks.train[torch.arange(n_tasks)]
    return learner, {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}


def test_per_task_loop_meta_gradient_equals_metarec(meta_training, small_tasks):
    learner, batch = _learner_and_batch(small_tasks)
    grads = meta_training.meta_gradients(learner, batch, with_learn2learn=False)
    assert set(grads) == {"metarec", "loop"}
    assert any(g.abs().max() > 1e-3 for g in grads["metarec"])  # not trivially zero
    meta_training.assert_close(grads, rtol=1e-9, atol=1e-12)


def test_learn2learn_meta_gradient_equals_metarec(meta_training, small_tasks):
    pytest.importorskip("learn2learn")
    learner, batch = _learner_and_batch(small_tasks)
    grads = meta_training.meta_gradients(learner, batch, with_learn2learn=True)
    meta_training.assert_close(grads, rtol=1e-9, atol=1e-12)
    assert max(meta_training.max_abs_diff(grads).values()) < 1e-12


def test_float32_gradient_check_passes(meta_training, small_tasks):
    learner, batch = _learner_and_batch(small_tasks, torch.float32)
    with_l2l = meta_training.has_learn2learn()
    report = meta_training.check_gradients(learner, batch, with_learn2learn=with_l2l)
    assert set(report) == {"float64", "float32"}
    assert set(report["float32"]["max_abs_diff"]) == (
        {"loop", "learn2learn"} if with_l2l else {"loop"}
    )


def test_split_tasks_drops_padding(meta_training, small_tasks):
    batch = small_tasks.train[torch.arange(4)]
    for t, task in enumerate(meta_training.split_tasks(batch)):
        assert len(task["support_item"]) == int(batch["support_mask"][t].sum())
        assert len(task["query_rating"]) == int(batch["query_mask"][t].sum())


def test_meta_training_harness_writes_json(meta_training, tmp_path):
    out = tmp_path / "meta_training.json"
    args = [
        *SMALL_RUN,
        "--set",
        "learner.meta_batch_size=4",
        "--set",
        "learner.inner_steps=2",
        "--steps",
        "1",
        "--repeat",
        "2",
        "--threads",
        "1",
        "2",
        "--out",
        str(out),
    ]
    result = meta_training.main(args)
    assert json.loads(out.read_text()) == result
    assert set(result["by_threads"]) == {"1", "2"}  # each thread count timed
    for timed in result["by_threads"].values():
        assert timed["tasks_per_second"]["metarec"] > 0 and "metarec/loop" in timed["ratios"]
        assert all(len(times) == 2 for times in timed["seconds_per_round"].values())


def test_serving_harness_writes_json(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # serving.py imports meta_training
    monkeypatch.delitem(sys.modules, "meta_training", raising=False)
    serving = _benchmark("serving")
    out = tmp_path / "serving.json"
    args = [
        *SMALL_RUN,
        "--users",
        "6",
        "--batch-size",
        "4",
        "--repeat",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    result = serving.main(args)
    assert json.loads(out.read_text()) == result
    assert result["users"] == 6 and result["max_prediction_diff"] < 1e-4
    assert set(result["by_threads"]) == {"1"}
    assert set(result["by_threads"]["1"]["users_per_second"]) == {"metarec", "loop"}


def test_meta_training_harness_refuses_partial_adaptation(meta_training, tmp_path):
    with pytest.raises(SystemExit):
        meta_training.main(
            ["--synthetic", "--set", "learner.adapt=decision", "--out", str(tmp_path / "x.json")]
        )
    assert not (tmp_path / "x.json").exists()


def test_ceiling_bare_chain_is_the_same_math_as_metarec(monkeypatch, small_tasks):
    """benchmarks/ceiling.py's bare batched-matmul chain, written without the library's inner
    loop, gives metarec's MeLU meta-gradient (every weight, the tables too) and its served
    predictions."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    ceiling = _benchmark("ceiling")
    torch.manual_seed(0)
    cfg = load_config(None, [*TINY, "learner.adapt=decision"])
    learner = build_learner(cfg, small_tasks).train()
    batch = small_tasks.train[torch.arange(6)]
    assert ceiling.check_same_gradient(learner, batch) < 1e-12  # asserts every parameter
    served = small_tasks.test["new_user"][torch.arange(5)]
    assert ceiling.check_same_predictions(learner, served) < 1e-5
