"""The bias baseline's functions; they live in :mod:`metarec.bias`, below the learners, which
use them too (``learner.residual``). Re-exported here so that older imports keep working."""

from metarec.bias import (  # noqa: F401  (re-exported)
    ITEM_PSEUDO_GRID,
    USER_PSEUDO_GRID,
    item_means,
    pick_pseudo_counts,
    predict_bias,
)
