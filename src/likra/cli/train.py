"""`likra train`: the positive and negative heads on one base model; writes a run folder."""

from __future__ import annotations

import argparse

from likra.cli.common import Command, add_config_flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.training.pipeline import TrainConfig

    add_config_flag(parser)
    add_flags(parser, TrainConfig)


def run(args: argparse.Namespace) -> int:
    from likra.config import config_from_args
    from likra.distributed import is_main
    from likra.training.pipeline import TrainConfig, train_run

    out = train_run(config_from_args(TrainConfig, args), progress=not args.quiet)
    if is_main():
        print(f"run written to {out}")
    return 0


COMMAND = Command(
    "train",
    "train the positive and negative heads; writes a run folder",
    add_arguments,
    run,
    "Train a Likra model: a positive and a negative LoRA head on one base LM.",
)
