"""GPU device check: the scoring and training benchmarks in bf16 on random-init models, no downloads.

Two model shapes: the embedded SmolLM2-135M's config and a 1B-class Llama (Llama-3.2-1B's shape),
both randomly initialised, on synthetic ARC-like questions (random tokens: a ~60-token context,
4 choices of 3-20 tokens, and a ~450-token 5-shot prefix). For each: engine vs straightforward
scorer (questions/s, speedup, tokens/s, useful GFLOP/s against the measured bf16 matmul peak,
max |diff|), at 0 and 5 shots, and training examples/s against the HF Trainer's defaults.

    python benchmarks/device_check.py              # on the GPU, well under 8 minutes
    python benchmarks/device_check.py --device cpu --questions 8 --train-examples 16 --shapes smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scoring import checkpoint_like, measure, print_rows  # noqa: E402
from bench_training import measure_training, print_training  # noqa: E402

from likra.data.examples import Example  # noqa: E402
from likra.model.heads import LoraSettings, attach_heads  # noqa: E402
from likra.scoring.engine import QuestionTokens  # noqa: E402

SHAPES = {
    "smollm2-135m": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        tie_word_embeddings=True,
        rope_theta=100000.0,
    ),
    "llama-1b-shape": dict(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
        rope_theta=500000.0,
    ),
}


def random_model(shape: str, dtype: torch.dtype, device: torch.device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(max_position_embeddings=4096, **SHAPES[shape])
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    return model.eval()


def synthetic_questions(n: int, vocab: int, seed: int = 0) -> list[QuestionTokens]:
    rng = random.Random(seed)
    tok = lambda k: tuple(rng.randrange(100, vocab) for _ in range(k))  # noqa: E731
    return [
        QuestionTokens(tok(rng.randint(25, 110)), tuple(tok(rng.randint(3, 20)) for _ in range(4))) for _ in range(n)
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--questions", type=int, default=256)
    p.add_argument("--train-examples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", help="write all figures here")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, dtype {args.dtype}, torch {torch.__version__}")
    report = {"device": name, "dtype": args.dtype, "scoring": [], "training": {}}
    for shape in args.shapes:
        start = time.perf_counter()
        model = checkpoint_like(attach_heads(random_model(shape, dtype, device), LoraSettings()))
        vocab = SHAPES[shape]["vocab_size"]
        questions = synthetic_questions(args.questions, vocab)
        prefix = synthetic_questions(1, vocab, seed=1)[0].context_ids * 5
        rows = []
        for shots, prefix_ids in ((0, ()), (5, prefix)):
            rows.append(
                {"shape": shape, "shots": shots, **measure(model, questions, prefix_ids, device, reference_batch=32)}
            )
        print(f"\n== {shape}: scoring ({args.questions} questions, modes base/sft/likra/negbase)")
        print_rows(rows)
        report["scoring"] += rows
        del model
        model = attach_heads(random_model(shape, dtype, device), LoraSettings(), names=("hf_default", "likra"))
        rng = random.Random(2)
        examples = [
            Example(f"e{i}", q.context_ids, q.choice_ids[rng.randrange(4)])
            for i, q in enumerate(synthetic_questions(args.train_examples, vocab, seed=2))
        ]
        result = measure_training(model, examples, 0, args.batch_size, 1e-4)
        print(f"\n== {shape}: training")
        print_training(result)
        report["training"][shape] = result
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"({shape} took {time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
