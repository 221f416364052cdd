"""Reptile (Nichol, Achiam and Schulman, 2018): first-order meta-learning without a meta-gradient.

Each task of a meta-batch is adapted by plain SGD from the shared (slow) weights, and the slow
weights move toward the mean of the adapted ones: θ ← θ + ε (mean φ − θ). The outer step is not
the gradient of any loss, so the learner uses Lightning's manual optimisation. Evaluation is
MAML's: ``inner_steps`` SGD steps on the support set, then predict the query set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metarec.config.domain import POSITIVE, setting
from metarec.data.batch import Batch, query_of, whole_task
from metarec.distributed import mean_over_ranks, share_of_meta_batch
from metarec.errors import ConfigError
from metarec.learners.base import LearnerContext
from metarec.learners.functional import Adapted, InnerLoop, Params
from metarec.learners.maml import MAML, MAMLSettings
from metarec.registry import LEARNERS


@dataclass
class ReptileSettings(MAMLSettings):
    """MAML's inner loop; ``outer_lr`` is Reptile's step size ε, a plain SGD step."""

    # Defaults picked on synthetic validation MAE. ε = 1 sets θ to the mean of the solutions;
    # the meta-batch mean is what keeps that step small. Inner rates of 0.05 and above diverge
    # on the support set at evaluation once θ has trained a while.
    outer_lr: float = setting(
        1.0, "Reptile's step size ε: θ ← θ + ε (mean adapted φ − θ)", domain=POSITIVE
    )
    inner_lr: float = setting(0.03, "SGD learning rate of the per-task steps", domain=POSITIVE)
    # Reptile never differentiates through the inner loop, and it moves only the weights that
    # adapt (the others would stay at their initialisation), so neither choice is open.
    first_order: bool = setting(True, "Reptile is first order by construction", choices=(True,))
    adapt: str = setting("all", "every weight adapts (Reptile moves only these)", choices=("all",))


@LEARNERS.register("reptile")
class Reptile(MAML):
    """Slow weights interpolate toward the mean of the per-task SGD solutions.

    Unlike MAML's support/query split, the inner loop trains on the whole training task (support
    and query ratings), as in the paper, where a task's data is not split: Reptile's update needs
    no held-out loss. The query loss it logs is therefore a training-fit number, not a held-out
    one. Evaluation adapts on the support set only (``MAML.adapt``).
    """

    Settings = ReptileSettings

    def __init__(self, context: LearnerContext):
        super().__init__(context)
        self.automatic_optimization = False  # the outer step is an interpolation, not a backward

    def on_fit_start(self) -> None:
        # A GradScaler (16-mixed) unscales the "gradients" of outer_step, which were never
        # scaled: the step would silently shrink by the loss scale (65536 at first).
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            raise ConfigError(
                f"key 'trainer.precision': {self.trainer.precision} uses a gradient scaler, which "
                "breaks Reptile's outer step (it is not a backward); use 32-true or bf16-mixed"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        slow = self.weights(detach=True)  # no graph to θ
        inner = InnerLoop(self.cfg.inner_steps, self.inner_lr(), first_order=True, loss=self.loss)
        solutions = inner.adapt(self.net, whole_task(batch), slow)
        with torch.no_grad():
            pred = self.predict(solutions, query_of(batch))
            loss = self.loss(pred, batch["query_rating"], batch["query_mask"]).mean()
            _, loss = share_of_meta_batch(self, loss, len(batch["user"]))  # all ranks' tasks
        self.check_finite(loss)
        self.outer_step(self.deltas(slow.fast, solutions), len(batch["user"]))
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["user"]))
        return loss

    @staticmethod
    def deltas(slow: Params, solutions: Adapted) -> Params:
        """θ − mean φ per adapted weight. A task's solution of an embedding table holds only
        the rows it used (the others stay θ), so those rows' moves are summed into the table."""
        deltas = {}
        for name, phi in solutions.fast.items():
            local = solutions.tables.get(name)
            if local is None:
                deltas[name] = slow[name] - phi.mean(0)
                continue
            moved = (phi - slow[name][local.rows]).flatten(0, 1)  # φ − θ on each local row
            total = torch.zeros_like(slow[name]).index_add_(0, local.rows.flatten(), moved)
            deltas[name] = -total / len(local.rows)
        return deltas

    def outer_step(self, deltas: Params, n_tasks: int) -> None:
        """θ ← θ − ε · (θ − mean φ), as an SGD step of the Lightning-wrapped optimiser.

        ``deltas`` (θ − mean φ per adapted weight, over this rank's ``n_tasks`` tasks) are
        written as gradients so the step goes through Lightning's optimiser (precision plugin,
        step counting, checkpointed state). DDP averages gradients in hooks fired by
        ``backward``, which Reptile never calls, so under several processes the deltas are
        averaged over every rank's tasks here, in one all-reduce: all ranks take the step one
        device would take with the whole meta-batch.
        """
        deltas = mean_over_ranks(self, deltas, n_tasks)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        for name, param in self.net.named_parameters():
            param.grad = deltas.get(name)  # None for a weight that does not adapt: SGD skips it
        optimizer.step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Plain SGD, no momentum: one step of size ε along θ − mean φ is exactly Reptile's update.
        return torch.optim.SGD(self.net.parameters(), lr=self.cfg.outer_lr)
