"""`likra train`: records -> each head's training set -> heads trained by their objectives -> a run folder."""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import asdict
from pathlib import Path

from likra.config import NonNegativeInt, PositiveInt, check, option, settings
from likra.data.benchmarks import SOURCES
from likra.data.examples import negative_pairs
from likra.data.formats import FORMATS, load_data
from likra.distributed import barrier, is_main, start
from likra.errors import LikraError
from likra.model.heads import LoraSettings, attach_heads, likra_heads, reinit_heads, save_heads
from likra.model.loading import DTYPES, QUANTIZE, load_base_model, load_tokenizer, prepare_for_training, uses_cuda_bf16
from likra.objectives import TrainContext, get_objective
from likra.objectives.mle import TrainSettings
from likra.objectives.registry import trainer_callbacks
from likra.runs import ADAPTERS, check_out, finish_run
from likra.tracking import REPORT_TO, Tracker, check_available, make_tracker

log = logging.getLogger(__name__)


@settings
class TrainConfig:
    """`likra train`: both heads on one base model, same questions, one negative per question."""

    model: str = option("smollm2-135m", help="hub id, local path, smollm2-135m (embedded) or random-tiny")
    data: str = option("arc-train", help="benchmark spec (e.g. arc-train, arc_easy:train+validation) or a JSONL file")
    source: str = option("auto", help="where benchmark data comes from", choices=SOURCES)
    limit: PositiveInt | None = option(None, help="train on this many questions (a seeded subset)")
    format: str = option(
        "cloze",
        help="prompt format: cloze (benchmark prompt, choice texts) or letter "
        "(lm-eval mmlu style, scored on ' A', ' B', ...)",
        choices=FORMATS,
    )
    chat_template: bool = option(False, help="render prompts with the tokenizer's chat template (recorded in the run)")
    negatives: str = option("one", help="incorrect answers per question", choices=("one", "all"))
    negative_seed: NonNegativeInt = option(0, help="seed of the negative draw")
    dtype: str = option("auto", help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16", choices=DTYPES)
    quantize: str = option(
        "none", help="QLoRA: train the heads on a 4-bit NF4 base (bitsandbytes; recorded in the run)", choices=QUANTIZE
    )
    out: str | None = option(None, help="run folder (default runs/<model>-<data>)")
    overwrite: bool = option(False, help="replace an existing run folder (only one that likra wrote)")
    report_to: str = option("none", help="log the heads' training to tensorboard or wandb", choices=REPORT_TO)
    lora: LoraSettings = option(default_factory=LoraSettings, help="LoRA of both heads")
    train: TrainSettings = option(default_factory=TrainSettings, help="training of both heads", prefix="")


def select_questions(records, limit: int | None, seed: int):
    """A seeded shuffle of the records, cut to `limit`: nested subsets for growing limits."""
    order = list(records)
    random.Random(seed).shuffle(order)
    if limit is not None:
        if limit < 1:
            raise LikraError(f"limit must be positive, got {limit}")
        order = order[:limit]
    return order


def default_out(cfg: TrainConfig) -> Path:
    name = f"{Path(cfg.model).name}-{cfg.data.replace(':', '_').replace(',', '+').replace('/', '_')}"
    return Path("runs") / name


def train_run(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train the Likra heads and write the run folder atomically; returns its path."""
    check(cfg)
    check_available(cfg.report_to)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    check_out(out, cfg.overwrite)
    start()
    tokenizer = load_tokenizer(cfg.model)
    data, info = load_data(cfg.data, cfg.source, cfg.format, cfg.chat_template, tokenizer, cfg.train.max_length)
    records = select_questions(data, cfg.limit, cfg.train.seed)
    heads = likra_heads()
    base = load_base_model(cfg.model, cfg.dtype, quantize=cfg.quantize)
    base = prepare_for_training(base, cfg.train.gradient_checkpointing)
    model = attach_heads(base, cfg.lora, names=tuple(h.adapter for h in heads), seed=cfg.train.seed)
    ctx = TrainContext(
        model,
        tokenizer,
        cfg.train,
        cfg.lora,
        lambda: load_base_model(cfg.model, cfg.dtype, quantize=cfg.quantize),
        bf16=uses_cuda_bf16(model),
        progress=progress,
    )
    negatives = negative_pairs(records, cfg.negative_seed, cfg.negatives)
    items = {h.name: get_objective(h.objective).examples(ctx, h, records, negatives) for h in heads}
    staging = out.with_name(out.name + ".partial")
    if is_main():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    stats = {}
    tracker = make_tracker(cfg.report_to, staging, out.name, asdict(cfg)) if is_main() else Tracker()
    try:
        for head in heads:
            log.info("training %s head on %d examples", head.name, len(items[head.name]))
            reinit_heads(model, (head.adapter,), cfg.train.seed, (head.init,))
            with trainer_callbacks(tracker.trainer_callbacks(0, head.name)):
                trained = get_objective(head.objective).train(ctx, head, items[head.name], staging / "trainer")
            stats[head.name] = asdict(trained)
    finally:
        tracker.close()
    barrier()
    if not is_main():
        return out
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    save_heads(model, staging / ADAPTERS, names=[h.adapter for h in heads])
    manifest = {
        "kind": "train",
        "model": {"name": cfg.model, "dtype": cfg.dtype, "quantize": cfg.quantize},
        "heads": [h.adapter for h in heads],
        "head_specs": [h.to_json() for h in heads],
        "data": {
            "spec": cfg.data,
            "source": cfg.source,
            "questions": len(records),
            "question_ids": [r.id for r in records],
            **info.to_json(),
        },
        "examples": {h.name: len(items[h.name]) for h in heads},
        "negatives": {"per_question": cfg.negatives, "seed": cfg.negative_seed},
        "lora": asdict(cfg.lora),
        "train": asdict(cfg.train),
        "stats": stats,
    }
    return finish_run(staging, out, manifest, cfg.overwrite)
