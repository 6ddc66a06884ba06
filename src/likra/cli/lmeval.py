"""`likra lm-eval`: the stock lm-evaluation-harness, in-process through its public API (`simple_evaluate`),
with the model class `likra`; it takes the harness's own flags (--tasks, --num_fewshot, --limit, ...)."""

from __future__ import annotations

import argparse

from likra.cli.common import Command
from likra.errors import LikraError

TASKS_HELP = (
    "Offline tasks for the bundled benchmarks: likra_arc_challenge, likra_arc_easy, likra_hellaswag, "
    "likra_winogrande, likra_openbookqa, likra_piqa, likra_socialiqa, likra_commonsense_qa, likra_mmlu."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    likra = p.add_argument_group("likra")
    likra.add_argument("--run", help="run folder written by likra train (or a hub repo id of an exported run)")
    likra.add_argument("--model", dest="base_model", help="a plain model instead of a run (mode base)")
    likra.add_argument(
        "--mode",
        default="likra",
        help="a mode (likra, negbase, sft, base, pos_base) or an expression over head names (default likra)",
    )
    likra.add_argument("--weight", type=float, default=1.0, help="negative-head weight w (default 1)")
    likra.add_argument("--dtype", help="model dtype (default: the run's)")
    likra.add_argument("--batch-tokens", type=int, help="token budget of one forward pass")
    likra.add_argument("--device-map", help="spread a model too large for one device (auto, balanced, sequential)")
    likra.add_argument("--quantize", help="4bit: load the base in NF4 (default: as the run was trained)")
    likra.add_argument("--source", choices=["auto", "offline", "hub"], default="auto", help="data of the likra_* tasks")
    harness = p.add_argument_group("lm-evaluation-harness (its own flags and meanings)")
    harness.add_argument("--tasks", required=True, help="comma-separated task names. " + TASKS_HELP)
    harness.add_argument("--num_fewshot", type=int, help="few-shot examples per question")
    harness.add_argument("--limit", type=float, help="questions per task (a fraction if < 1)")
    harness.add_argument("--output_path", help="folder for results_<timestamp>.json (and samples)")
    harness.add_argument("--log_samples", action="store_true", help="also write per-question samples")
    harness.add_argument("--include_path", help="another folder of task configs")
    harness.add_argument("--seed", type=int, help="the harness's random, numpy, torch and few-shot seed")
    harness.add_argument("--bootstrap_iters", type=int, default=100000, help="bootstrap resamples for stderr")
    harness.add_argument("--write_out", action="store_true", help="print the first prompts of each task")
    harness.add_argument("--show_config", action="store_true", help="print the whole result and task configs")
    harness.add_argument("--batch_size", help="accepted for compatibility; likra sizes its batches by tokens")


def check_harness_arguments(args: argparse.Namespace) -> None:
    """The numbers the harness would only refuse with a traceback (or not at all), refused in one line before
    anything loads: --limit > 0, --num_fewshot >= 0, --bootstrap_iters >= 0, a finite --weight within 1e6,
    --batch-tokens > 0."""
    import math

    if args.limit is not None and not (math.isfinite(args.limit) and args.limit > 0):
        raise LikraError(f"--limit: {args.limit:g} is not a positive number of questions (or a fraction below 1)")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise LikraError(f"--num_fewshot: {args.num_fewshot} is negative")
    if args.bootstrap_iters < 0:
        raise LikraError(f"--bootstrap_iters: {args.bootstrap_iters} is negative")
    if not (math.isfinite(args.weight) and abs(args.weight) <= 1e6):
        raise LikraError(f"--weight: {args.weight:g} is not a finite number within [-1e6, 1e6]")
    if args.batch_tokens is not None and args.batch_tokens < 1:
        raise LikraError(f"--batch-tokens: {args.batch_tokens} is not a positive number of tokens")
    if not [t for t in args.tasks.split(",") if t.strip()]:
        raise LikraError("--tasks: give at least one task name")


def check_tasks(names: list[str], task_manager) -> None:
    """Every task a registered task, group or tag of the harness (or a task YAML file): an unknown name is one
    line here instead of the harness's KeyError after the model loaded."""
    from pathlib import Path

    from likra.limits import shorten

    known = set(task_manager.all_tasks)
    unknown = [name for name in names if name not in known and not Path(name).is_file()]
    if unknown:
        close = [t for t in sorted(known) if any(u.lower() in t.lower() for u in unknown)][:5]
        raise LikraError(
            f"--tasks: unknown task {shorten(', '.join(unknown))}"
            + (f" (similar: {', '.join(close)})" if close else "")
            + "; `lm-eval ls tasks` lists the harness's tasks; likra's offline ones are likra_<benchmark>"
        )


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import json

    if importlib.util.find_spec("lm_eval") is None:
        raise LikraError("lm-eval is not installed: pip install 'likra[lmeval]' (lm-eval 0.4.x)")
    check_harness_arguments(args)
    if not args.run and not args.base_model:
        raise LikraError("give --run RUN (a trained run folder) or --model MODEL (mode base)")
    if args.run:
        from likra.runs import read_manifest, resolve_run

        args.run = str(resolve_run(args.run))  # a hub repo id: downloaded once, here
        read_manifest(args.run)
    from likra.scoring.modes import check_modes

    check_modes([args.mode])
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import handle_non_serializable, make_table

    import likra.lmeval.model  # noqa: F401  (registers the `likra` model with lm-eval)
    from likra.lmeval.tasks import export_requested

    folder = export_requested(args.tasks, source=args.source)
    model_args = {
        "mode": args.mode,
        "weight": args.weight,
        "run": args.run,
        "model": args.base_model,
        "dtype": args.dtype,
        "batch_tokens": args.batch_tokens,
        "device_map": args.device_map,
        "quantize": args.quantize,
    }
    model_args = {k: v for k, v in model_args.items() if v is not None}
    tracker = EvaluationTracker(output_path=args.output_path) if args.output_path else None
    seeds = (
        {}
        if args.seed is None
        else {k: args.seed for k in ("random_seed", "numpy_random_seed", "torch_random_seed", "fewshot_random_seed")}
    )
    limit = None if args.limit is None else (int(args.limit) if args.limit >= 1 else args.limit)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    task_manager = TaskManager(include_path=[str(folder), *([args.include_path] if args.include_path else [])])
    check_tasks(tasks, task_manager)
    results = simple_evaluate(
        model="likra",
        model_args=model_args,
        tasks=tasks,
        num_fewshot=args.num_fewshot,
        limit=limit,
        log_samples=args.log_samples,
        evaluation_tracker=tracker,
        task_manager=task_manager,
        bootstrap_iters=args.bootstrap_iters,
        write_out=args.write_out,
        **seeds,
    )
    if results is None:  # not the main process
        return 0
    samples = results.pop("samples", None)
    if args.show_config:
        print(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False))
    if tracker is not None:
        tracker.save_results_aggregated(results=results, samples=samples if args.log_samples else None)
        if args.log_samples:
            for task_name in results["configs"]:
                tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    print(f"likra ({model_args}), limit: {args.limit}, num_fewshot: {args.num_fewshot}")
    print(make_table(results))
    if "groups" in results:
        print(make_table(results, "groups"))
    return 0


COMMAND = Command(
    "lm-eval",
    "run the stock lm-evaluation-harness with the `likra` model",
    add_arguments,
    run,
    "Score any lm-eval multiple-choice task in a Likra mode, in-process through lm-eval's "
    "simple_evaluate. " + TASKS_HELP,
)
