"""Meta-SGD (Li et al., 2017): MAML whose inner learning rate is learned, one per weight."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from metarec.config.domain import NON_NEGATIVE, setting
from metarec.learners.base import LearnerContext
from metarec.learners.functional import Params
from metarec.learners.maml import MAML, MAMLSettings
from metarec.registry import LEARNERS


@dataclass
class MetaSGDSettings(MAMLSettings):
    inner_steps: int = setting(
        1, "gradient steps on the support set (Meta-SGD uses one)", domain=NON_NEGATIVE
    )


@LEARNERS.register("metasgd")
class MetaSGD(MAML):
    """Each adapted weight has its own inner learning rate, meta-learned with the weights."""

    Settings = MetaSGDSettings

    def __init__(self, context: LearnerContext):
        super().__init__(context)
        shapes = dict(self.net.named_parameters())
        # ParameterDict keys may not contain dots.
        self.log_lr = nn.ParameterDict(
            {
                name.replace(".", "/"): nn.Parameter(
                    torch.full_like(shapes[name], float(torch.tensor(self.cfg.inner_lr).log()))
                )
                for name in self.adapted_names()
            }
        )

    def inner_lr(self) -> Params:
        # Learned in log space so that a rate never turns negative.
        return {name.replace("/", "."): log_lr.exp() for name, log_lr in self.log_lr.items()}
