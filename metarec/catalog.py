"""Every built-in learner and baseline: importing this module registers them all in ``LEARNERS``.

The one module that imports both packages. Entry points that look learners up (``train``, the
command line, ``reproduce``) import ``LEARNERS`` from here; the registry imports this module on
its first lookup too, so ``load_config`` called from Python finds them all.
"""

from metarec.baselines import finetune, mean, mf, textsim, widedeep  # noqa: F401  (registers)
from metarec.learners import attention, maml, metasgd, protonet, reptile, ridge  # noqa: F401
from metarec.registry import LEARNERS

__all__ = ["LEARNERS"]
