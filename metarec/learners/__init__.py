"""Meta-learners; importing this package registers every built-in learner."""

from metarec.learners import maml, metasgd  # noqa: F401  (registers)
from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS

__all__ = ["LEARNERS", "MetaLearner"]
