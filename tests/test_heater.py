"""Heater: the mixture of experts is the gate-weighted sum of its experts, randomized training
reads content at the given rate, the similarity loss is the mean gap to the collaborative
embeddings, and it learns new items from content on synthetic data."""

from __future__ import annotations

import torch

import metarec.learners.heater  # noqa: F401  (registers the learner)
from metarec.build import build_learner
from metarec.config.load import load_config

from .conftest import SMALL
from .test_dropoutnet import check_learns_new_items


def make(tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=heater", *overrides])
    return build_learner(cfg, tasks)


def all_tasks(task_set):
    return task_set[torch.arange(len(task_set))]


def seen_rows(learner, count):
    seen = learner.net.collaborative.seen.nonzero().squeeze(-1)
    return seen[torch.randint(len(seen), (count,))]


def test_mixture_is_the_gate_weighted_sum_of_experts(small_tasks):
    learner = make(small_tasks, "learner.experts=3")
    net = learner.net
    items = torch.arange(1, 41)
    content = net.item_content(items)
    with torch.no_grad():
        gates, mixed = net.transform.gates(content), net.transform(content)
    torch.testing.assert_close(gates.sum(-1), torch.ones(len(items)))
    assert (gates > 0).all()
    for row in range(len(items)):  # one item, one expert at a time
        logits = net.transform.gate.weight @ content[row] + net.transform.gate.bias
        weights = [logit.exp() / logits.exp().sum() for logit in logits]
        with torch.no_grad():
            expected = sum(
                w * expert(content[row])
                for w, expert in zip(weights, net.transform.experts, strict=True)
            )
        torch.testing.assert_close(mixed[row], expected)


def test_randomized_training_reads_content_at_the_given_rate(small_tasks):
    learner = make(small_tasks, "learner.content_rate=0.3")
    net = learner.net
    item = seen_rows(learner, 20_000)
    with torch.no_grad():
        collaborative = net.collaborative.vectors.weight[item]
        transformed = net.transform(net.item_content(item))
        trained = net.fold_basis(item, training=True)
        evaluated = net.fold_basis(item, training=False)
    from_content = (trained == transformed).all(-1)
    assert ((trained == collaborative).all(-1) ^ from_content).all()  # one or the other
    assert abs(from_content.float().mean().item() - 0.3) < 0.02  # binomial sd 0.003
    assert torch.equal(evaluated, collaborative)  # seen items keep theirs in evaluation
    new = (~net.collaborative.seen).nonzero().squeeze(-1)
    with torch.no_grad():
        for training in (True, False):  # new items read content, always
            expected = net.transform(net.item_content(new))
            torch.testing.assert_close(net.fold_basis(new, training=training), expected)


def test_similarity_loss_is_the_mean_gap_over_seen_items(small_tasks):
    learner = make(small_tasks, "learner.alignment=0.7").eval()  # eval: no random draws
    net = learner.net
    batch = small_tasks.train[torch.arange(8)]
    loss = learner.training_loss(batch)
    query_loss = learner.loss(learner(batch), batch["query_rating"], batch["query_mask"]).mean()
    gaps = []
    for side in ("support", "query"):
        for items, mask in zip(batch[f"{side}_item"], batch[f"{side}_mask"], strict=True):
            for item in items[mask]:
                if net.collaborative.seen[item]:
                    content = net.item_content(item)
                    gaps.append(((net.transform(content) - net.collaborative(item)) ** 2).sum())
    assert gaps
    torch.testing.assert_close(loss - query_loss, 0.7 * torch.stack(gaps).mean())
    # The collaborative embeddings are the similarity loss's fixed targets.
    similarity, _ = net.alignment(batch["query_item"], batch["query_mask"])
    similarity.backward()
    assert net.collaborative.vectors.weight.grad is None
    assert net.transform.gate.weight.grad.abs().sum() > 0


def test_learns_new_items_from_content(small_tasks):
    check_learns_new_items(make, small_tasks)
