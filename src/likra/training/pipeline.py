"""`likra train`: records -> positive and negative examples -> two trained heads -> a run folder."""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from likra.config import TrainConfig
from likra.data.benchmarks import load_spec
from likra.data.examples import negative_pairs, positive_pairs, tokenize_answers
from likra.distributed import barrier, is_main, start
from likra.errors import LikraError
from likra.model.heads import NEGATIVE, POSITIVE, attach_heads, save_heads
from likra.model.loading import load_base_model, load_tokenizer
from likra.runs import ADAPTERS, finish_run
from likra.training.trainer import train_head

log = logging.getLogger(__name__)


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


def build_examples(cfg: TrainConfig, tokenizer, records):
    """(positive examples, negative examples) on the same questions."""
    pos = tokenize_answers(tokenizer, positive_pairs(records), cfg.train.max_length)
    neg = tokenize_answers(tokenizer, negative_pairs(records, cfg.negative_seed, cfg.negatives), cfg.train.max_length)
    return pos, neg


def train_run(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train both heads and write the run folder atomically; returns its path."""
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    if out.exists() and not cfg.overwrite:
        what = "holds a run" if (out / "likra.json").exists() else "exists"
        raise LikraError(f"{out}: already {what}; choose another --out or pass --overwrite")
    start()
    records = select_questions(load_spec(cfg.data, source=cfg.source), cfg.limit, cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    model = attach_heads(load_base_model(cfg.model, cfg.dtype), cfg.lora, seed=cfg.train.seed)
    pos, neg = build_examples(cfg, tokenizer, records)
    staging = out.with_name(out.name + ".partial")
    if is_main():
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    weights = next(model.parameters())
    bf16 = weights.dtype == torch.bfloat16 and weights.device.type == "cuda"
    stats = {}
    for head, examples in ((POSITIVE, pos), (NEGATIVE, neg)):
        log.info("training %s head on %d examples", head, len(examples))
        stats[head] = asdict(train_head(model, head, examples, cfg.train, staging / "trainer", tokenizer.pad_token_id,
                                        bf16=bf16, progress=progress))
    barrier()
    if not is_main():
        return out
    shutil.rmtree(staging / "trainer", ignore_errors=True)
    save_heads(model, staging / ADAPTERS)
    manifest = {
        "kind": "train",
        "model": {"name": cfg.model, "dtype": cfg.dtype},
        "heads": [POSITIVE, NEGATIVE],
        "data": {"spec": cfg.data, "source": cfg.source, "questions": len(records),
                 "question_ids": [r.id for r in records]},
        "examples": {POSITIVE: len(pos), NEGATIVE: len(neg)},
        "negatives": {"per_question": cfg.negatives, "seed": cfg.negative_seed},
        "lora": asdict(cfg.lora),
        "train": asdict(cfg.train),
        "stats": stats,
    }
    return finish_run(staging, out, manifest, cfg.overwrite)

