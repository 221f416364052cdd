"""Two CPU processes (Lightning's DDP over gloo) against one: the same meta-steps, the same
metrics. The two-process runs are real ``train(cfg)`` runs launched as ``python -m
tests.ddp_runs``; the one-process runs go through the same function in this process."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from metarec.data.datamodule import ColdStartDataModule
from metarec.data.sampler import MetaBatchSampler, shard

from .ddp_runs import RUNS, run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = ["maml", "reptile", "evaluation"]
SLOW_RUNS = sorted(name for name in RUNS if name.startswith("all-"))


def launch(out: Path, devices: int, names: list[str]) -> None:
    """``python -m tests.ddp_runs`` on ``devices`` processes; its output on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "NODE_RANK"):
        env.pop(key, None)  # a fresh launch, whatever this process was started by
    done = subprocess.run(
        [sys.executable, "-m", "tests.ddp_runs", str(out), str(devices), *names],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def run_folder(out: Path, name: str) -> Path:
    (folder,) = (out / name).iterdir()  # one folder: the second process writes none
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Folders of the default runs on one process and on two."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    for name in DEFAULT_RUNS:
        run(name, 1, one)
    launch(two, 2, DEFAULT_RUNS)
    return one, two


def weights(folder: Path) -> dict[str, torch.Tensor]:
    state = torch.load(folder / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    return state["state_dict"]


def assert_same_weights(one: Path, two: Path) -> None:
    expected, actual = weights(one), weights(two)
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-6, rtol=1e-6, msg=key)


@pytest.mark.parametrize("name", ["maml", "reptile"])
def test_two_processes_take_the_one_device_meta_steps(runs, name):
    """Three meta-steps of 16 tasks on one process, or of 8 + 8 on two: the same weights."""
    one, two = (run_folder(folder, name) for folder in runs)
    assert_same_weights(one, two)
    logged = [(folder / "logs" / "metrics.csv").read_text() for folder in (one, two)]
    assert all(text.count("\n") >= 4 for text in logged)  # a row per meta-step at least


def test_two_processes_evaluate_every_task_once(runs):
    """Sharded evaluation, uneven shards and batches: the one-process metrics.json."""
    one, two = (
        json.loads((run_folder(folder, "evaluation") / "metrics.json").read_text())
        for folder in runs
    )
    assert one.keys() == two.keys()
    assert any(values["n_tasks"] % 2 for values in one.values())  # shards of unequal size
    for scenario, values in one.items():
        assert two[scenario]["n_tasks"] == values["n_tasks"], scenario
        assert two[scenario].keys() == values.keys(), scenario
        for key, value in values.items():
            assert two[scenario][key] == pytest.approx(value, abs=1e-6, nan_ok=True), key


@pytest.mark.slow
def test_every_trainable_learner_takes_the_one_device_meta_steps(tmp_path):
    """Every learner with weights to train (ProtoNet, Meta-SGD, the MAML family, fine-tuning,
    LoRA, ...): two meta-steps on two processes give the one-process weights."""
    one, two = tmp_path / "one", tmp_path / "two"
    for name in SLOW_RUNS:
        run(name, 1, one)
    launch(two, 2, SLOW_RUNS)
    for name in SLOW_RUNS:
        assert_same_weights(run_folder(one, name), run_folder(two, name))


def test_the_ranks_meta_batches_are_the_one_device_ones(small_tasks):
    """Over three epochs, one process loads the meta-batches of a shuffled DataLoader (the
    loader before the sampler); with 2 or 4 ranks, the ranks' shares of each step in rank
    order are that meta-batch. 83 tasks: a last meta-batch of 3 is shared 1 + 2 by two ranks
    and dropped by four."""
    tasks = copy.copy(small_tasks)
    tasks.train = small_tasks.train.subset(range(83))
    generator = torch.Generator().manual_seed(3)
    reference = DataLoader(tasks.train, batch_size=16, shuffle=True, generator=generator)
    expected = [[batch["user"].tolist() for batch in reference] for _ in range(3)]

    def epochs(rank: int, world_size: int) -> list[list[list[int]]]:
        datamodule = ColdStartDataModule(tasks, 16, 16, seed=3)
        datamodule._ranks = lambda: (rank, world_size)
        loader = datamodule.train_dataloader()
        drawn = [[batch["user"].tolist() for batch in loader] for _ in range(3)]
        assert all(len(batches) == len(loader) for batches in drawn)
        return drawn

    assert epochs(0, 1) == expected
    for world_size in (2, 4):
        ranks = [epochs(rank, world_size) for rank in range(world_size)]
        for epoch, batches in enumerate(expected):
            kept = [batch for batch in batches if len(batch) >= world_size]
            assert len(kept) == len(batches) - (world_size == 4)
            for step, batch in enumerate(kept):
                assert sum((shares[epoch][step] for shares in ranks), []) == batch


def test_shards_cover_every_task_once():
    for n_items in (0, 1, 5, 23, 64):
        for world_size in (1, 2, 3, 8):
            parts = [shard(n_items, rank, world_size) for rank in range(world_size)]
            assert sum((list(part) for part in parts), []) == list(range(n_items))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_meta_batch_not_divisible_by_the_processes_is_a_clear_error(small_tasks):
    with pytest.raises(Exception, match="learner.meta_batch_size"):
        MetaBatchSampler(len(small_tasks.train), 15, torch.Generator(), 0, 2)


def test_an_evaluation_set_smaller_than_the_processes_is_a_clear_error(small_tasks):
    datamodule = ColdStartDataModule(small_tasks, 16, 16, seed=0)
    tiny = small_tasks.val.subset([0])
    datamodule._ranks = lambda: (0, 2)
    with pytest.raises(Exception, match="1 tasks cannot give each of 2 processes"):
        datamodule._eval_loader(tiny, "validation")
