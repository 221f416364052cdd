"""The runs that tests/test_ddp.py compares across process counts, each a real ``train(cfg)``.

    python -m tests.ddp_runs OUT DEVICES NAME [NAME ...]

runs each named run with ``trainer.devices=DEVICES`` (Lightning's ``ddp`` strategy, CPU and
gloo), its run folder under ``OUT/<NAME>/``. Lightning's launcher starts the other processes
by running this same command again, so every process goes through the same runs in step.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from metarec.catalog import LEARNERS
from metarec.config.load import load_config
from metarec.pipeline import train

from .conftest import SMALL

# Three meta-steps of 16 tasks; evaluation batches of 16 so that every rank has several,
# of uneven sizes (the small dataset's scenarios hold 23, 63, 188 and 52 tasks).
STEPS = [
    "learner.eval_batch_size=16",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
]
RUNS = {
    "maml": ("maml", STEPS),
    "reptile": ("reptile", STEPS),
    # No meta-step: evaluation alone, of the same initial weights on every process count.
    "evaluation": ("maml", [*STEPS, "trainer.max_epochs=0"]),
}
# Every other learner with weights to train (slow test): two meta-steps each, in float64.
# Adam divides by the gradient's root mean square, so a weight whose gradient is zero but for
# rounding (an attention key bias) moves by noise that a sum in another order changes.
RUNS.update(
    {
        f"all-{name}": (
            name,
            [*STEPS, "trainer.limit_train_batches=2", "trainer.precision=64-true"],
        )
        for name in LEARNERS.names()
        if name not in ("textsim", "mean", "bias")  # textsim needs item texts; no weights to train
    }
)


def run(name: str, devices: int, out: Path) -> Path:
    """Run ``name`` on ``devices`` processes; its run folder."""
    learner, overrides = RUNS[name]
    strategy = "ddp" if devices > 1 else "auto"
    cfg = load_config(
        None,
        [
            *SMALL,
            f"learner.name={learner}",
            *overrides,
            f"trainer.devices={devices}",
            f"trainer.strategy={strategy}",
            f"output_dir={out / name}",
            f"name={name}",
        ],
    )
    return train(cfg).run_dir


if __name__ == "__main__":
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    out, devices, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    for name in names:
        run(name, devices, out)
