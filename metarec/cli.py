"""Command line: ``metarec train CONFIG [key=value ...]`` and ``metarec data ...``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from metarec.config import ConfigError
from metarec.data.schema import DataError
from metarec.learners.base import TrainingDiverged


def _train(args: argparse.Namespace) -> int:
    from metarec.config import load_config
    from metarec.report import print_table
    from metarec.train import train

    cfg = load_config(args.config, args.overrides)
    # Lightning's info lines (hardware, tips) and an internal deprecation are noise here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    result = train(cfg)
    print_table(cfg, result.metrics, result.baseline)
    print(f"Run folder: {result.run_dir} ({result.seconds:.1f} s)")
    return 0


def _data(args: argparse.Namespace) -> int:
    from metarec.config import DataConfig
    from metarec.data.datamodule import data_root
    from metarec.data.melu import download_melu, verify_melu

    if args.dataset != "melu-ml1m":
        raise DataError(f"only melu-ml1m is downloadable; got '{args.dataset}'")
    root = Path(args.root) if args.root else data_root(DataConfig(name=args.dataset))
    if args.action == "download":
        download_melu(root)
    checks = verify_melu(root)
    for name, ok in checks.items():
        print(f"{'ok ' if ok else 'BAD'} {name}")
    print(f"{args.dataset} in {root}")
    return 0 if all(checks.values()) else 1


def _learners(args: argparse.Namespace) -> int:
    import dataclasses

    from metarec.learners import LEARNERS

    if args.name and args.name not in LEARNERS:
        raise ConfigError(
            f"unknown learner '{args.name}' (registered: {', '.join(LEARNERS.names())})"
        )
    for name in [args.name] if args.name else LEARNERS.names():
        learner = LEARNERS.get(name)
        summary = " ".join((learner.__doc__ or "").strip().split("\n\n")[0].split())
        print(f"{name}: {summary}")
        if args.name:
            for spec in dataclasses.fields(learner.Settings):
                if spec.name == "name":
                    continue
                default = getattr(learner.Settings(), spec.name)
                print(f"  learner.{spec.name} = {default!r}  # {spec.metadata.get('help', '')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``metarec`` argument parser and its commands."""
    parser = argparse.ArgumentParser(
        prog="metarec", description="Meta-learning for cold-start recommendation."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train", help="meta-train, evaluate every scenario, write the run folder"
    )
    train.add_argument("config", help="experiment YAML, e.g. experiments/synthetic/maml.yaml")
    train.add_argument(
        "overrides", nargs="*", help="key=value settings, e.g. learner.inner_steps=3"
    )
    train.set_defaults(func=_train)
    learners = commands.add_parser("learners", help="list learners, or one learner's settings")
    learners.add_argument("name", nargs="?", help="a learner name: show its settings")
    learners.set_defaults(func=_learners)
    data = commands.add_parser("data", help="download or verify a dataset (sha256 checked)")
    data.add_argument("action", choices=["download", "verify"])
    data.add_argument("dataset", choices=["melu-ml1m"])
    data.add_argument("--root", help="data folder (default: $METAREC_DATA_DIR/<dataset> or cache)")
    data.set_defaults(func=_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad input ends with one clear line, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError, TrainingDiverged) as err:
        print(f"metarec: error: {err}", file=sys.stderr)
        if os.environ.get("METAREC_DEBUG"):
            raise
        return 2


if __name__ == "__main__":
    sys.exit(main())
