"""`likra eval`: score a run (or a base model) in every mode; prints a table, writes JSON."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from likra.cli.common import Command, add_config_flag
from likra.errors import LikraError

if TYPE_CHECKING:
    from likra.scoring.evaluate import EvalConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.scoring.evaluate import EvalConfig

    add_config_flag(parser)
    add_flags(parser, EvalConfig)


def load_for_eval(cfg: EvalConfig):
    """(model, tokenizer) for `likra eval`: a run's heads, or a plain base model for mode base."""
    from likra.model.loading import load_base_model, load_tokenizer
    from likra.runs import load_run_model
    from likra.scoring.evaluate import DEFAULT_EVAL_MODES

    if cfg.run and cfg.model:
        raise LikraError("give either --run or --model, not both")
    if cfg.run:
        model, tokenizer, _ = load_run_model(cfg.run, cfg.dtype, device_map=cfg.device_map, quantize=cfg.quantize)
        return model, tokenizer
    if not cfg.model:
        raise LikraError("give --run RUN (a trained run folder) or --model MODEL (base mode only)")
    if any(m != "base" for m in cfg.modes):
        if cfg.modes == DEFAULT_EVAL_MODES:
            cfg.modes = ["base"]
        else:
            raise LikraError("a plain --model has no heads: only --modes base is possible")
    base = load_base_model(cfg.model, cfg.dtype, device_map=cfg.device_map, quantize=cfg.quantize)
    return base, load_tokenizer(cfg.model)


def run(args: argparse.Namespace) -> int:
    from likra.config import config_from_args
    from likra.distributed import is_main, start
    from likra.io import atomic_write_json
    from likra.model.loading import model_max_length
    from likra.scoring.evaluate import EvalConfig, default_eval_out, evaluate, format_table, load_eval_data
    from likra.scoring.modes import check_modes

    cfg = config_from_args(EvalConfig, args)
    check_modes(cfg.modes)
    start()
    model, tokenizer = load_for_eval(cfg)
    data = load_eval_data(cfg, tokenizer, model_max_length(model))
    results = evaluate(cfg, model, tokenizer, progress=not args.quiet, data=data)
    if not is_main():
        return 0
    print(format_table(results["metrics"], results["statistics"]))
    if "preferences" in results:
        from likra.scoring.preferences import format_preferences

        print(format_preferences(results["preferences"], results["data"]))
    out = default_eval_out(cfg)
    if out is not None:
        atomic_write_json(out, results)
        print(f"results written to {out}")
    if cfg.lm_eval_out:
        from likra.reports.harness import write_eval_as_harness

        paths = write_eval_as_harness(cfg, results, data)
        print("lm-eval-style results written to " + ", ".join(map(str, paths)))
    return 0


COMMAND = Command(
    "eval",
    "score a run (or a base model) in every mode; prints a table, writes JSON",
    add_arguments,
    run,
    "Evaluate a Likra run on multiple-choice data in registered modes or expressions over heads.",
)
