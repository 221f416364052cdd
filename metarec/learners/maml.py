"""MAML (Finn et al., 2017), second or first order; ``adapt: decision`` is MeLU's local update."""

from __future__ import annotations

import torch
from torch.func import vmap

from metarec.learners.base import Batch, MetaLearner
from metarec.learners.functional import Params, call, inner_loop
from metarec.registry import LEARNERS


@LEARNERS.register("maml")
class MAML(MetaLearner):
    """Gradient steps on each task's support set from shared initial weights, vmapped."""

    def adapted_names(self) -> list[str]:
        """Parameters adapted per task: all, or only the decision layers (MeLU)."""
        names = [name for name, _ in self.net.named_parameters()]
        if self.cfg.adapt == "decision":
            names = [name for name in names if name.startswith(self.net.DECISION_PREFIX)]
        return names

    def _split_params(self) -> tuple[Params, Params, Params]:
        params = dict(self.net.named_parameters())
        if not self.training:  # evaluation needs inner gradients only, not a graph to the init
            params = {name: p.detach() for name, p in params.items()}
        adapted = set(self.adapted_names())
        fast = {name: p for name, p in params.items() if name in adapted}
        frozen = {name: p for name, p in params.items() if name not in adapted}
        return fast, frozen, dict(self.net.named_buffers())

    def inner_lr(self) -> float | Params:
        """The inner learning rate (a subclass may learn one per parameter)."""
        return self.cfg.inner_lr

    def adapt(self, support: Batch) -> Params:
        fast, frozen, buffers = self._split_params()
        first_order = self.cfg.first_order or not self.training
        lr = self.inner_lr()

        def one_task(task: Batch) -> Params:
            return inner_loop(self.net, fast, frozen, buffers, task, self.cfg.inner_steps, lr,
                              first_order)  # fmt: skip

        return vmap(one_task)(support)

    def predict(self, fast: Params, query: Batch) -> torch.Tensor:
        _, frozen, buffers = self._split_params()

        def one_task(weights: Params, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
            return call(self.net, weights, frozen, buffers, user, item)

        return vmap(one_task)(fast, query["user"], query["item"])
