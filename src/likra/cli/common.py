"""What every command shares: the `Command` record and the `--config` flag."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    """One `likra` sub-command: its name, one-line help, description, flags and what it runs. A `passthrough`
    command gets the arguments its flags do not know as `args._extra` (for another tool's parser)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""
    passthrough: bool = False


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file whose keys override the defaults (flags override it)")


def add_objective_flags(parser: argparse.ArgumentParser) -> None:
    """Flags `--<objective>-<key>` for the settings of every registered objective that has any (a plug-in's
    too), one group each; YAML: `objectives: {<objective>: {...}}`."""
    from likra.config import add_flags
    from likra.objectives import OBJECTIVES

    for name, objective in OBJECTIVES.items():
        if objective.settings is not None:
            group = parser.add_argument_group(
                f"objective {name}", f"settings of heads trained by {name} (YAML: objectives.{name})"
            )
            add_flags(group, objective.settings, prefix=f"{name}-")


def config_with_objectives(cls: type, args: argparse.Namespace, values: dict | None = None):
    """`config_from_args` for a config with heads (train, curve, studies), its `objectives` sections validated by each
    objective's settings class and merged with their flags; `values`: the YAML's keys when the caller read them."""
    from dataclasses import replace

    from likra.config import config_from_args, flag_values, load_yaml
    from likra.errors import LikraError
    from likra.objectives import OBJECTIVES

    if values is None:
        values = load_yaml(args.config) if getattr(args, "config", None) else {}
    cfg = config_from_args(cls, args, values)
    raw = values.get("objectives") or {}
    if not isinstance(raw, dict):
        raise LikraError(f"{args.config}: objectives: expected a mapping of objective names to settings")
    sections = {}
    for name in raw:
        objective = OBJECTIVES.get(name)
        if objective.settings is None:
            raise LikraError(f"{args.config}: objectives.{name}: objective {name!r} has no settings of its own")
    for name, objective in OBJECTIVES.items():
        if objective.settings is None:
            continue
        given, _ = flag_values(objective.settings, args, prefix=f"{name}-")
        if name in raw or given:
            section = raw.get(name) or {}
            if not isinstance(section, dict):
                raise LikraError(f"{args.config}: objectives.{name}: expected a mapping of settings")
            sections[name] = config_from_args(
                objective.settings, args, section, prefix=f"{name}-", where=f"{args.config}: objectives.{name}"
            )
    return replace(cfg, objectives=sections)
