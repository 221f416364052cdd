"""Where metarec's own experiment and sweep files are, in a checkout and in an installed wheel.

The YAML files live once, in the checkout's top-level ``experiments/``; building a wheel copies
them into the package as ``metarec/experiments`` (``setup.py``'s ``build_py``).
"""

from __future__ import annotations

from pathlib import Path

from metarec.errors import ConfigError

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


def experiments_folder(dataset: str, root: Path | None = None) -> Path:
    """``experiments/<dataset>`` (``melu-ml1m`` and ``melu_ml1m`` both name it)."""
    root = root or experiments_root()
    folder = root / dataset.replace("-", "_")
    if not folder.is_dir():
        known = sorted(path.name for path in root.iterdir() if path.is_dir())
        raise ConfigError(f"no experiments for '{dataset}' in {root} (there are: {known})")
    return folder


def datasets_found(names: list[str] | None) -> list[str]:
    """The datasets asked for, else every experiments folder's (``melu-ml1m`` for
    ``experiments/melu_ml1m``), in name order."""
    if names:
        return names
    root = experiments_root()
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "sweeps")
    return [name.replace("_", "-") for name in folders]


def parse_roots(items: list[str]) -> dict[str, str]:
    """``--root NAME=PATH`` arguments as a dataset -> folder mapping."""
    roots = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--root expects NAME=PATH, got '{item}'")
        roots[name] = path
    return roots
