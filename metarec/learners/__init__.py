"""Meta-learners; importing this package registers every built-in learner."""

from metarec.learners import attention, maml, metasgd, protonet, reptile, ridge  # noqa: F401  (registers)
from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS

__all__ = ["LEARNERS", "MetaLearner"]

# Last: the baselines subclass MetaLearner, so they import metarec.learners.base themselves.
from metarec.baselines import finetune, mean, mf, textsim, widedeep  # noqa: E402, F401
