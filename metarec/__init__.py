"""metarec: meta-learning for cold-start recommendation.

From Python::

    import metarec

    result = metarec.train("experiments/synthetic/maml.yaml", ["trainer.max_epochs=3"])
    run = metarec.load(result.run_dir)
    scores = run.predict([("12", 5.0), ("40", 2.0)])  # (item, rating) pairs of a new user

Importing ``metarec`` loads nothing heavy: ``train`` and ``load`` import torch and Lightning
on first use (``metarec/api.py``).
"""

from __future__ import annotations

import types

__version__ = "0.1.0"
__all__ = ["__version__", "load", "train"]


class CallableTrainModule(types.ModuleType):
    """The class of the ``metarec.train`` module: the module (the pipeline's functions) that
    can be called as ``metarec.train(config, overrides, **settings)``, see
    :func:`metarec.api.train`."""

    def __call__(self, config=None, overrides=(), **settings):
        from metarec.api import train

        return train(config, overrides, **settings)


def __getattr__(name: str):
    # Lazy: `import metarec` stays fast; only what is used gets imported.
    if name == "train":
        import metarec.train  # its module class makes it callable

        return metarec.train
    if name == "load":
        from metarec.api import load

        return load
    raise AttributeError(f"module 'metarec' has no attribute '{name}'")
