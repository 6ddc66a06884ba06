"""`likra eval`: score a run (or a base model) in every mode; prints a table, writes JSON."""

from __future__ import annotations

import argparse

from likra.cli.common import Command, add_config_flag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.scoring.evaluate import EvalConfig

    add_config_flag(parser)
    add_flags(parser, EvalConfig)


def run(args: argparse.Namespace) -> int:
    import time

    from likra.config import config_from_args
    from likra.data.examples import FEWSHOT_SEED
    from likra.data.lmeval_tasks import check_specs, use_include_paths
    from likra.distributed import is_main, start
    from likra.io import atomic_write_json
    from likra.model.loading import check_quantize_available, model_max_length
    from likra.scoring.evaluate import (
        EvalConfig,
        check_eval_outputs,
        default_eval_out,
        evaluate,
        format_table,
        load_eval_data,
        load_eval_model,
    )
    from likra.scoring.modes import check_modes
    from likra.scoring.settings import check_shots

    cfg = config_from_args(EvalConfig, args)
    check_quantize_available(cfg.quantize)
    check_modes(cfg.modes)
    check_eval_outputs(cfg)
    check_shots(cfg.shots, cfg.fewshot_data, cfg.fewshot_seed, FEWSHOT_SEED)
    use_include_paths(cfg.include_path)
    check_specs(cfg.data)  # lm-eval tasks found and of a kind likra takes before the model loads
    start()
    model, tokenizer = load_eval_model(cfg)
    data = load_eval_data(cfg, tokenizer, model_max_length(model))
    from likra.reports.harness import seed_generators

    seeds = seed_generators()  # as the harness does before it evaluates: what --lm-eval-out records
    started = time.perf_counter()
    results = evaluate(cfg, model, tokenizer, progress=not args.quiet, data=data)
    seconds = time.perf_counter() - started
    if not is_main():
        return 0
    if results.get("random_weights"):
        print("random weights (random:<shape>): these numbers measure the pipeline and its speed, not a model")
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

        paths = write_eval_as_harness(cfg, results, data, model, tokenizer, seconds, seeds)
        print("lm-eval-style results written to " + ", ".join(map(str, paths)))
    return 0


COMMAND = Command(
    "eval",
    "score a run (or a base model) in every mode; prints a table, writes JSON",
    add_arguments,
    run,
    "Evaluate a Likra run on multiple-choice data in registered modes or expressions over heads.",
)
