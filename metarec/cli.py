"""Command line: ``metarec train CONFIG [key=value ...]``, ``metarec sweep SWEEP.yaml``,
``metarec reproduce DATASET``, ``metarec leaderboard``, ``metarec results FOLDER``,
``metarec learners``, ``metarec datasets``, ``metarec predict RUN`` and ``metarec data ...``;
``--plugin MODULE`` before the command imports a researcher's learners and datasets.

Imports stay inside the commands: ``metarec --help`` must not wait for torch and Lightning
(``metarec.errors``, the registry commands and the fast config check, none of which imports
torch, are the module-level imports). ``train`` and ``sweep`` check their config from the
schema cache first (:mod:`metarec.cli_fast`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from metarec.cli_fast import fast_check, train_arguments
from metarec.cli_registry import data_command, datasets_command, learners_command
from metarec.errors import ConfigError, DataError, OutputError, TrainingDiverged


def _train(args: argparse.Namespace) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from metarec.config.load import load_config
    from metarec.pipeline import train
    from metarec.report import print_table

    cfg = load_config(*train_arguments(args))
    result = train(cfg)  # keeps Lightning's info lines and known harmless warnings quiet
    if rank_zero_only.rank == 0:  # the other processes of a multi-device run stay quiet
        print_table(cfg, result.metrics, result.baseline)
        print(f"Run folder: {result.run_dir} ({result.seconds:.1f} s)")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from metarec.sweep import load_sweep, markdown_summary, run_local, run_wandb, wandb_available

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    sweep = load_sweep(args.sweep, args.set)  # every check, before any trial
    if not args.local and wandb_available():
        print(f"W&B sweep {run_wandb(sweep, args.count)} finished")
        return 0
    trials, out = run_local(sweep, args.count, args.out)
    print(markdown_summary(sweep, trials), end="")
    print(f"Sweep folder: {out}")
    return 0 if any(trial.value is not None for trial in trials) else 1


def _reproduce(args: argparse.Namespace) -> int:
    from metarec.reproduce import reproduce

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    overrides = [*([f"data.root={args.root}"] if args.root else []), *args.set]
    rows, table, seconds = reproduce(
        args.dataset,
        seeds=args.seeds,
        methods=args.methods.split(",") if args.methods else None,
        texts=args.text.split(","),
        overrides=overrides,
        out=args.out,
        jobs=args.jobs,
        warms=args.warm.split(";") if args.warm else None,
        data_seeds=args.data_seeds,
    )
    print(table)
    failed = {(r["method"], r["text"], r["seed"], r.get("warm")) for r in rows
              if r["status"] != "ok"}  # fmt: skip
    print(f"{len(failed)} failed runs; wall time {seconds / 60:.1f} min")
    return 1 if failed else 0


def _leaderboard(args: argparse.Namespace) -> int:
    from metarec.paths import parse_roots
    from metarec.reproduce.leaderboard import leaderboard

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    text, seconds = leaderboard(
        args.datasets.split(",") if args.datasets else None,
        parse_roots(args.root),
        seeds=args.seeds,
        jobs=args.jobs,
        out=args.out,
        overrides=args.set,
        methods=args.methods.split(",") if args.methods else None,
        texts=args.text.split(","),
    )
    print(text)
    print(f"wall time {seconds / 60:.1f} min")
    return 0


def _results(args: argparse.Namespace) -> int:
    from metarec.report.reproduction import write_report
    from metarec.reproduce import load_rows

    folder = Path(args.folder)
    rows = load_rows(folder)
    if not rows:
        raise ConfigError(f"{folder / 'runs.json'} is missing or empty: run metarec reproduce")
    dataset = args.dataset or folder.name.replace("_", "-")
    print(write_report(folder, rows, dataset, f"{dataset}: {folder}"), end="")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from metarec.predict import predict_file

    features = {}
    for item in args.feature:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--feature '{item}' is not of the form NAME=VALUE")
        features.setdefault(name, []).append(value)  # repeated: a multi-valued feature
    ranked = predict_file(args.run, args.ratings, top_k=args.top_k, out=args.out,
                          user=args.user, features=features, include_rated=args.include_rated,
                          overrides=args.set)  # fmt: skip
    if args.out:
        print(f"{len(ranked)} items written to {args.out}")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a bad argument is one line (``metarec: error: ...``), exit 2."""

    def error(self, message: str):
        command = self.prog.removeprefix("metarec").strip()
        self.exit(2, f"metarec: error: {command + ': ' if command else ''}{message}\n")


