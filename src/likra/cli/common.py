"""What every command shares: the `Command` record and the `--config` flag."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    """One `likra` sub-command: its name, one-line help, description, flags and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file whose keys override the defaults (flags override it)")
