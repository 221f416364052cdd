"""Shared fixtures: small synthetic runs on CPU with no logger noise."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from metarec.config import load_config
from metarec.data.datamodule import ColdStartTasks, load_dataset

# A synthetic dataset small enough for unit tests, big enough that adaptation shows.
SMALL = [
    "data.synthetic.n_users=300",
    "data.synthetic.n_items=200",
    "learner.meta_batch_size=16",
    "learner.eval_batch_size=64",
    "trainer.progress_bar=false",
]


# Test tensors are tiny: one thread avoids oversubscribing a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        yield


@pytest.fixture(scope="session")
def small_tasks():
    """Tasks of the small synthetic dataset (built once per session)."""
    cfg = load_config(None, SMALL)
    return ColdStartTasks(load_dataset(cfg.data), cfg.data)