def whole_number(least: int):
    """An argparse type: a whole number of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be at least {least}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``metarec`` argument parser and its commands."""
    parser = Parser(prog="metarec", description="Meta-learning for cold-start recommendation.")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (your learners and datasets); train records it in plugins",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train", help="meta-train, evaluate every scenario, write the run folder"
    )
    train.add_argument("config", help="experiment YAML, e.g. experiments/synthetic/maml.yaml")
    train.add_argument(
        "overrides",
        nargs="*",
        help="key=value settings, e.g. learner.inner_steps=3; config=PATH replaces the file",
    )
    train.set_defaults(func=_train)
    sweep = commands.add_parser(
        "sweep", help="a W&B sweep file: on W&B (wandb agent), or locally with --local"
    )
    sweep.add_argument("sweep", help="W&B sweep YAML, e.g. experiments/sweeps/maml_inner.yaml")
    sweep.add_argument(
        "--count", type=whole_number(1), help="trials to run (default: a grid's every point)"
    )
    sweep.add_argument(
        "--local", action="store_true", help="run here with the sweeps engine (default offline)"
    )
    sweep.add_argument("--set", action="append", default=[], help="key=value for every trial")
    sweep.add_argument("--out", type=Path, help="local sweep folder (default runs/sweeps/...)")
    sweep.set_defaults(func=_sweep)
    rep = commands.add_parser(
        "reproduce", help="every experiment of a dataset x item text x seeds: the paper's table"
    )
    rep.add_argument("dataset", help="a folder of experiments/, e.g. melu-ml1m or synthetic")
    rep.add_argument(
        "--seeds", type=whole_number(1), default=3, help="seeds 0..N-1 per run (default 3)"
    )
    rep.add_argument("--methods", help="comma-separated experiment names (default: all)")
    rep.add_argument("--text", default="none,join", help="item.text variants (default none,join)")
    rep.add_argument(
        "--warm",
        help="warm-protocol passes, ';' between passes, ',' within one (one training scores "
        "a pass's protocols): default 'heldout,seen;warmup' (tallrec-ml100k: 'heldout')",
    )
    rep.add_argument(
        "--data-seeds",
        action="store_true",
        help="seed i also sets data.seed=i: held-out users and query ratings vary with the seed",
    )
    rep.add_argument("--jobs", type=whole_number(1), default=2, help="worker processes (default 2)")
    rep.add_argument("--root", help="data folder (data.root), e.g. ../shared/data/melu-ml1m")
    rep.add_argument("--out", type=Path, help="default results/<experiments folder>")
    rep.add_argument("--set", action="append", default=[], help="key=value for every run")
    rep.set_defaults(func=_reproduce)
    board = commands.add_parser(
        "leaderboard", help="every dataset x every method on identical tasks, ranked (resumable)"
    )
    board.add_argument("--datasets", help="comma-separated (default: every experiments folder)")
    board.add_argument("--methods", help="comma-separated experiment names (default: all)")
    board.add_argument("--text", default="none,join", help="item.text variants (default none,join)")
    board.add_argument(
        "--root", action="append", default=[], help="NAME=PATH: a dataset's data folder"
    )
    board.add_argument(
        "--seeds", type=whole_number(1), default=3, help="seeds 0..N-1 per run (default 3)"
    )
    board.add_argument("--jobs", type=whole_number(1), default=2, help="worker processes")
    board.add_argument("--out", type=Path, help="default results/leaderboard")
    board.add_argument("--set", action="append", default=[], help="key=value for every run")
    board.set_defaults(func=_leaderboard)
    res = commands.add_parser("results", help="table, summary and plot of a reproduce folder")
    res.add_argument("folder", help="e.g. results/melu_ml1m")
    res.add_argument("--dataset", help="paper rows to show (default: from the folder name)")
    res.set_defaults(func=_results)
    learners = commands.add_parser("learners", help="list learners, or one learner's settings")
    learners.add_argument("name", nargs="?", help="a learner name: show its settings")
    learners.set_defaults(func=learners_command)
    datasets = commands.add_parser("datasets", help="list datasets, or one dataset's settings")
    datasets.add_argument("name", nargs="?", help="a dataset name: show its settings")
    datasets.set_defaults(func=datasets_command)
    pred = commands.add_parser(
        "predict", help="adapt a trained run to a new user's ratings; items ranked by score"
    )
    pred.add_argument("run", help="run folder (or a checkpoint file), e.g. runs/synthetic-maml-...")
    pred.add_argument(
        "--ratings", required=True, help="CSV with a header 'item,rating': one new user's ratings"
    )
    pred.add_argument(
        "--top-k",
        type=whole_number(0),
        default=10,
        help="items to write, best first (0: all; default 10)",
    )
    pred.add_argument("--out", help="CSV to write 'item,score' to (atomically); default stdout")
    pred.add_argument("--user", help="a dataset user id whose features to use (default: new user)")
    pred.add_argument(
        "--feature",
        action="append",
        default=[],
        help="NAME=VALUE of the new user (e.g. gender=F); others at their most common value",
    )
    pred.add_argument(
        "--include-rated", action="store_true", help="rank the rated items too (default: not)"
    )
    pred.add_argument(
        "--set", action="append", default=[], help="key=value changing the run's config"
    )
    pred.set_defaults(func=_predict)
    data = commands.add_parser("data", help="download or verify a dataset (checksums checked)")
    data.add_argument("action", choices=["download", "verify"])
    data.add_argument("dataset", help="a dataset with files: melu-ml1m, amazon-unisrec, ...")
    data.add_argument("--root", help="data folder (default: $METAREC_DATA_DIR/<dataset> or cache)")
    data.set_defaults(func=data_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input, and a file or folder that cannot be written, end with one
    clear line, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        fast_check(args)  # a config error told by the schema cache, before torch is imported
        if args.plugin:
            from metarec.config.registries import import_plugins

            import_plugins(args.plugin, "--plugin")
        return args.func(args)
    except (ConfigError, DataError, OutputError, TrainingDiverged) as err:
        print(f"metarec: error: {err}", file=sys.stderr)
        if os.environ.get("METAREC_DEBUG"):
            raise
        return 2
    except BrokenPipeError:  # the reader went away (`metarec learners | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
