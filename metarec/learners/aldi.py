"""ALDI: aligning distillation for item cold start (Huang, Wang, Wei, Lin, Chen, Xu,
"Aligning Distillation For Cold-start Item Recommendation", SIGIR 2023).

A warm teacher (biased MF, ``baselines/mf.py``'s item factors, trained on the meta-training
ratings and then frozen) scores warm items; a student generator maps an item's content
(``clcrec.ContentEncoder``: its features and, with ``item.text``, its text) to the teacher's
item bias and factors, and scores new items. Besides its own rating loss the student is
aligned with the teacher on the meta-batch by three losses, ``t`` and ``s`` the teacher's and
the student's scores of a task's query items:

- rating distribution alignment: ``L_R = mean_(u,i) |t_ui - s_ui|``;
- ranking alignment: ``L_K = mean_(u,i,j) w_i BCE(s_ui - s_uj, sigmoid(t_ui - t_uj))`` over
  pairs of a task's query items;
- identification alignment: ``L_I = mean_i w_i BCE(d^S_i, sigmoid(d^T_i))`` with
  ``d_i = q_i . q_i - mean_(j != i) q_i . q_j`` over the batch's distinct warm items (teacher
  factors ``q``, generated factors for ``d^S``);

``loss = rating loss + alpha L_K + beta L_I + gamma L_R``. The warm-item rate weighting
``w_i = min(tanh(freq_a n_i), tanh(freq_m))`` (``n_i`` the item's meta-training ratings)
trusts the teacher more on items it saw often.

Adaptation to metarec: every task is a user nobody has seen, so each model folds in its own
user ``[b_u, p_u]`` from the support set by ridge regression on its item features (the
student's fold-in stands for ALDI's user mapper ``f_U``). The teacher trains first, for
``teacher_epochs`` over the meta-training tasks (its query loss after fold-in, MF's objective),
before the first student step (``on_train_start``); it is then frozen. A prediction reads the
teacher for items meta-training rated and the student for the rest.

Differences from the authors' code (zfnWong/ALDI, and YuanchenBei/ColdRec's port): their
teacher is a BPR-MF trained beforehand and loaded from disk, their supervised loss is BPR on
(positive, sampled negative) pairs and their alignment pairs are those (positive, negative)
pairs; here the losses are over all pairs of a task's rated query items and the supervised
loss is the rating loss. Their identification term averages over the negatives, the item
itself possibly among them; here over the other distinct items. No L2 on the generator.
Teacher pretraining is per process: under several processes the teachers are not synced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from metarec.bias import item_means
from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch, support_of
from metarec.data.scenarios import ColdStartTasks
from metarec.learners.base import MetaLearner, adam
from metarec.learners.clcrec import ContentEncoder
from metarec.learners.foldin import ItemFactors, fold_in, rated_items
from metarec.registry import LEARNERS

Users = tuple[torch.Tensor, torch.Tensor]  # teacher's and student's [b_u, p_u], (T, 1 + k) each


def rating_alignment(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``L_R``: the mean absolute gap between the scores (T, Q) where ``mask`` holds."""
    return ((teacher - student).abs() * mask).sum() / mask.sum().clamp(min=1)


