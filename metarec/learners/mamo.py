"""MAMO: memory-augmented meta-optimisation (Dong, Yuan, Yang, Li and Zhang, "MAMO:
Memory-Augmented Meta-Optimization for Cold-start Recommendation", KDD 2020).

A user task adapts by gradient steps on its support set (the user's rated items), MAML-style,
from an initialisation personalised by two memories read with the user's profile p_u (the
embedding of the user's categorical features):

- attention over K memory slots, a_u = softmax(cos(p_u, M_U)) (Eq. 4), M_U the profile memory;
- feature-specific memory: the user-embedding layer starts at theta_u = phi_u - tau * b_u, with
  the personalised bias b_u = a_u^T M_W (Eqs. 5-6);
- task-specific memory: the user-item preference layer starts at M_{u,I} = a_u^T M_{U,I}
  (Eq. 7), the fast weights cached for users like this one.

While meta-training, each task writes the memories with moving averages (Eq. 8):
M_U <- alpha a_u p_u^T + (1 - alpha) M_U, M_W <- beta a_u (grad_theta_u L)^T + (1 - beta) M_W,
M_{U,I} <- gamma a_u (M_{u,I} adapted) + (1 - gamma) M_{U,I}; the slow weights take the outer
(meta-gradient) step as in MAML. Evaluation reads the memories and never writes them.

Equation numbers are those the issue gives for the paper, not checked against its text.

Differences from the authors' code (dongmanqing/Code-for-MAMO): the attention is the paper's
softmax of cosines (the code puts a fresh, untrained linear layer between them); the inner loop
is plain SGD through metarec's :func:`inner_loop` (the code: Adam, gradient clipping); M_W starts
at zero (the code draws it, and overwrites the network's user weights, with N(0, 0.05)) and the
preference memory at the identity plus noise (the code: N(0, 1)); tasks of a meta-batch write
the memories one after the other, after the batch has been adapted. The user's feature
embedding is a slow weight here, not adapted per task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.func import vmap
from torch.nn import functional as F

from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, OPEN_FRACTION, POSITIVE, setting
from metarec.config.schema import LearnerConfig, ModelConfig
from metarec.data.batch import Batch, query_of, support_of
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import RecDataset
from metarec.encoders.features import FeatureEmbedding
from metarec.encoders.network import relu_layers
from metarec.learners.base import MetaLearner
from metarec.learners.functional import InnerLoop, Params, Weights, call, inner_loop
from metarec.registry import LEARNERS


@dataclass
class MAMOSettings(LearnerConfig):
    """Memories and local update of MAMO (defaults: the authors' configs.py)."""

    memory_slots: int = setting(3, "K, slots of each memory", domain=AT_LEAST_ONE)
    tau: float = setting(0.01, "scale of the personalised bias b_u in theta_u", domain=NON_NEGATIVE)
    alpha: float = setting(
        0.5, "moving-average rate of the profile memory M_U", domain=OPEN_FRACTION
    )
    beta: float = setting(0.05, "moving-average rate of the bias memory M_W", domain=OPEN_FRACTION)
    gamma: float = setting(
        0.1, "moving-average rate of the preference memory M_{U,I}", domain=OPEN_FRACTION
    )
    inner_steps: int = setting(3, "local gradient steps on the support set", domain=NON_NEGATIVE)
    inner_lr: float = setting(0.01, "learning rate of the local steps", domain=POSITIVE)
    first_order: bool = setting(False, "drop second-order terms of the meta-gradient")


class MAMONet(nn.Module):
    """Feature embeddings -> user and item embedding layers -> user-item preference layer ->
    ReLU layers -> rating; beside it the three memories (buffers, written by moving averages).

    The preference layer's weight is a buffer, not a slow weight: each task's starts from the
    task memory. Called directly, the network uses its default (the identity).
    """

    def __init__(self, dataset: RecDataset, model: ModelConfig, rating_mean: float, slots: int):
        super().__init__()
        dim = model.embedding_dim
        self.user_features = FeatureEmbedding(dataset.users, dim)
        self.item_features = FeatureEmbedding(dataset.items, dim)
        self.user_embedding = nn.Sequential(nn.Linear(self.user_features.out_dim, dim), nn.ReLU())
        self.item_embedding = nn.Sequential(nn.Linear(self.item_features.out_dim, dim), nn.ReLU())
        self.register_buffer("preference_weight", torch.eye(2 * dim), persistent=False)
        self.preference_bias = nn.Parameter(torch.zeros(2 * dim))
        layers, width = relu_layers(2 * dim, model.hidden)
        out = nn.Linear(width, 1)
        self.binary = dataset.binary
        if self.binary:
            rate = min(max(rating_mean, 1e-3), 1 - 1e-3)
            rating_mean = math.log(rate / (1 - rate))
        nn.init.constant_(out.bias, rating_mean)  # start at the mean rating, not at 0
        self.decision = nn.Sequential(*layers, out)
        user_size = sum(p.numel() for p in self.user_embedding.parameters())
        self.register_buffer("profile_memory", torch.randn(slots, self.user_features.out_dim))
        self.register_buffer("bias_memory", torch.zeros(slots, user_size))
        noise = 0.01 * torch.randn(slots, 2 * dim, 2 * dim)
        self.register_buffer("preference_memory", torch.eye(2 * dim) + noise)

    def attention(self, user: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, K) attention a_u over the memory slots (Eq. 4) and the profiles p_u (T, P)."""
        profile = self.user_features(user)
        similarity = F.cosine_similarity(profile.unsqueeze(1), self.profile_memory, dim=-1)
        return similarity.softmax(-1), profile

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for (user row, item row) pairs of any broadcastable shape."""
        user_part = self.user_embedding(self.user_features(user))
        item_part = self.item_embedding(self.item_features(item))
        shape = torch.broadcast_shapes(user_part.shape[:-1], item_part.shape[:-1])
        pair = torch.cat([user_part.expand(*shape, -1), item_part.expand(*shape, -1)], dim=-1)
        preferred = F.linear(pair, self.preference_weight, self.preference_bias)
        out = self.decision(preferred).squeeze(-1)
        return torch.sigmoid(out) if self.binary else out


class Personalised(NamedTuple):
    """A batch of tasks' memory reads and adapted weights: what predicting and writing need."""

    attention: torch.Tensor  # (T, K)
    profile: torch.Tensor  # (T, P)
    user_start: torch.Tensor  # (T, |phi_u|) theta_u, flat: the personalised start
    fast: Params  # per-task adapted weights, leading dimension T
    weights: Weights  # the shared weights (frozen, buffers) the tasks were adapted with


@LEARNERS.register("mamo")
class MAMO(MetaLearner):
    """Local gradient steps from a start personalised by feature and task memories."""

    Settings = MAMOSettings

    @classmethod
    def build_network(
        cls, tasks: ColdStartTasks, model: ModelConfig, settings: MAMOSettings
    ) -> nn.Module:
        _, ratings = tasks.train_ratings()
        mean = 0.0 if settings.residual else float(ratings.mean())
        return MAMONet(tasks.dataset, model, mean, settings.memory_slots)

    def user_names(self) -> list[str]:
        """The user-embedding layer's weights, phi_u, whose start the feature memory sets."""
        return [f"user_embedding.{name}" for name, _ in self.net.user_embedding.named_parameters()]

    def personalised_start(self, user: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Attention, profiles, flat theta_u (Eqs. 4-6) and preference weights (Eq. 7)."""
        net = self.net
        attention, profile = net.attention(user)
        phi_u = torch.cat([p.flatten() for p in net.user_embedding.parameters()])
        bias = attention @ net.bias_memory  # b_u = a_u^T M_W
        user_start = phi_u - self.cfg.tau * bias
        preference = torch.einsum("tk,kij->tij", attention, net.preference_memory)
        return attention, profile, user_start, preference

    def adapt(self, support: Batch) -> Personalised:
        """Every task's local steps on its support set from its personalised start (vmapped);
        the feature embeddings stay global, every other weight adapts."""
        net, tasks = self.net, len(support["user"])
        attention, profile, user_start, preference = self.personalised_start(support["user"])
        named = dict(net.named_parameters())
        user = self.user_names()
        sizes = [named[name].numel() for name in user]
        fast = {
            name: part.view(tasks, *named[name].shape)
            for name, part in zip(user, user_start.split(sizes, dim=-1), strict=True)
        }
        fast["preference_weight"] = preference
        adapted_names = [n for n in named if not n.startswith(("user_features.", "item_features."))]
        for name in adapted_names:
            if name not in fast:
                fast[name] = named[name].expand(tasks, *named[name].shape)
        frozen = {n: p for n, p in named.items() if n not in fast}
        buffers = {n: b for n, b in net.named_buffers() if n != "preference_weight"}
        if not self.training:  # evaluation needs inner gradients only, no meta-gradient
            fast = {k: v.detach() for k, v in fast.items()}
            frozen = {k: v.detach() for k, v in frozen.items()}
        first_order = self.cfg.first_order or not self.training
        inner = InnerLoop(self.cfg.inner_steps, self.cfg.inner_lr, first_order, self.loss)

        def one_task(task_fast: Params, task: Batch) -> Params:
            return inner_loop(net, Weights(task_fast, frozen, buffers), task, inner)

        adapted = vmap(one_task)(fast, support)
        return Personalised(attention, profile, user_start, adapted, Weights({}, frozen, buffers))

    def predict(self, state: Personalised, query: Batch) -> torch.Tensor:
        _, frozen, buffers = state.weights

        def one_task(task_fast: Params, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
            return call(self.net, task_fast, frozen, buffers, user, item)

        return vmap(one_task)(state.fast, query["user"], query["item"])

    def training_loss(self, batch: Batch) -> torch.Tensor:
        """The query loss after local adaptation (MAML's); then each task writes the memories."""
        state = self.adapt(support_of(batch))
        pred = self.predict(state, query_of(batch))
        per_task = self.loss(pred, batch["query_rating"], batch["query_mask"])
        loss = per_task.mean()
        # grad of each task's query loss at its personalised theta_u (tasks are independent)
        (user_grad,) = torch.autograd.grad(per_task.sum(), state.user_start, retain_graph=True)
        self.write_memories(state, user_grad)
        return loss

    @torch.no_grad()
    def write_memories(self, state: Personalised, user_grad: torch.Tensor) -> None:
        """Moving-average writes of every task of the batch, one after the other (Eq. 8)."""
        net, cfg = self.net, self.cfg
        profiles, biases = net.profile_memory, net.bias_memory
        preferences = net.preference_memory
        for attention, profile, grad, adapted in zip(
            state.attention, state.profile, user_grad, state.fast["preference_weight"], strict=True
        ):
            profiles = profiles.lerp(torch.outer(attention, profile), cfg.alpha)
            biases = biases.lerp(torch.outer(attention, grad), cfg.beta)
            preferences = preferences.lerp(attention[:, None, None] * adapted, cfg.gamma)
        # New tensors, not in-place writes: the backward pass still reads the memories read.
        net.profile_memory, net.bias_memory = profiles, biases
        net.preference_memory = preferences
