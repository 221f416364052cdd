"""Meta-learners; importing this package registers every built-in learner (the baselines, in
``metarec.baselines``, are registered with them by ``metarec.catalog``)."""

from metarec.learners import attention, maml, metasgd, protonet, reptile, ridge  # noqa: F401  (registers)
from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS

__all__ = ["LEARNERS", "MetaLearner"]
