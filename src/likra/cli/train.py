"""`likra train`: the positive and negative heads on one base model; writes a run folder."""

from __future__ import annotations

import argparse

from likra.cli.common import Command, add_config_flag, add_objective_flags, config_with_objectives


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.training.pipeline import TrainConfig

    add_config_flag(parser)
    add_flags(parser, TrainConfig)
    add_objective_flags(parser)


def run(args: argparse.Namespace) -> int:
    from likra.distributed import is_main
    from likra.training.pipeline import TrainConfig, train_run

    out = train_run(config_with_objectives(TrainConfig, args), progress=not args.quiet)
    if is_main():
        print(f"run written to {out}")
    return 0


COMMAND = Command(
    "train",
    "train the heads (default: the positive and negative Likra heads); writes a run folder",
    add_arguments,
    run,
    "Train LoRA heads on one base LM: by default a positive head on correct answers and a negative head on "
    "incorrect ones; --heads name=objective:data,... trains any registered objectives.",
)
