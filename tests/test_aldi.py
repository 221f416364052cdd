"""ALDI: each alignment loss against a hand computation, the warm-item weights, a teacher that
trains first and then stays frozen, warm items read by the teacher and new ones by the
student, and a short run that predicts new items from content."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
import torch

import metarec.learners.aldi  # noqa: F401  (registers the learner)
from metarec.build import build_learner
from metarec.config.load import load_config
from metarec.data.batch import support_of
from metarec.learners.aldi import identification_alignment, ranking_alignment, rating_alignment
from metarec.pipeline import train

from .conftest import SMALL, fit, support_mean_error


def _learner(tasks, *overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [*SMALL, "learner.name=aldi", *overrides])
    return build_learner(cfg, tasks)


def _bce(logit: float, target: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_rating_alignment_by_hand():
    student = torch.tensor([[1.0, 2.0, 9.0], [0.0, 3.0, 4.0]])
    teacher = torch.tensor([[2.0, 0.5, 0.0], [1.0, 3.0, 6.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # |1 - 2| + |2 - .5| + |0 - 1| + |3 - 3| + |4 - 6| over 5 entries (9 vs 0 is padding).
    assert rating_alignment(student, teacher, mask).item() == pytest.approx(5.5 / 5)


def test_ranking_alignment_by_hand():
    """One task, items 0 and 1 rated (item 2 padding): pairs (0, 1) and (1, 0)."""
    student, teacher = torch.tensor([[1.0, 0.0, 5.0]]), torch.tensor([[2.0, 0.0, -5.0]])
    weight, mask = torch.tensor([[1.0, 0.5, 3.0]]), torch.tensor([[True, True, False]])
    expected = (1.0 * _bce(1.0, _sigmoid(2.0)) + 0.5 * _bce(-1.0, _sigmoid(-2.0))) / 2
    assert ranking_alignment(student, teacher, weight, mask).item() == pytest.approx(expected)


def test_identification_alignment_by_hand():
    student = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    teacher = torch.tensor([[0.5, 0.5], [1.0, -1.0], [2.0, 0.0]])
    weight = torch.tensor([1.0, 0.2, 0.7])

    def distance(rows, i):  # q_i . q_i minus the mean of q_i . q_j over the other items
        dot = [sum(a * b for a, b in zip(rows[i], rows[j], strict=True)) for j in range(3)]
        return dot[i] - sum(dot[j] for j in range(3) if j != i) / 2

    s, t = student.tolist(), teacher.tolist()
    expected = sum(
        weight[i].item() * _bce(distance(s, i), _sigmoid(distance(t, i))) for i in range(3)
    )
    actual = identification_alignment(student, teacher, weight).item()
    assert actual == pytest.approx(expected / 3, rel=1e-6)


def test_item_weights_are_capped_tanh_of_training_counts(small_tasks):
    learner = _learner(small_tasks, "learner.freq_a=0.05", "learner.freq_m=0.3")
    train_set = small_tasks.train
    counts = Counter(train_set.support_item[train_set.support_mask].tolist())
    counts.update(train_set.query_item[train_set.query_mask].tolist())
    for item in [0, 1, 2, 50, 100, 199]:
        expected = min(math.tanh(0.05 * counts.get(item, 0)), math.tanh(0.3))
        assert learner.net.weight[item].item() == pytest.approx(expected, rel=1e-6)


def test_teacher_trains_first_then_stays_frozen_while_the_student_trains(small_tasks):
    learner = _learner(small_tasks, "learner.teacher_epochs=1")
    initial = copy.deepcopy(learner.net.teacher.state_dict())
    fit(learner, small_tasks, steps=1, eval_batch=16)  # trains the teacher, then one student step
    trained = copy.deepcopy(learner.net.teacher.state_dict())
    assert not torch.equal(trained["factors.weight"], initial["factors.weight"])
    assert bool(learner.net.teacher_ready)
    student = copy.deepcopy(learner.net.student.state_dict())
    fit(learner, small_tasks, steps=3, eval_batch=16)  # student steps only: the teacher is ready
    for key, value in learner.net.teacher.state_dict().items():
        assert torch.equal(value, trained[key]), key
    moved = learner.net.student.state_dict()
    assert any(not torch.equal(moved[key], student[key]) for key in student)
    # The student's loss does not reach the teacher at all.
    learner.student_loss(small_tasks.train[torch.arange(8)]).backward()
    assert all(p.grad is None for p in learner.net.teacher.parameters())


def test_warm_items_read_the_teacher_and_new_items_the_student(small_tasks):
    learner = _learner(small_tasks).eval()
    batch = small_tasks.test["new_item"][torch.arange(6)]
    # Query items: the tasks' own new items beside four warm items (the new-item tasks' support
    # sets hold new items too).
    warm = torch.nonzero(learner.net.teacher.seen).squeeze(-1)[:4].expand(6, -1)
    query = {
        "item": torch.cat([warm, batch["query_item"][:, :4]], 1),
        "mask": torch.cat([torch.ones_like(warm, dtype=torch.bool), batch["query_mask"][:, :4]], 1),
    }
    seen = learner.net.teacher.seen[query["item"]] & query["mask"]
    new = ~learner.net.teacher.seen[query["item"]] & query["mask"]
    assert seen.any() and new.any()
    users = learner.adapt(support_of(batch))
    before = learner.predict(users, query).detach()
    with torch.no_grad():
        learner.net.student.layers[-1].bias += 0.5  # the generator only, users kept
    after = learner.predict(users, query).detach()
    torch.testing.assert_close(after[seen], before[seen], atol=0, rtol=0)
    assert (after[new] != before[new]).all()


def test_short_meta_training_predicts_new_items_from_content(small_tasks, tmp_path):
    """New items' ratings depend on their features in the synthetic data: trained, ALDI
    beats each user's support mean on them."""
    cfg = load_config(
        None, [*SMALL, "learner.name=aldi", "trainer.max_epochs=10", f"output_dir={tmp_path}"]
    )
    result = train(cfg)
    user_mean_mae = support_mean_error(small_tasks.test["new_item"])
    assert result.metrics["new_item"]["mae"] < user_mean_mae - 0.1
