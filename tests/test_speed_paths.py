"""The fast paths equal the reference paths they replace, in float64 on small synthetic tasks.

- ``InnerLoop.adapt`` takes every task's inner gradients in one plain-autograd backward under a
  vmapped forward, and where no embedding adapts (MeLU, ANIL) computes the feature embeddings
  once for every step; the reference is ``vmap`` of the per-task ``torch.func.grad`` loop
  (:func:`inner_loop`), which it was until then: same meta-gradients, same predictions.
- MeLU's network splits its first layer's weight, stacks its feature embeddings and reads a
  cut table's mixing rows without a gather; the references are its ``features`` + ``head``
  (one concatenation, the whole weight) and embeddings looked up by hand.
- ``benchmarks/efficiency.py`` counts FLOPs and rates as they are defined.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch.func import vmap

from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import support_of
from metarec.encoders.features import FeatureEmbedding
from metarec.learners import functional
from metarec.learners.functional import Adapted, InnerLoop, Weights, inner_loop, localize

from .conftest import SMALL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import efficiency  # noqa: E402  (benchmarks/ is no package)
import embed_once  # noqa: E402
import meta_training  # noqa: E402
import serving  # noqa: E402

TINY = [*SMALL, "model.hidden=[8,8]", "model.embedding_dim=4", "learner.inner_lr=0.3"]
TOL = {"rtol": 1e-6, "atol": 1e-6}
# The harnesses' options for a short run on the small synthetic data, one thread.
SMALL_RUN = [
    "--synthetic",
    *(arg for key in SMALL for arg in ("--set", key)),
    *("--repeat", "1", "--threads", "1"),
]


def reference_adapt(inner: InnerLoop, net, support, weights: Weights) -> Adapted:
    """``InnerLoop.adapt`` as it was: each task's embedding rows cut out, then ``vmap`` of
    the per-task ``torch.func.grad`` steps (:func:`inner_loop`)."""
    local = localize(net, weights.fast, weights.buffers, support["user"], support["item"])
    support = {**support, "user": local.user, "item": local.item}
    tables = set(local.tables)
    lr, lr_dims = inner.lr, None
    if isinstance(lr, Mapping):
        lr = {k: rate[local.tables[k].rows] if k in tables else rate for k, rate in lr.items()}
        lr_dims = local.dims(lr, tables)

    def one_task(fast, task_buffers, task, rates):
        task_weights = Weights(fast, weights.frozen, task_buffers)
        return inner_loop(net, task_weights, task, inner._replace(lr=rates))

    in_dims = (local.dims(local.fast, tables), local.buffer_dims, 0, lr_dims)
    adapted = vmap(one_task, in_dims=in_dims)(local.fast, local.buffers, support, lr)
    return Adapted(adapted, local.tables, net, weights)


def _learner(small_tasks, name: str, *overrides: str):
    torch.manual_seed(0)
    cfg = load_config(None, [*TINY, f"learner.name={name}", *overrides])
    return build_learner(cfg, small_tasks).double()


def _batch(task_set, n_tasks: int = 6):
    batch = task_set[torch.arange(n_tasks)]
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


def _meta_gradient(learner, batch) -> list[torch.Tensor]:
    learner.train().zero_grad()
    learner.training_loss(batch).backward()
    return [p.grad.clone() for p in learner.parameters() if p.requires_grad]


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("maml", ["learner.adapt=all", "learner.inner_steps=3"]),  # second order, cut tables
        ("fomaml", ["learner.adapt=all", "learner.inner_steps=3"]),
        ("melu", ["learner.inner_steps=2"]),  # decision layers only: embedded once
        ("anil", ["learner.inner_steps=2"]),  # the last layer only: embedded once
        ("metasgd", ["learner.adapt=all", "learner.inner_steps=2"]),  # a rate per weight
        ("metasgd", ["learner.adapt=decision", "learner.inner_steps=2"]),
    ],
)
def test_meta_gradients_equal_the_per_task_torch_func_loop(
    small_tasks, monkeypatch, name, overrides
):
    learner = _learner(small_tasks, name, *overrides)
    batch = _batch(small_tasks.train)
    fast = _meta_gradient(learner, batch)
    with monkeypatch.context() as patch:
        patch.setattr(InnerLoop, "adapt", reference_adapt)
        reference = _meta_gradient(learner, batch)
    assert max(g.abs().max() for g in reference) > 1e-3  # not trivially zero
    for index, (got, expected) in enumerate(zip(fast, reference, strict=True)):
        torch.testing.assert_close(got, expected, **TOL, msg=lambda m, i=index: f"param {i}: {m}")


@pytest.mark.parametrize("name", ["maml", "finetune", "melu", "anil"])
def test_serving_predictions_equal_the_per_task_torch_func_loop(small_tasks, monkeypatch, name):
    learner = _learner(small_tasks, name, "learner.inner_steps=4").eval()
    batch = _batch(small_tasks.test["new_user"], n_tasks=8)
    with torch.enable_grad():  # as evaluation adapts
        fast = learner(batch)
        with monkeypatch.context() as patch:
            patch.setattr(InnerLoop, "adapt", reference_adapt)
            reference = learner(batch)
    assert not fast.requires_grad  # evaluation leaves no graph to the weights
    torch.testing.assert_close(fast, reference, **TOL)
    unadapted = learner.net(batch["user"].unsqueeze(-1), batch["query_item"])
    assert (fast - unadapted).abs().max() > 1e-3  # the users were adapted


def test_adapting_under_no_grad_takes_the_same_steps(small_tasks):
    learner = _learner(small_tasks, "maml", "learner.adapt=all").eval()
    support = support_of(_batch(small_tasks.test["new_user"]))
    with torch.no_grad():
        quiet = learner.adapt(support)
    with torch.enable_grad():
        loud = learner.adapt(support)
    for key, value in loud.fast.items():
        torch.testing.assert_close(quiet.fast[key], value, rtol=0, atol=0)


def test_network_equals_its_concatenated_first_layer(small_tasks):
    net = _learner(small_tasks, "maml").net
    batch = _batch(small_tasks.train)
    user, item = batch["user"].unsqueeze(-1), batch["support_item"]
    weights = dict(net.named_parameters())
    pred = net(user, item)
    reference = net.head(net.features(user, item)).squeeze(-1)  # cat, the whole weight
    torch.testing.assert_close(pred, reference, rtol=1e-12, atol=1e-12)
    for got, expected in zip(
        torch.autograd.grad(pred.square().sum(), list(weights.values())),
        torch.autograd.grad(reference.square().sum(), list(weights.values())),
        strict=True,
    ):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_feature_embeddings_equal_a_lookup_by_hand(small_tasks):
    embedding = _learner(small_tasks, "maml").net.item_features
    rows = torch.tensor([[1, 5, 7], [2, 2, 0]])
    parts = []
    for name in embedding.names:
        index = getattr(embedding, f"table_{name}")[rows]
        vectors = embedding.embeddings[name].weight[index]  # (..., width, dim)
        if name in embedding.weighted:
            parts.append((vectors * getattr(embedding, f"weight_{name}")[rows]).sum(-2))
        else:
            parts.append(vectors.squeeze(-2))
    torch.testing.assert_close(embedding(rows), torch.cat(parts, -1), rtol=0, atol=0)


def test_a_cut_table_is_read_at_every_position_in_order_or_refused():
    mix = torch.arange(12.0).view(4, 3)  # 4 rows' weights on 3 local table rows
    read = FeatureEmbedding._mix_rows(mix, torch.arange(4).view(2, 2))
    assert torch.equal(read, mix[torch.arange(4).view(2, 2)])
    with pytest.raises(ValueError, match="call it with every position"):
        FeatureEmbedding._mix_rows(mix, torch.arange(3))


def test_flops_and_rates_are_counted_as_defined():
    left, right = torch.randn(3, 5), torch.randn(5, 7)
    assert efficiency.count_flops(lambda: left @ right) == 2 * 3 * 5 * 7
    rate = efficiency.achieved(flops=6e9, seconds=2.0, sgemm=12.0)
    assert rate == {"gflop_per_s": 3.0, "sgemm_gflop_per_s": 12.0, "share_of_sgemm": 0.25}
    assert efficiency.sgemm_gflops(size=64, repeat=1) > 0


def test_summary_puts_both_benchmarks_side_by_side():
    train = {
        "by_threads": {
            "1": {
                "tasks_per_second": {"metarec": 200.0, "loop": 40.0},
                "ratios": {"metarec/loop": 5.0},
                "efficiency": {"gflop_per_s": 15.0, "share_of_sgemm": 0.1},
            }
        }
    }
    serve = {
        "by_threads": {
            "1": {
                "users_per_second": {"metarec": 900.0},
                "efficiency": {"gflop_per_s": 12.0, "share_of_sgemm": 0.08},
            }
        }
    }
    row = efficiency.summary(train, serve).splitlines()[-1]
    assert row == "1 | 200.0 | 40.0 | - | 5.00x | - | 15.0 | 10.0% | 900.0 | 12.0 | 8.0%"


def test_harnesses_report_their_efficiency_and_serving_picks_its_batch(tmp_path):
    small = ["--set", "learner.meta_batch_size=4", "--set", "learner.inner_steps=2"]
    trained = meta_training.main(
        [*SMALL_RUN, *small, "--steps", "1", "--no-learn2learn", "--out", str(tmp_path / "t.json")]
    )
    served = serving.main([*SMALL_RUN, "--users", "6", "--out", str(tmp_path / "s.json")])
    assert json.loads((tmp_path / "s.json").read_text()) == served
    for report in (trained, served):
        rate = report["by_threads"]["1"]["efficiency"]
        assert rate["gflop_per_s"] > 0 and rate["sgemm_gflop_per_s"] > 0
        assert rate["share_of_sgemm"] == rate["gflop_per_s"] / rate["sgemm_gflop_per_s"]
    serve = served["by_threads"]["1"]
    assert serve["batch_size"] == 6  # every candidate size is capped at the 6 users
    assert set(serve["users_per_second_by_batch_size"]) == {"6"}
    summary = efficiency.summary(trained, served).splitlines()
    assert len(summary) == 3 and summary[-1].startswith("1 | ")


def test_the_embed_once_harness_checks_both_paths_agree_and_restores_the_switch(tmp_path):
    small = [
        "--set",
        "learner.meta_batch_size=4",
        "--steps",
        "1",
        "--out",
        str(tmp_path / "e.json"),
    ]
    report = embed_once.main([*SMALL_RUN, *small])
    assert functional.embeds_once is embed_once.ORIGINAL  # the switch is back on
    assert set(report["learners"]) == {"melu", "anil"}
    for found in report["learners"].values():
        assert found["max_abs_diff"] <= 1e-5 * found["max_abs_grad"]  # the same meta-gradients
        rates = found["by_threads"]["1"]
        assert (
            rates["ratio"]
            == rates["meta_steps_per_second"]["once"]
            / (rates["meta_steps_per_second"]["every step"])
        )
