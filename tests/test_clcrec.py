"""CLCRec: both InfoNCE losses against a brute-force loop, new items represented by their
content alone, and a short meta-training run that predicts new items better than the user's
own mean rating."""

from __future__ import annotations

import math

import pytest
import torch

import metarec.learners.clcrec  # noqa: F401  (registers the learner)
from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import support_of
from metarec.learners.clcrec import info_nce, user_item_nce
from metarec.pipeline import train

from .conftest import SMALL, support_mean_error


def _learner(tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=clcrec", *overrides])
    return build_learner(cfg, tasks).eval()


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_representation_nce_is_the_brute_force_log_softmax():
    torch.manual_seed(1)
    anchor, candidates, tau = torch.randn(4, 3), torch.randn(4, 3), 0.7
    expected = 0.0
    for i in range(4):
        logits = [_cosine(anchor[i].tolist(), c.tolist()) / tau for c in candidates]
        expected -= logits[i] - math.log(sum(math.exp(x) for x in logits))
    assert info_nce(anchor, candidates, tau).item() == pytest.approx(expected / 4, rel=1e-5)


def test_user_item_nce_is_the_brute_force_log_softmax():
    """Each positive (t, i) against every valid query item of the other tasks."""
    torch.manual_seed(2)
    user, items, tau = torch.randn(3, 2), torch.randn(3, 4, 2), 0.5
    valid = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    positive = valid & torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0], [1, 1, 0, 1]], dtype=torch.bool)
    losses = []

    def score(t: int, n: int, q: int) -> float:
        return float(user[t] @ items[n, q]) / tau

    for t in range(3):
        negatives = [score(t, n, q) for n in range(3) if n != t for q in range(4) if valid[n, q]]
        for i in range(4):
            if positive[t, i]:
                denominator = math.exp(score(t, t, i)) + sum(math.exp(x) for x in negatives)
                losses.append(-math.log(math.exp(score(t, t, i)) / denominator))
    actual = user_item_nce(user, items, positive, valid, tau).item()
    assert actual == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_user_item_nce_of_one_task_is_zero_not_nan():
    user, items = torch.randn(1, 2, requires_grad=True), torch.randn(1, 3, 2)
    loss = user_item_nce(
        user, items, torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 3).bool(), 1.0
    )
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(user.grad).all()


def test_new_items_are_represented_by_the_content_encoder(small_tasks):
    learner = _learner(small_tasks)
    net = learner.net
    batch = small_tasks.test["new_item"][torch.arange(4)]
    new = batch["query_item"][batch["query_mask"] & ~net.seen[batch["query_item"]]]
    assert len(new) > 0
    torch.testing.assert_close(net(new), net.content(new), atol=0, rtol=0)
    warm = torch.nonzero(net.seen).squeeze(-1)[:5]
    torch.testing.assert_close(net(warm), net.collaborative(warm), atol=0, rtol=0)
    # A new item's prediction reads its content, never its (untrained) ID row.
    user = learner.adapt(support_of(batch))
    query = {"item": new.view(1, -1).expand(len(user), -1)}
    before = learner.predict(user, query).detach()
    with torch.no_grad():
        net.collaborative.weight[new] += 1.0
    torch.testing.assert_close(learner.predict(user, query).detach(), before, atol=0, rtol=0)
    with torch.no_grad():
        net.content.layers[-1].bias += 1.0
    assert not torch.allclose(learner.predict(user, query).detach(), before)


def test_contrastive_loss_with_lam_one_is_the_representation_nce(small_tasks):
    learner = _learner(small_tasks, "learner.lam=1.0", "learner.tau=0.3")
    batch = small_tasks.train[torch.arange(8)]
    user = learner.adapt(support_of(batch))
    items = torch.cat([batch["support_item"], batch["query_item"]], 1)
    mask = torch.cat([batch["support_mask"], batch["query_mask"]], 1)
    warm = sorted({int(i) for i in items[mask] if learner.net.seen[i]})
    anchor = learner.net.collaborative.weight[warm].tolist()
    content = learner.net.content(torch.tensor(warm)).tolist()
    expected = 0.0
    for i in range(len(warm)):
        logits = [_cosine(anchor[i], c) / 0.3 for c in content]
        expected -= logits[i] - math.log(sum(math.exp(x) for x in logits))
    actual = learner.contrastive_loss(batch, user).item()
    assert actual == pytest.approx(expected / len(warm), rel=1e-4)


def _mae_on_new_items(learner, tasks) -> float:
    new_item = tasks.test["new_item"]
    batch = new_item[torch.arange(len(new_item.query_rating))]
    with torch.enable_grad():
        pred = learner.eval()(batch).detach()
    mask = batch["query_mask"]
    return float(((pred - batch["query_rating"]).abs() * mask).sum(1).div(mask.sum(1)).mean())


def test_short_meta_training_predicts_new_items_from_content(small_tasks, tmp_path):
    """New items' ratings depend on their features in the synthetic data: trained, CLCRec
    beats both an untrained copy and each user's support mean on them."""
    cfg = load_config(
        None, [*SMALL, "learner.name=clcrec", "trainer.max_epochs=10", f"output_dir={tmp_path}"]
    )
    untrained = _mae_on_new_items(_learner(small_tasks), small_tasks)
    result = train(cfg)
    user_mean_mae = support_mean_error(small_tasks.test["new_item"])
    assert result.metrics["new_item"]["mae"] < untrained - 0.05
    assert result.metrics["new_item"]["mae"] < user_mean_mae - 0.05
