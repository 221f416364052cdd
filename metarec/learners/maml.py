"""MAML (Finn et al., 2017) and its variants that differ only in what adapts and how.

``fomaml`` drops the second-order terms; ``melu`` adapts only the decision layers (MeLU's local
update, Lee et al., 2019); ``anil`` adapts only the last layer (Raghu et al., 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarec.config.domain import NON_NEGATIVE, POSITIVE, setting
from metarec.config.schema import LearnerConfig
from metarec.data.batch import Batch
from metarec.learners.base import MetaLearner
from metarec.learners.functional import Adapted, InnerLoop, Params, Weights, split_params
from metarec.registry import LEARNERS


@dataclass
class MAMLSettings(LearnerConfig):
    """Inner loop of the gradient-based learners."""

    inner_steps: int = setting(
        5,
        "gradient steps on the support set (local updates; 0: none, the initial weights)",
        domain=NON_NEGATIVE,
    )
    inner_lr: float = setting(0.05, "learning rate of the inner (local) updates", domain=POSITIVE)
    first_order: bool = setting(False, "drop second-order terms of the meta-gradient")
    adapt: str = setting(
        "all",
        "parameters adapted per task: all | decision (MeLU's local update) | last (ANIL)",
        choices=("all", "decision", "last"),
    )


@LEARNERS.register("maml")
class MAML(MetaLearner):
    """Gradient steps on each task's support set from shared initial weights, vmapped."""

    Settings = MAMLSettings

    def adapted_names(self) -> list[str]:
        """Parameters adapted per task: all, the decision layers (MeLU), or the last layer."""
        # Frozen weights (a text encoder's under encoder.trainable=lora) never adapt.
        names = [name for name, p in self.net.named_parameters() if p.requires_grad]
        if self.cfg.adapt == "decision":
            layers = set(self.net.decision_layers())
            return [name for name in names if name.rsplit(".", 1)[0] in layers]
        if self.cfg.adapt == "last":
            last_layer = names[-1].rsplit(".", 1)[0]
            return [name for name in names if name.rsplit(".", 1)[0] == last_layer]
        return names

    def weights(self, detach: bool = False) -> Weights:
        """The network's weights, those of :meth:`adapted_names` fast; detached at evaluation
        (which needs inner gradients only, not a graph to the initial weights) or when asked."""
        adapted = set(self.adapted_names())
        detach = detach or not self.training
        return split_params(self.net, lambda name, _: name in adapted, detach=detach)

    def inner_lr(self) -> float | Params:
        """The inner learning rate (Meta-SGD learns one per parameter)."""
        return self.cfg.inner_lr

    def inner_loop(self) -> InnerLoop:
        """The per-task steps: first order at evaluation, which needs no meta-gradient."""
        first_order = self.cfg.first_order or not self.training
        return InnerLoop(self.cfg.inner_steps, self.inner_lr(), first_order, self.loss)

    def adapt(self, support: Batch) -> Adapted:
        return self.inner_loop().adapt(self.net, support, self.weights())

    def predict(self, state: Adapted, query: Batch) -> torch.Tensor:
        return state.predict(query)


@dataclass
class FOMAMLSettings(MAMLSettings):
    first_order: bool = setting(True, "drop second-order terms of the meta-gradient")


@LEARNERS.register("fomaml")
class FOMAML(MAML):
    """First-order MAML: the inner gradients are constants to the meta-gradient."""

    Settings = FOMAMLSettings


@dataclass
class MeLUSettings(MAMLSettings):
    adapt: str = setting(
        "decision", "parameters adapted per task", choices=("all", "decision", "last")
    )


@LEARNERS.register("melu")
class MeLU(MAML):
    """MeLU's local update: only the decision layers adapt; embeddings are global."""

    Settings = MeLUSettings


@dataclass
class ANILSettings(MAMLSettings):
    adapt: str = setting("last", "parameters adapted per task", choices=("all", "decision", "last"))


@LEARNERS.register("anil")
class ANIL(MAML):
    """Almost No Inner Loop: only the output layer adapts."""

    Settings = ANILSettings
