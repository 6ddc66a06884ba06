"""Training throughput: likra's head training vs the HF Trainer's defaults, same examples, same model.

Baseline: the stock Trainer loss (logits over every position) with its random sampler and right
padding to the longest example of each batch. likra: batches grouped by length and the output
projection only at answer positions. Both train a fresh LoRA head from the same initialisation on the
same examples with the same seed; the script prints examples/s, the ratio, and the answer-token loss
of each trained head on the training examples (equal loss = same maths).

    python benchmarks/bench_training.py --model smollm2-135m --examples 256 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from likra.data.benchmarks import load_spec
from likra.data.examples import positive_pairs, tokenize_answers
from likra.model.heads import LoraSettings, attach_heads, use_head
from likra.model.loading import load_base_model, load_tokenizer
from likra.objectives.losses import answer_token_loss
from likra.objectives.mle import PadCollator, train_mle_head
from likra.objectives.settings import TrainSettings
from likra.training.pipeline import select_questions


def mean_loss(model, head, examples, pad_id, batch=32) -> float:
    total, count = 0.0, 0
    collate = PadCollator(pad_id)
    with use_head(model, head), torch.no_grad():
        for i in range(0, len(examples), batch):
            chunk = examples[i : i + batch]
            n = sum(len(e.answer_ids) for e in chunk)
            total += (
                answer_token_loss(
                    model, collate([{"input_ids": e.input_ids, "labels": e.labels} for e in chunk])
                ).item()
                * n
            )
            count += n
    return total / count


def measure_training(model, examples, pad: int, batch_size: int, lr: float) -> dict:
    """Train heads `hf_default` and `likra` of `model` on `examples`; examples/s and final losses."""
    variants = {
        "hf_default": TrainSettings(
            learning_rate=lr, batch_size=batch_size, group_by_length=False, answer_only_logits=False, logging_steps=1
        ),
        "likra": TrainSettings(learning_rate=lr, batch_size=batch_size, logging_steps=1),
    }
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    # Same initialisation for both heads.
    set_peft_model_state_dict(model, get_peft_model_state_dict(model, adapter_name="hf_default"), adapter_name="likra")
    bf16 = next(model.parameters()).dtype == torch.bfloat16 and torch.cuda.is_available()
    rows = {}
    for name, settings in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            stats = train_mle_head(model, name, examples, settings, Path(tmp), pad, bf16=bf16, progress=False)
        rows[name] = {
            "examples_per_s": stats.examples_per_second,
            "seconds": stats.seconds,
            "final_loss": mean_loss(model, name, examples, pad),
            "logged_losses": stats.losses,
        }
    from common import machine

    return {
        **machine(),
        "examples": len(examples),
        "batch_size": batch_size,
        "initial_loss": mean_loss(model, "base", examples, pad),
        "rows": rows,
        "speedup": rows["likra"]["examples_per_s"] / rows["hf_default"]["examples_per_s"],
    }


def print_training(result: dict) -> None:
    print(
        f"{result['examples']} examples, batch {result['batch_size']}, {torch.get_num_threads()} threads; "
        f"answer loss before training {result['initial_loss']:.4f}"
    )
    for name, r in result["rows"].items():
        print(
            f"{name:<11} {r['examples_per_s']:7.2f} examples/s  {r['seconds']:7.1f} s  loss after {r['final_loss']:.4f}"
        )
    print(f"speedup {result['speedup']:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="arc-train")
    p.add_argument("--examples", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--json")
    args = p.parse_args()
    tokenizer = load_tokenizer(args.model)
    model = attach_heads(load_base_model(args.model), LoraSettings(), names=("hf_default", "likra"))
    examples = tokenize_answers(tokenizer, positive_pairs(select_questions(load_spec(args.data), args.examples, 0)))
    result = measure_training(model, examples, tokenizer.pad_token_id, args.batch_size, args.lr)
    print_training(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
