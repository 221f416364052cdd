"""What a run prints while it runs: plain progress lines for logs, and Lightning kept quiet.

A run whose output goes to a file (``nohup``, SLURM) or that turned its progress bar off gets
one flushed line every ``trainer.log_lines_every`` meta-steps and one per validation, so a log
shows where the run is long before it ends. Lightning's own hardware lines, tips and known
harmless warnings are silenced for the length of a training or evaluation call, and whatever
logging level or warning filter a user set is back as it was afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator

import lightning as L
from lightning.pytorch.callbacks import Callback

from metarec.config.schema import RunConfig

# Lightning's loggers: "GPU available", "TPU available", the litlogger tip, "`Trainer.fit`
# stopped" and the distributed set-up lines are INFO records of these.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# Warnings Lightning raises on every run of metarec that say nothing about it: an internal
# deprecation, and the batch hook the learners override on purpose (residuals).
HARMLESS_WARNINGS = (".*LeafSpec.*", ".*overridden `on_after_batch_transfer`.*")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines and its harmless warnings off inside the block (also usable as
    a decorator). A logger left at Lightning's own level (INFO, set when it is imported) or
    unset goes to WARNING and back afterwards; one a user set to another level (DEBUG to see
    everything, ERROR for less) is left alone. Warning filters are restored on exit."""
    raised = []
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level in (logging.NOTSET, logging.INFO):
            raised.append((logger, logger.level))
            logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for logger, level in raised:
            logger.setLevel(level)


class ProgressLines(Callback):
    """Prints ``epoch E/N step S: train/loss L (T s)`` every ``every`` meta-steps and
    ``epoch E/N: val/mae M (best B) (T s)`` after each validation (the run's ``monitor``,
    better when lower with ``mode="min"``), flushed, on rank 0."""

    def __init__(self, every: int, monitor: str = "val/mae", mode: str = "min"):
        self.every, self.monitor, self.best_of = every, monitor, min if mode == "min" else max
        self._start = time.perf_counter()
        self._printed_step = -1
        self._best: float | None = None

    def _say(self, trainer: L.Trainer, text: str) -> None:
        if trainer.is_global_zero:
            seconds = time.perf_counter() - self._start
            epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            print(f"{epoch}{text} ({seconds:.0f} s)", file=sys.stdout, flush=True)

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        step = trainer.global_step  # meta-steps (Reptile's manual outer steps count too)
        if step % self.every or step == self._printed_step:
            return
        self._printed_step = step
        loss = trainer.callback_metrics.get("train/loss")
        said = "" if loss is None else f": train/loss {float(loss):.4f}"
        self._say(trainer, f" step {step}{said}")

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        self._best = value if self._best is None else self.best_of(self._best, value)
        self._say(trainer, f": {self.monitor} {value:.4f} (best {self._best:.4f})")


def progress_lines(cfg: RunConfig, monitor: str = "val/mae", mode: str = "min") -> list[Callback]:
    """``[ProgressLines]`` when ``trainer.log_lines_every`` > 0 and either stdout is not a
    terminal (a log file) or the progress bar is off; else nothing (the bar shows progress)."""
    every = cfg.trainer.log_lines_every
    if every <= 0 or (cfg.trainer.progress_bar and sys.stdout.isatty()):
        return []
    return [ProgressLines(every, monitor, mode)]
