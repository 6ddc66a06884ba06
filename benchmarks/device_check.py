"""GPU device check: the scoring and training benchmarks in bf16 on random-init models, no downloads.

Two model shapes: the embedded SmolLM2-135M's config and a 1B-class Llama (Llama-3.2-1B's shape),
both randomly initialised, on synthetic ARC-like questions (random tokens: a ~60-token context,
4 choices of 3-20 tokens, and a ~450-token 5-shot prefix). For each: engine vs straightforward
scorer (questions/s, speedup, tokens/s, useful GFLOP/s against the measured bf16 matmul peak,
max |diff|), at 0 and 5 shots, and training examples/s against the HF Trainer's defaults and with
likra's packed rows (`--packing`). Then the larger-than-one-device paths on the 1B shape:
- placement: the model saved and loaded with `device_map="auto"` and a GPU memory cap of half its
  weights (accelerate puts the other layers in CPU memory): scoring questions/s and max |diff| against
  the model on the GPU alone;
- QLoRA: the same model loaded in 4-bit NF4 (bitsandbytes): memory of the weights, scoring questions/s
  and a LoRA head's training examples/s (with and without packing), against bf16.

    python benchmarks/device_check.py              # on the GPU (the placement section is not yet timed there)
    python benchmarks/device_check.py --device cpu --questions 8 --train-examples 16 --shapes smollm2-135m
    python benchmarks/device_check.py --device cpu --dtype fp32 --questions 8 --train-examples 16 --batch-size 8 \
        --shapes --placement-shape smollm2-135m     # the CPU smoke run of the placement section alone
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
from common import sync  # noqa: E402

from likra.data.examples import Example  # noqa: E402
from likra.model.heads import LoraSettings, attach_heads, reinit_heads  # noqa: E402
from likra.model.loading import load_base_model, prepare_for_training  # noqa: E402
from likra.objectives.mle import train_mle_head  # noqa: E402
from likra.objectives.settings import TrainSettings  # noqa: E402
from likra.scoring.engine import QuestionTokens, ScoringEngine  # noqa: E402

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


def synthetic_examples(n: int, vocab: int) -> list[Example]:
    rng = random.Random(2)
    return [
        Example(f"e{i}", q.context_ids, q.choice_ids[rng.randrange(4)])
        for i, q in enumerate(synthetic_questions(n, vocab, seed=2))
    ]


def timed_scores(model, questions, device) -> tuple[float, list]:
    engine = ScoringEngine(model)
    engine.loglikelihoods(questions[:8], ("base",))  # warm-up
    sync(device)
    start = time.perf_counter()
    scores = engine.loglikelihoods(questions, ("base",))["base"]
    sync(device)
    return len(questions) / (time.perf_counter() - start), scores


def train_rates(model, examples, batch_size: int) -> dict[str, float]:
    """Examples/s of a fresh `positive` head, without and with packed rows."""
    return {f"packing={p}": train_rate(model, examples, batch_size, p) for p in (False, True)}


def train_rate(model, examples, batch_size: int, packing: bool) -> float:
    import tempfile

    reinit_heads(model, ("positive",), seed=0)
    settings = TrainSettings(learning_rate=1e-4, batch_size=batch_size, packing=packing, logging_steps=1000)
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = next(p for p in model.parameters() if p.is_floating_point()).dtype == torch.bfloat16
        stats = train_mle_head(model, "positive", examples, settings, Path(tmp), 0, bf16=bf16, progress=False)
    return stats.examples_per_second


def weights_gib(model) -> float:
    return model.get_memory_footprint() / 2**30


def larger_than_one_device(shape: str, dtype_name: str, device, questions, examples, batch_size: int) -> dict:
    """Device-map placement and a 4-bit base, against the model on one device in `dtype_name`."""
    import tempfile

    out: dict = {"shape": shape}
    with tempfile.TemporaryDirectory() as folder:
        full = random_model(shape, torch.bfloat16 if dtype_name == "bf16" else torch.float32, device)
        full.save_pretrained(folder)
        size = weights_gib(full)
        rate, want = timed_scores(full, questions, device)
        out["one_device"] = {"weights_gib": size, "questions_per_s": rate}
        out["train_one_device"] = train_rates(attach_heads(full, LoraSettings()), examples, batch_size)
        del full
        empty_cache(device)
        if device.type == "cuda":
            cap = {device.index or 0: f"{int(size * 2**30 / 2 / 2**20)}MiB", "cpu": "64GiB"}
            spread = load_base_model(folder, dtype_name, device, device_map="auto", max_memory=cap)
            rate, got = timed_scores(spread, questions, device)
            diff = max(float(abs(a - b).max()) for a, b in zip(got, want))
            out["device_map"] = {
                "placement": sorted({str(v) for v in spread.hf_device_map.values()}),
                "questions_per_s": rate,
                "max_abs_diff": diff,
            }
            del spread
            empty_cache(device)
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            out["qlora"] = "bitsandbytes not installed"
            return out
        quantized = load_base_model(folder, dtype_name, device, quantize="4bit")
        rate, got = timed_scores(quantized, questions, device)
        out["qlora"] = {
            "weights_gib": weights_gib(quantized),
            "questions_per_s": rate,
            "max_abs_diff_vs_full": max(float(abs(a - b).max()) for a, b in zip(got, want)),
            "train_examples_per_s": train_rates(
                attach_heads(prepare_for_training(quantized), LoraSettings()), examples, batch_size
            ),
        }
    return out


def empty_cache(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--questions", type=int, default=256)
    p.add_argument("--train-examples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", help="write all figures here")
    p.add_argument("--placement-shape", default="llama-1b-shape", choices=list(SHAPES))
    p.add_argument("--skip-placement", action="store_true", help="skip the device-map and 4-bit section")
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
        examples = synthetic_examples(args.train_examples, vocab)
        result = measure_training(model, examples, 0, args.batch_size, 1e-4)
        print(f"\n== {shape}: training")
        print_training(result)
        report["training"][shape] = result
        del model
        empty_cache(device)
        print(f"({shape} took {time.perf_counter() - start:.0f} s)")
    if not args.skip_placement:
        start = time.perf_counter()
        vocab = SHAPES[args.placement_shape]["vocab_size"]
        report["larger_than_one_device"] = placed = larger_than_one_device(
            args.placement_shape,
            args.dtype,
            device,
            synthetic_questions(args.questions, vocab),
            synthetic_examples(args.train_examples, vocab),
            args.batch_size,
        )
        print(f"\n== {args.placement_shape}: device map and 4-bit base")
        print(json.dumps(placed, indent=2))
        print(f"(took {time.perf_counter() - start:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
