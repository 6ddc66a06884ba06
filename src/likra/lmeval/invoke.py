"""The harness's own command line with the `likra` model: `likra lm-eval` and `python -m likra.lmeval` parse
their arguments with lm-eval's parser (every flag of the installed harness, its short forms and types) and run
its `run` command (`Run._execute`: `simple_evaluate`, its `EvaluationTracker`, W&B and Hub logging, the
printed table), after `prepare`: the `likra` model registered, its model_args checked before the harness
spends time indexing its tasks, the offline `likra_*` tasks that `--tasks` names exported and their folder
added to `--include_path`.

Bad input stays one line: the harness's parser errors, and the errors its configuration step raises (tasks
not found, `--log_samples` without `--output_path`, ...), become LikraErrors.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import traceback
from pathlib import Path

from likra.errors import LikraError

# Errors raised inside these harness modules are about its input (its argument types, its configuration).
CONFIG_MODULES = ("lm_eval/_cli/", "lm_eval/config/evaluate_config.py")
LIKRA_MODEL = "likra"


class OneLineParser(argparse.ArgumentParser):
    """The harness's parsers with their usage errors as LikraErrors (one `likra: error:` line)."""

    def error(self, message: str):
        raise LikraError(f"{message} (`lm-eval run --help` lists the harness's flags)")


def run_parser(prog: str = "lm-eval") -> argparse.ArgumentParser:
    """The parser of the installed harness's `run` command, its usage errors as LikraErrors."""
    from lm_eval._cli.run import Run

    top = OneLineParser(prog=prog)
    commands = top.add_subparsers(dest="command", parser_class=OneLineParser)
    Run.create(commands)
    return commands.choices["run"]


def _check_likra_model_args(model_args: dict) -> None:
    """What LikraLM would refuse after minutes of the harness's set-up, refused now."""
    from likra.lmeval.model import check_model_args
    from likra.scoring.modes import check_modes

    check_model_args(model_args)  # a misspelt key
    run, model = model_args.get("run"), model_args.get("model")
    if run and model:
        raise LikraError("model_args: give run=RUN (a trained run) or model=MODEL (mode base), not both")
    if not run and not model:
        raise LikraError("the likra model needs model_args run=RUN (a trained run folder) or model=MODEL (mode base)")
    (mode,) = check_modes([str(model_args.get("mode", "likra"))])
    if "weight" in model_args:
        try:
            weight = float(model_args["weight"])
        except (TypeError, ValueError):
            raise LikraError(f"model_args weight={model_args['weight']!r}: not a number") from None
        if not (math.isfinite(weight) and abs(weight) <= 1e6):
            raise LikraError(f"model_args weight={model_args['weight']!r}: not a finite number within [-1e6, 1e6]")
    if run:
        from likra.runs import read_manifest, resolve_run
        from likra.scoring.modes import get_mode

        model_args["run"] = str(resolve_run(str(run)))  # a hub repo id: downloaded once, here
        heads = ["base", *read_manifest(model_args["run"])["heads"]]
        missing = [h for h in get_mode(mode).heads if h not in heads]
        if missing:
            raise LikraError(f"mode {mode!r} needs head {missing[0]!r}; the run has {', '.join(heads)}")
    elif mode != "base":
        raise LikraError(f"a plain model has no heads: mode {mode!r} needs run=RUN (or mode=base)")


def prepare(args: argparse.Namespace, source: str = "auto", default_model: str | None = None) -> argparse.Namespace:
    """Ready `args` (a namespace of the harness's `run` parser) for the harness: see the module docstring.
    `default_model`: the model when `--model` is not given (None: the harness's own default)."""
    import likra.lmeval.model  # noqa: F401  (registers `likra` with the harness)
    from likra.lmeval.tasks import TASK_PREFIX, export_requested

    args.model = args.model or default_model
    if args.model == LIKRA_MODEL:
        args.model_args = dict(args.model_args or {})
        _check_likra_model_args(args.model_args)
    if not args.tasks and not getattr(args, "config", None):
        raise LikraError(
            "give --tasks TASK[,TASK...] (e.g. likra_arc_challenge; `lm-eval ls tasks` lists the harness's)"
        )
    if args.limit is not None and not (math.isfinite(args.limit) and args.limit > 0):
        raise LikraError(f"--limit {args.limit:g}: give a positive number of questions (or a fraction below 1)")
    if getattr(args, "num_fewshot", None) is not None and args.num_fewshot < 0:
        raise LikraError(f"--num_fewshot {args.num_fewshot}: give 0 or more examples")
    if getattr(args, "bootstrap_iters", 0) is not None and getattr(args, "bootstrap_iters", 0) < 0:
        raise LikraError(f"--bootstrap_iters {args.bootstrap_iters}: give 0 or more resamples")
    output = getattr(args, "output_path", None)
    if output and Path(output).exists() and not Path(output).is_dir() and Path(output).suffix != ".json":
        # the harness writes a folder there (or, for a .json path, that file's folder): a file in the way was an
        # INFO line and exit 0 with no results
        raise LikraError(f"--output_path {output}: is a file; give a folder (or a path ending in .json)")
    for key, package in (("wandb_args", "wandb"), ("trackio_args", "trackio")):
        if getattr(args, key, None) and importlib.util.find_spec(package) is None:
            raise LikraError(f"--{key} needs the {package} package: pip install {package}")
    wanted = [t for t in (args.tasks or []) if t.startswith(TASK_PREFIX)]
    if wanted:
        folder = str(export_requested(",".join(wanted), source))
        given = args.include_path
        given = [] if not given else [given] if isinstance(given, (str, Path)) else list(given)
        args.include_path = [*map(str, given), folder] if folder not in map(str, given) else given
    return args


def _from_harness_config(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and any(part in frames[-1].filename.replace("\\", "/") for part in CONFIG_MODULES)


def execute(args: argparse.Namespace) -> None:
    """The harness's `run` command on prepared `args`."""
    from lm_eval._cli.run import Run

    try:
        Run._execute(args)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as e:
        if not _from_harness_config(e):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        raise LikraError(f"lm-eval: {message}") from None
