"""Where metarec's own experiment and sweep files are, in a checkout and in an installed wheel.

The YAML files live once, in the checkout's top-level ``experiments/``; building a wheel copies
them into the package as ``metarec/experiments`` (``setup.py``'s ``build_py``).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# The copy a wheel installs next to the package's modules.
PACKAGED = _PACKAGE / "experiments"
# A checkout (an editable install imports metarec from it): ``experiments/`` beside metarec/.
CHECKOUT = _PACKAGE.parent / "experiments"


def experiments_root() -> Path:
    """The folder of ``<dataset>/*.yaml`` experiments (each over its folder's ``base.yaml``,
    see :mod:`metarec.config.load`) and ``sweeps/*.yaml``: the packaged copy
    of an installed wheel, else the checkout's ``experiments/``. The packaged copy comes first
    because beside an installed package sits ``site-packages``, whose ``experiments`` would be
    some other distribution's."""
    for root in (PACKAGED, CHECKOUT):
        if root.is_dir():
            return root
    raise FileNotFoundError(
        f"metarec's experiment files are missing: neither {PACKAGED} (an installed wheel) nor "
        f"{CHECKOUT} (a checkout) is a folder; reinstall metarec"
    )
