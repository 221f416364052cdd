"""metarec: meta-learning for cold-start recommendation.

From Python::

    import metarec

    result = metarec.train("experiments/synthetic/maml.yaml", ["trainer.max_epochs=3"])
    run = metarec.load(result.run_dir)
    scores = run.predict([("12", 5.0), ("40", 2.0)])  # (item, rating) pairs of a new user

Importing ``metarec`` loads nothing heavy: ``train`` and ``load`` (``metarec/api.py``) import
torch and Lightning on first use. The pipeline they run is :mod:`metarec.pipeline`.
"""

from __future__ import annotations

from metarec.version import __version__

__all__ = ["__version__", "load", "train"]


def __getattr__(name: str):
    # Lazy: `import metarec` stays fast; only what is used gets imported.
    if name in ("train", "load"):
        from metarec import api

        return getattr(api, name)
    raise AttributeError(f"module 'metarec' has no attribute '{name}'")
