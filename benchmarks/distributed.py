"""Meta-training throughput on one process and on ``--devices`` processes (Lightning's DDP).

    python benchmarks/distributed.py --synthetic --devices 2            # 2 CPU processes
    python benchmarks/distributed.py --devices 4 --accelerator gpu      # ML-1M on 4 GPUs

The same run (``learner.meta_batch_size`` B tasks per meta-step, shared B/N per process) is
meta-trained through ``metarec.build.make_trainer`` on 1 and on N processes, each a fresh
Lightning launch (``trainer.strategy=ddp``), ``--threads`` CPU threads per process. After
``--warmup`` meta-steps, ``--repeat`` rounds of ``--steps`` meta-steps are timed on rank 0
(every step ends in the gradient all-reduce, so the ranks run in step); the best round counts.
Prints tasks/s for each process count and the ratio to one process; writes them to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from efficiency import bench_parser, write_report
from lightning.pytorch.callbacks import Callback
from meta_training import bench_config

from metarec.build import build_learner, make_trainer, prepare_tasks
from metarec.data.datamodule import ColdStartDataModule
from metarec.io import atomic_write_json


class RoundTimer(Callback):
    """Times rounds of ``steps`` meta-steps after ``warmup``; stops after ``repeat`` rounds."""

    def __init__(self, warmup: int, steps: int, repeat: int):
        self.warmup, self.steps, self.repeat = warmup, steps, repeat
        self.marks: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        done = trainer.global_step - self.warmup
        if done >= 0 and done % self.steps == 0:
            self.marks.append(time.perf_counter())

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.warmup + self.steps * self.repeat:
            self.marks.append(time.perf_counter())
            trainer.should_stop = True

    @property
    def seconds(self) -> list[float]:
        return [end - start for start, end in zip(self.marks[:-1], self.marks[1:], strict=True)]


def worker(args, devices: int, report: Path) -> None:
    """One process of a launch on ``devices`` processes; rank 0 writes the round times."""
    torch.set_num_threads(args.threads)
    strategy = "ddp" if devices > 1 else "auto"
    overrides = [*args.set, f"trainer.devices={devices}", f"trainer.strategy={strategy}",
                 f"trainer.accelerator={args.accelerator}", "trainer.progress_bar=false",
                 "trainer.max_epochs=1000"]  # fmt: skip
    cfg = bench_config(args.synthetic, args.root, overrides)
    L.seed_everything(cfg.seed, verbose=False)
    tasks = prepare_tasks(cfg)
    learner = build_learner(cfg, tasks)
    timer = RoundTimer(args.warmup, args.steps, args.repeat)
    trainer = make_trainer(cfg, run_dir=None)
    trainer.callbacks.append(timer)
    trainer.limit_val_batches = 0  # meta-training only
    datamodule = ColdStartDataModule(tasks, cfg.learner.meta_batch_size,
                                     cfg.learner.eval_batch_size, cfg.seed)  # fmt: skip
    trainer.fit(learner, datamodule=datamodule)
    if trainer.global_rank == 0:
        atomic_write_json(report, {
            "dataset": cfg.data.name, "learner": cfg.learner.name,
            "training_tasks": len(tasks.train), "meta_batch_size": cfg.learner.meta_batch_size,
            "seconds_per_round": timer.seconds,
        })  # fmt: skip


def launch(argv: Sequence[str], devices: int, threads: int) -> dict:
    """This script as a worker on ``devices`` processes; rank 0's report."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        command = [sys.executable, __file__, *argv, "--worker", str(devices),
                   "--worker-report", str(report)]  # fmt: skip
        subprocess.run(command, env=env, check=True)
        return json.loads(report.read_text())


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = bench_parser(__doc__.split("\n\n")[0], "results/bench/distributed.json", False)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--devices", type=int, default=2, help="processes to compare with one")
    parser.add_argument("--accelerator", default="cpu", help="trainer.accelerator: cpu | gpu")
    parser.add_argument("--steps", type=int, default=10, help="meta-steps timed per round")
    parser.add_argument("--warmup", type=int, default=3, help="meta-steps before timing")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*(LeafSpec|limit_train_batches).*")
        worker(args, args.worker, args.worker_report)
        return {}

    rates, reports = {}, {}
    for devices in sorted({1, args.devices}):
        reports[devices] = report = launch(argv, devices, args.threads)
        tasks = args.steps * report["meta_batch_size"]
        rates[devices] = tasks / min(report["seconds_per_round"])
    first = reports[1]
    print(f"{first['dataset']}: {first['training_tasks']} training tasks; {first['learner']}, "
          f"meta-batch {first['meta_batch_size']} shared by the processes, {args.threads} "
          f"thread(s) each, {args.accelerator}")  # fmt: skip
    for devices, rate in rates.items():
        label = f"{devices} process{'es' if devices > 1 else ''}"
        print(f"{label:>12}: {rate:8.1f} tasks/s  ({rate / rates[1]:.2f}x one process; "
              f"best of {args.repeat} x {args.steps} steps)")  # fmt: skip
    result = {
        "benchmark": "distributed",
        "dataset": first["dataset"],
        "learner": first["learner"],
        "training_tasks": first["training_tasks"],
        "meta_batch_size": first["meta_batch_size"],
        "accelerator": args.accelerator,
        "threads_per_process": args.threads,
        "steps_per_round": args.steps,
        "repeat": args.repeat,
        "tasks_per_second": {str(devices): rate for devices, rate in rates.items()},
        "ratio_to_one_process": {str(devices): rate / rates[1] for devices, rate in rates.items()},
        "seconds_per_round": {str(d): report["seconds_per_round"] for d, report in reports.items()},
    }
    return write_report(args.out, result)


if __name__ == "__main__":
    main()