def ranking_alignment(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``L_K``: scores (T, Q), item weights (T, Q), over every ordered pair i != j of a task's
    query items."""
    pairs = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    pairs &= ~torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
    logit = student.unsqueeze(-1) - student.unsqueeze(-2)
    target = torch.sigmoid(teacher.unsqueeze(-1) - teacher.unsqueeze(-2))
    loss = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    return torch.where(pairs, weight.unsqueeze(-1) * loss, 0.0).sum() / pairs.sum().clamp(min=1)


def identification_alignment(
    student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``L_I``: item factors (N, k) of student and teacher, item weights (N,)."""

    def distance(factors: torch.Tensor) -> torch.Tensor:
        dots = factors @ factors.T
        others = (dots.sum(-1) - dots.diagonal()) / max(len(factors) - 1, 1)
        return dots.diagonal() - others

    target = torch.sigmoid(distance(teacher))
    loss = F.binary_cross_entropy_with_logits(distance(student), target, reduction="none")
    return (weight * loss).mean()


class ALDINet(nn.Module):
    """The teacher (MF item biases and factors), the student generator, and the item weights."""

    def __init__(self, tasks: ColdStartTasks, model: ModelConfig, settings: ALDISettings):
        super().__init__()
        count, mean = rated_items(tasks)
        seen = count > 0
        items, ratings = tasks.train_ratings()
        offset = (item_means(items, ratings, len(seen)) - mean).float()
        if settings.residual:  # ratings arrive as residuals of item and user means already
            mean, offset = 0.0, torch.zeros_like(offset)
        self.teacher = ItemFactors(seen, offset, mean, settings.factors, settings.init_std)
        self.teacher.requires_grad_(False)  # trained only by ``ALDI.train_teacher``
        self.student = ContentEncoder(tasks.dataset.items, model, 1 + settings.factors)
        weight = torch.tanh(settings.freq_a * count).clamp(max=math.tanh(settings.freq_m))
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("teacher_ready", torch.tensor(False))  # saved: no retraining

    @property
    def rating_mean(self) -> torch.Tensor:
        return self.teacher.rating_mean

    def generated(self, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's item biases ``item.shape`` and features ``[1, g_i]``."""
        out = self.student(item)
        return out[..., 0], torch.cat([torch.ones_like(out[..., :1]), out[..., 1:]], -1)


@dataclass
class ALDISettings(LearnerConfig):
    """Sizes and loss weights of ALDI, and the teacher's training."""

    factors: int = setting(16, "latent factors of teacher and student", domain=AT_LEAST_ONE)
    alpha: float = setting(1.0, "weight of the ranking alignment L_K", domain=NON_NEGATIVE)
    beta: float = setting(0.1, "weight of the identification alignment L_I", domain=NON_NEGATIVE)
    gamma: float = setting(
        0.1, "weight of the rating distribution alignment L_R", domain=NON_NEGATIVE
    )
    freq_a: float = setting(0.1, "slope a of the item weight tanh(a n_i)", domain=POSITIVE)
    freq_m: float = setting(10.0, "cap M of the item weight: tanh(M)", domain=POSITIVE)
    ridge_l2: float = setting(3.0, "ridge penalty on the folded-in users", domain=NON_NEGATIVE)
    init_std: float = setting(0.01, "std of the teacher's initial factors", domain=POSITIVE)
    teacher_epochs: int = setting(
        3, "epochs over the meta-training tasks that train the teacher", domain=AT_LEAST_ONE
    )
    teacher_lr: float = setting(1e-2, "Adam learning rate of the teacher", domain=POSITIVE)
    outer_lr: float = setting(1e-2, "Adam learning rate of the student", domain=POSITIVE)


@LEARNERS.register("aldi")
class ALDI(MetaLearner):
    """Teacher on warm items, content-generated student on new items, aligned by distillation."""

    Settings = ALDISettings
    units = ("user",)  # the generator maps items' content; tasks are users

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: ALDISettings
    ) -> nn.Module:
        return ALDINet(tasks, model, settings)

    def user(self, item: tuple[torch.Tensor, torch.Tensor], support: Batch) -> torch.Tensor:
        """One model's user ``[b_u, p_u]`` (T, 1 + k) from the support ratings, ``item`` that
        model's (biases, features) of the support items."""
        bias, features = item
        residual = support["rating"] - self.net.rating_mean - bias
        return fold_in(features, residual, support["mask"], self.cfg.ridge_l2)

    def score(self, user: torch.Tensor, item: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """One model's predicted ratings (T, Q), ``item`` its (biases, features) of the items."""
        bias, features = item
        return self.net.rating_mean + bias + (features @ user.unsqueeze(-1)).squeeze(-1)

    def adapt(self, support: Batch) -> Users:
        """The teacher's and the student's folded-in users."""
        item = support["item"]
        return self.user(self.net.teacher(item), support), self.user(
            self.net.generated(item), support
        )

    def predict(self, users: Users, query: Batch) -> torch.Tensor:
        """The teacher's rating for an item meta-training rated, else the student's."""
        item = query["item"]
        teacher = self.score(users[0], self.net.teacher(item))
        student = self.score(users[1], self.net.generated(item))
        return torch.where(self.net.teacher.seen[item], teacher, student)

    def student_loss(self, batch: Batch) -> torch.Tensor:
        """The student's rating loss plus ``alpha L_K + beta L_I + gamma L_R``; the teacher's
        outputs are constants."""
        teacher_user, student_user = self.adapt(support_of(batch))
        teacher = self.score(teacher_user, self.net.teacher(batch["query_item"])).detach()
        student = self.score(student_user, self.net.generated(batch["query_item"]))
        mask = batch["query_mask"]
        pred = student.clamp(0.0, 1.0) if self.binary else student
        loss = self.loss(pred, batch["query_rating"], mask).mean()
        weight = self.net.weight[batch["query_item"]]
        loss = loss + self.cfg.alpha * ranking_alignment(student, teacher, weight, mask)
        items = torch.cat([batch["support_item"], batch["query_item"]], 1)
        every = torch.cat([batch["support_mask"], mask], 1)
        warm = items[every & self.net.teacher.seen[items]].unique()
        factors = self.net.teacher(warm)[1][:, 1:].detach()
        generated = self.net.generated(warm)[1][:, 1:]
        loss = loss + self.cfg.beta * identification_alignment(
            generated, factors, self.net.weight[warm]
        )
        return loss + self.cfg.gamma * rating_alignment(student, teacher, mask)

    def training_loss(self, batch: Batch) -> torch.Tensor:
        return self.student_loss(batch)

    def teacher_loss(self, batch: Batch) -> torch.Tensor:
        """MF's objective: the teacher's query loss after fold-in."""
        user = self.user(self.net.teacher(batch["support_item"]), support_of(batch))
        teacher = self.score(user, self.net.teacher(batch["query_item"]))
        teacher = teacher.clamp(0.0, 1.0) if self.binary else teacher
        return self.loss(teacher, batch["query_rating"], batch["query_mask"]).mean()

    def train_teacher(self, batches: list[Batch]) -> None:
        """``teacher_epochs`` of Adam on the teacher over ``batches``, then frozen."""
        teacher = self.net.teacher
        teacher.requires_grad_(True)
        optimizer = adam(teacher.parameters(), self.cfg.teacher_lr)
        with torch.enable_grad():
            for _ in range(self.cfg.teacher_epochs):
                for batch in batches:
                    optimizer.zero_grad()
                    self.teacher_loss(batch).backward()
                    optimizer.step()
        teacher.requires_grad_(False)
        self.net.teacher_ready.fill_(True)

    def on_train_start(self) -> None:
        """Train the teacher before the student's first step, unless a checkpoint holds it."""
        if bool(self.net.teacher_ready):
            return
        limit = self.trainer.num_training_batches
        loader = islice(self.trainer.train_dataloader, None if math.isinf(limit) else int(limit))
        # On the device, as the training steps get them (residuals taken, if any).
        batches = [
            self.on_after_batch_transfer(self.transfer_batch_to_device(batch, self.device, 0), 0)
            for batch in loader
        ]
        self.train_teacher(batches)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.net.student.parameters(), self.cfg.outer_lr)
