"""Non-meta baselines: one network fit on every meta-training rating, then used as is or tuned.

``global`` predicts with the pooled network; ``finetune`` fine-tunes all its weights on each
task's support set at evaluation; ``lora`` fine-tunes only LoRA adapters on its decision layers
(Hu et al., 2022, via ``peft``). All three train the same way, so they differ only in how they
adapt, and the per-task steps reuse the torch.func inner loop of the meta-learners, vmapped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, setting
from metarec.config.schema import LearnerConfig
from metarec.data.batch import Batch, whole_task
from metarec.learners.base import MetaLearner
from metarec.learners.functional import Adapted, InnerLoop, Weights, split_params, trainable
from metarec.registry import LEARNERS

# LoRA's A matrices start random; a fixed seed gives every evaluation the same adapters, so a
# result does not depend on how many evaluations ran before it (nor do they shift the run's RNG).
LORA_INIT_SEED = 0


def is_adapter(name: str, param: nn.Parameter) -> bool:
    """Whether a weight of a ``peft`` model is one of its LoRA matrices (A or B)."""
    return "lora_A" in name or "lora_B" in name


class PooledNetwork(MetaLearner):
    """Trains the network on every rating of the meta-training tasks; subclasses may tune it.

    The loss pools the support and query ratings of the meta-batch, each rating weighing the
    same, as in ordinary (non-meta) training; there is no adaptation during training.
    """

    def training_loss(self, batch: Batch) -> torch.Tensor:
        task = whole_task(batch)
        pred = self.net(task["user"].unsqueeze(-1), task["item"])
        # One flat "task" of every rating, so that each rating (not each task) weighs the same.
        return self.loss(pred.flatten(), task["rating"].flatten(), task["mask"].flatten())

    def loss_count(self, batch: Batch) -> torch.Tensor:
        """Ratings, not tasks: the loss is a mean over every rating of the meta-batch."""
        return whole_task(batch)["mask"].sum()

    def tuning_weights(self) -> tuple[nn.Module, Weights] | None:
        """The network to fine-tune per task and its weights (the tuned ones fast), or None."""
        return None

    def adapt(self, support: Batch) -> Adapted | None:
        """``inner_steps`` SGD steps per task from the trained (detached) weights; None when
        nothing is tuned."""
        setup = self.tuning_weights()
        if setup is None:
            return None
        net, weights = setup
        inner = InnerLoop(self.cfg.inner_steps, self.cfg.inner_lr, first_order=True, loss=self.loss)
        return inner.adapt(net, support, weights)

    def predict(self, state: Adapted | None, query: Batch) -> torch.Tensor:
        if state is None:
            return self.net(query["user"].unsqueeze(-1), query["item"])
        return state.predict(query)


@LEARNERS.register("global")
class GlobalModel(PooledNetwork):
    """MeLU's network fit on all meta-training ratings; the same predictions for every task."""


@dataclass
class FinetuneSettings(LearnerConfig):
    """Per-task fine-tuning at evaluation."""

    # Defaults picked on synthetic validation MAE; at 0.05 the tuning diverges once the network
    # has trained a few epochs (its loss surface grows sharper).
    inner_steps: int = setting(
        10,
        "SGD steps on each task's support set at evaluation (0: the global model as it is)",
        domain=NON_NEGATIVE,
    )
    inner_lr: float = setting(
        0.01, "learning rate of the per-task fine-tuning steps", domain=POSITIVE
    )


@LEARNERS.register("finetune")
class Finetune(PooledNetwork):
    """The global network, every trainable weight fine-tuned on each task's support set (the
    text encoder's too with ``encoder.trainable: full``, its LoRA adapters with ``lora``)."""

    Settings = FinetuneSettings

    def tuning_weights(self) -> tuple[nn.Module, Weights]:
        # Detached: the tuning needs inner gradients only, never a graph to the trained weights.
        return self.net, split_params(self.net, trainable, detach=True)


@dataclass
class LoRASettings(FinetuneSettings):
    """Per-task LoRA adapters on the decision layers; the trained network stays frozen."""

    lora_rank: int = setting(4, "rank r of each LoRA adapter", domain=AT_LEAST_ONE)
    lora_alpha: float = setting(
        8.0, "LoRA scaling numerator: the update is (alpha / r) B A", domain=POSITIVE
    )
    inner_lr: float = setting(0.02, "learning rate of the per-task LoRA steps", domain=POSITIVE)


@LEARNERS.register("lora")
class LoRA(Finetune):
    """LoRA adapters on every decision layer (``net.decision_layers()``), tuned per task; B
    starts at zero, so with no steps the predictions are the global network's."""

    Settings = LoRASettings

    def tuning_weights(self) -> tuple[nn.Module, Weights]:
        from peft import LoraConfig, get_peft_model  # optional extra: pip install metarec[lora]

        config = LoraConfig(
            r=self.cfg.lora_rank,
            lora_alpha=self.cfg.lora_alpha,
            target_modules=self.net.decision_layers(),
            lora_dropout=0.0,
        )
        with torch.random.fork_rng():
            torch.manual_seed(LORA_INIT_SEED)
            # get_peft_model rewrites the model in place: wrap a copy, never the trained network.
            model = get_peft_model(copy.deepcopy(self.net), config)
        return model, split_params(model, is_adapter, detach=True)
