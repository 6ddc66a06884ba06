"""`likra generate`: continue prompts with a mode's heads (e.g. log p_pos - w log p_neg, restricted to the
first head's plausible tokens); prints the generations or writes JSONL."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from likra.cli.common import Command, add_config_flag
from likra.errors import LikraError

if TYPE_CHECKING:
    from likra.generation.prompts import GenerateConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.generation.prompts import GenerateConfig

    add_config_flag(parser)
    add_flags(parser, GenerateConfig)
    parser.add_argument(
        "--stop",
        action="append",
        metavar="STR",
        help="stop string, repeatable; the text is cut before it (\\n and \\t are understood)",
    )


def check_sources(cfg: GenerateConfig) -> None:
    """Exactly one of --run / --model and one of --prompt / --data."""
    if cfg.run and cfg.model:
        raise LikraError("give either --run or --model, not both")
    if not cfg.run and not cfg.model:
        raise LikraError("give --run RUN (a trained run folder) or --model MODEL (mode base only)")
    if (cfg.prompt is None) == (cfg.data is None):
        raise LikraError("give either --prompt TEXT or --data FILE.jsonl")
    if cfg.prompt is not None and not cfg.prompt.strip():
        raise LikraError("--prompt: empty prompt; give some text to continue")


def run(args: argparse.Namespace) -> int:
    from likra.config import config_from_args
    from likra.generation.decoder import HeadDecoder
    from likra.generation.prompts import GenerateConfig, read_prompts, unescape
    from likra.io import atomic_write_text, check_output_file
    from likra.model.heads import BASE
    from likra.model.loading import check_quantize_available
    from likra.scoring.modes import get_mode

    cfg = config_from_args(GenerateConfig, args)
    if args.stop:
        cfg.stop = [unescape(s) for s in args.stop]
    if cfg.model and args.mode is None:
        cfg.mode = BASE  # a plain model has only the base "head"
    check_sources(cfg)
    check_quantize_available(cfg.quantize)
    if cfg.out:
        check_output_file(cfg.out, cfg.overwrite)
    mode = get_mode(cfg.mode)
    if cfg.run:
        from likra.runs import read_manifest, resolve_run

        have = (BASE, *read_manifest(resolve_run(cfg.run))["heads"])
        missing = [h for h in mode.heads if h not in have]
        if missing:
            raise LikraError(f"mode {cfg.mode!r} needs head(s) {', '.join(missing)}; {cfg.run} has {', '.join(have)}")
    elif mode.heads != (BASE,):
        raise LikraError(f"a plain --model has no heads: mode {cfg.mode!r} needs --run RUN (use --mode base)")
    rows = read_prompts(cfg.data) if cfg.data else [{"prompt": cfg.prompt}]
    if cfg.run:
        from likra.runs import load_run_model

        model, tokenizer, _ = load_run_model(cfg.run, cfg.dtype, quantize=cfg.quantize)
    else:
        from likra.model.loading import load_base_model, load_tokenizer

        model = load_base_model(cfg.model, cfg.dtype, quantize=cfg.quantize)
        tokenizer = load_tokenizer(cfg.model)
    results = HeadDecoder(model, tokenizer, cfg).generate([r["prompt"] for r in rows])
    out_rows = [
        {**row, "generation": g.text, "finish": g.finish, "tokens": len(g.token_ids)} for row, g in zip(rows, results)
    ]
    if cfg.out:
        atomic_write_text(cfg.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out_rows))
        print(f"{len(out_rows)} generations written to {cfg.out}")
    elif cfg.prompt is not None:
        print(results[0].text)
    else:
        for r in out_rows:
            print(json.dumps(r, ensure_ascii=False))
    return 0


COMMAND = Command(
    "generate",
    "continue prompts with a mode's heads (likra, negbase, sft, base or an expression)",
    add_arguments,
    run,
    "Generate text where each next token maximises (or is sampled from) a mode's combination of the heads' "
    "log-softmax, e.g. log p_pos - w log p_neg, among the tokens with p_first >= alpha * max p_first.",
)
