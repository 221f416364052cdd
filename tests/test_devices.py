"""Every registered learner computes on the device of its network and tasks: a tensor made
without ``device=`` (``torch.eye``, ``torch.zeros``, ``torch.arange``...) lands on the CPU,
which passes on a CPU-only machine and breaks on a GPU. CI has no GPU, so two stand-ins:

- the ``meta`` device (shapes, no data): network and batch there, a stray CPU tensor meets a
  meta one and raises. Adapting embedding tables cannot run there: it cuts each table to the
  rows a task uses, as many as the data says (``functional.local_rows``);
- real data on the CPU under a torch function mode that fails as soon as metarec's own code
  (or a test's) calls a factory function without ``device=``: every learner, meta or not.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

import metarec
from metarec.build import build_learner
from metarec.catalog import LEARNERS
from metarec.config.load import load_config
from metarec.learners.base import MetaLearner

from .conftest import SMALL, learner_overrides

ALL = LEARNERS.names()
TEXT_ONLY = {"textsim"}  # reads the item texts only (as in test_learners.py)
PHASES = ("train", "eval")

# Functions that make a tensor on the default device unless given ``device=``.
FACTORIES = {
    torch.arange, torch.empty, torch.empty_strided, torch.eye, torch.full, torch.linspace,
    torch.logspace, torch.ones, torch.rand, torch.randint, torch.randn, torch.randperm,
    torch.scalar_tensor, torch.tensor, torch.tril_indices, torch.triu_indices, torch.zeros,
}  # fmt: skip
CONVERTERS = {torch.as_tensor, torch.asarray}  # a tensor given keeps its device; data does not
CHECKED = (Path(metarec.__file__).parent, Path(__file__).parent)  # whose calls are checked
TORCH = Path(torch.__file__).parent


class DevicelessFactories(TorchFunctionMode):
    """Fails a factory call without ``device=`` made by code under ``CHECKED`` (libraries'
    own calls are theirs: peft makes its LoRA layers on the CPU, then moves them)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        data = args[0] if args else kwargs.get("data", kwargs.get("obj"))
        converts_data = func in CONVERTERS and not isinstance(data, torch.Tensor)
        if (func in FACTORIES or converts_data) and kwargs.get("device") is None:
            frame = sys._getframe(1)
            while frame is not None and Path(frame.f_code.co_filename).is_relative_to(TORCH):
                frame = frame.f_back  # skip torch's own Python wrappers
            where = Path(frame.f_code.co_filename) if frame is not None else None
            if where is not None and any(where.is_relative_to(root) for root in CHECKED):
                raise AssertionError(
                    f"{where}:{frame.f_lineno} ({frame.f_code.co_name}) calls "
                    f"torch.{func.__name__} without device=: it lands on the CPU on a GPU run"
                )
        return func(*args, **kwargs)


@pytest.fixture
def learner_and_batch(small_tasks, small_text_tasks):
    """(learner, batch of 12 tasks) for a learner name and phase: training tasks to train on,
    new-user test tasks to evaluate."""

    def make(name: str, phase: str) -> tuple[MetaLearner, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        tasks = small_text_tasks if name in TEXT_ONLY else small_tasks
        learner = build_learner(load_config(None, [*SMALL, *learner_overrides(name)]), tasks)
        task_set = tasks.train if phase == "train" else tasks.test["new_user"]
        return learner, task_set[torch.arange(12)]

    return make


def run(learner: MetaLearner, batch: dict[str, torch.Tensor], phase: str) -> torch.Tensor:
    """One training loss and its backward, or the query predictions as evaluation makes them."""
    if phase == "eval":
        with torch.enable_grad():  # evaluation adapts with gradients
            return learner.eval()(batch)
    loss = learner.train().training_loss(batch)
    if loss.requires_grad:  # a baseline with nothing to train has no graph
        loss.backward()
    return loss


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", ALL)
def test_runs_on_the_meta_device(name, phase, learner_and_batch):
    learner, batch = learner_and_batch(name, phase)
    learner.to("meta")
    batch = {key: value.to("meta") for key, value in batch.items()}
    learner.group_overhead = 0  # grouping tasks by support length reads the lengths
    try:
        out = run(learner, batch, phase)
    except NotImplementedError as error:  # a shape that depends on the values (nonzero)
        if "torch.nonzero" not in str(error):
            raise
        pytest.skip(f"{name} selects rows by their values (meta tensors have none)")
    except RuntimeError as error:
        frames = {frame.name for frame in traceback.extract_tb(error.__traceback__)}
        if "cannot be called on meta tensors" in str(error) and "local_rows" in frames:
            pytest.skip(f"{name} cuts embedding tables to rows sized by the data (meta has none)")
        raise
    assert out.device.type == "meta"
    if phase == "eval":
        assert out.shape == batch["query_item"].shape


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", ALL)
def test_makes_no_tensor_without_a_device(name, phase, learner_and_batch):
    learner, batch = learner_and_batch(name, phase)
    learner.group_overhead = 1.0  # tasks adapted in several length groups, as on real data
    with DevicelessFactories():
        out = run(learner, batch, phase)
    assert torch.isfinite(out).all()


def test_the_mode_fails_a_factory_call_without_a_device():
    inputs = torch.ones(3)
    with DevicelessFactories():
        torch.eye(3, device=inputs.device)
        torch.zeros_like(inputs)
        torch.as_tensor(inputs)  # keeps the tensor's device
        with pytest.raises(AssertionError, match=r"test_devices.py:\d+ .* torch.eye without"):
            torch.eye(3, dtype=inputs.dtype)
        with pytest.raises(AssertionError, match="torch.as_tensor without"):
            torch.as_tensor([1.0, 2.0])
