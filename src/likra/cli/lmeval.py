"""`likra lm-eval`: the stock lm-evaluation-harness with the model class `likra`, run by the harness's own
command line (`lm-eval run`): every flag of the installed harness, with its own parser and meaning, plus
likra's shortcuts for the model's arguments (--run, --mode, --weight, ...)."""

from __future__ import annotations

import argparse

from likra.cli.common import Command
from likra.errors import LikraError

TASKS_HELP = (
    "Offline tasks for the bundled benchmarks: likra_arc_challenge, likra_arc_easy, likra_hellaswag, "
    "likra_winogrande, likra_openbookqa, likra_piqa, likra_socialiqa, likra_commonsense_qa, likra_mmlu."
)
# likra's shortcut -> the likra model's argument it sets
MODEL_ARGS = {
    "run": "run",
    "base_model": "model",
    "mode": "mode",
    "weight": "weight",
    "dtype": "dtype",
    "batch_tokens": "batch_tokens",
    "device_map": "device_map",
    "quantize": "quantize",
}

EPILOG = """\
Every other flag is lm-eval's own, parsed by the installed harness's `lm-eval run` parser with its meaning
and short forms (`lm-eval run --help` lists them): --tasks/-t, --model_args/-a, --num_fewshot/-f, --limit/-L,
--output_path/-o, --log_samples/-s, --batch_size/-b, --seed 0,1234,1234,1234, --apply_chat_template,
--system_instruction, --fewshot_as_multiturn, --gen_kwargs, --device, --use_cache/-c, --predict_only/-x,
--wandb_args, --hf_hub_log_args, --verbosity, --trust_remote_code, --include_path, --config/-C, ...
--model defaults to likra; --model_args run=RUN,mode=MODE,weight=W is the same as --run/--mode/--weight.
In `likra lm-eval`, -v is likra's --verbose: the harness's verbosity is --verbosity LEVEL.
The stock command line itself: python -m likra.lmeval --model likra --model_args run=RUN --tasks ...
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG + "\n" + TASKS_HELP
    likra = p.add_argument_group("likra (shortcuts for the likra model's --model_args)")
    likra.add_argument("--run", help="run folder written by likra train (or a hub repo id of an exported run)")
    likra.add_argument("--base-model", metavar="MODEL", help="a plain model instead of a run (mode base)")
    likra.add_argument(
        "--mode", help="a mode (likra, negbase, sft, base, pos_base) or an expression over head names (default likra)"
    )
    likra.add_argument("--weight", type=float, help="negative-head weight w (default 1)")
    likra.add_argument("--dtype", help="the dtype scores are computed in (default auto: fp32 where an fp32 copy fits)")
    likra.add_argument("--batch-tokens", type=int, help="token budget of one forward pass")
    likra.add_argument("--device-map", help="spread a model too large for one device (auto, balanced, sequential)")
    likra.add_argument("--quantize", help="4bit: load the base in NF4 (default: as the run was trained)")
    likra.add_argument("--source", choices=["auto", "offline", "hub"], default="auto", help="data of the likra_* tasks")


def run(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("lm_eval") is None:
        raise LikraError("lm-eval is not installed: pip install 'likra[lmeval]' (lm-eval 0.4.x)")
    if args.quantize is not None:
        from likra.model.loading import check_quantize_available

        check_quantize_available(args.quantize)
    from likra.lmeval.invoke import LIKRA_MODEL, execute, prepare, run_parser

    harness = run_parser("likra lm-eval").parse_args(getattr(args, "_extra", []))
    shortcuts = {arg: getattr(args, flag) for flag, arg in MODEL_ARGS.items() if getattr(args, flag) is not None}
    if args.base_model and args.mode is None:
        shortcuts["mode"] = "base"  # a plain model has no heads
    if shortcuts:
        if (harness.model or LIKRA_MODEL) != LIKRA_MODEL:
            flags = ", ".join("--" + f.replace("_", "-") for f, a in MODEL_ARGS.items() if a in shortcuts)
            raise LikraError(f"{flags} set the likra model's arguments, not those of --model {harness.model}")
        model_args = dict(harness.model_args or {})
        both = sorted(set(shortcuts) & set(model_args))
        if both:
            raise LikraError(f"--model_args {both[0]}=... and its likra flag given both; give one")
        harness.model_args = {**model_args, **shortcuts}
    execute(prepare(harness, source=args.source, default_model=LIKRA_MODEL))
    return 0


COMMAND = Command(
    "lm-eval",
    "run the stock lm-evaluation-harness with the `likra` model (every flag of lm-eval run)",
    add_arguments,
    run,
    "Score any lm-eval task in a Likra mode with the harness's own command line (`lm-eval run`), the model "
    "class `likra` registered.",
    passthrough=True,
)
