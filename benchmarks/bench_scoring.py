"""Scoring engine vs the straightforward scorer, in one process, on the same questions and model.

The straightforward way (the authors'): one padded forward pass per (question, choice) per head over
the whole prompt, full-vocabulary log-softmax at every position, and every mode a separate harness
run that re-runs its heads (base, sft, likra, negbase = 1 + 1 + 2 + 2 head passes). The engine runs
each head once. Prints questions/s, the ratio, tokens/s, and useful GFLOP/s against the matmul peak.

    python benchmarks/bench_scoring.py --model smollm2-135m --questions 48 --shots 0 5 --dtype fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import body_and_head_params, machine, matmul_peak_gflops, sync  # noqa: E402

from likra.data.benchmarks import load_spec  # noqa: E402
from likra.data.examples import draw_shots, fewshot_prefix  # noqa: E402
from likra.model.heads import LoraSettings, attach_heads  # noqa: E402
from likra.model.loading import default_device, load_base_model, load_tokenizer  # noqa: E402
from likra.scoring.engine import ScoringEngine, tokenize_questions  # noqa: E402
from likra.scoring.modes import get_mode, heads_for  # noqa: E402
from likra.scoring.reference import reference_loglikelihoods  # noqa: E402

MODES = ("base", "sft", "likra", "negbase")


def checkpoint_like(model, seed: int = 0):
    """Both heads with non-zero B, as after training, so every head computes a distinct function."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=gen) * 0.01).to(p.dtype))
    return model


def useful_flops(model, questions, prefix_ids) -> tuple[float, int]:
    """2 x params x tokens actually needed: prefix once, contexts once, answers once, head at answers."""
    body, head = body_and_head_params(model)
    tokens = len(prefix_ids) + sum(q.row_length for q in questions)
    answer_tokens = sum(len(c) for q in questions for c in q.choice_ids)
    return 2.0 * body * tokens + 2.0 * head * answer_tokens, tokens


def measure(
    model, questions, prefix_ids, device, reference_batch: int = 8, batch_tokens: int | None = None, pad_id: int = 0
) -> dict:
    """Time engine and reference on the same questions; check they agree; count useful FLOPs."""
    heads = heads_for(MODES)
    engine = ScoringEngine(model, max_batch_tokens=batch_tokens)
    engine.loglikelihoods(questions[:2], heads, prefix_ids)  # warm-up
    sync(device)
    start = time.perf_counter()
    fast = engine.loglikelihoods(questions, heads, prefix_ids)
    sync(device)
    engine_s = time.perf_counter() - start

    start = time.perf_counter()
    slow = {}
    for mode in MODES:  # one harness run per mode, each re-running its heads
        for head in get_mode(mode).heads:
            slow[head] = reference_loglikelihoods(
                model, questions, head, prefix_ids, batch_size=reference_batch, pad_id=pad_id
            )
    sync(device)
    reference_s = time.perf_counter() - start

    diff = max(float(np.abs(a - b).max()) for h in heads for a, b in zip(fast[h], slow[h]))
    scale = max(float(np.abs(a).max()) for h in heads for a in slow[h])
    flops, tokens = useful_flops(model, questions, prefix_ids)
    flops *= len(heads)
    dtype = next(model.parameters()).dtype
    peak = matmul_peak_gflops(dtype, device)
    return {
        **machine(),
        "dtype": str(dtype).replace("torch.", ""),
        "questions": len(questions),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "engine_questions_per_s": len(questions) / engine_s,
        "reference_questions_per_s": len(questions) / reference_s,
        "speedup": reference_s / engine_s,
        "engine_tokens_per_s": tokens * len(heads) / engine_s,
        "engine_useful_gflops": flops / engine_s / 1e9,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": flops / engine_s / 1e9 / peak,
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
        "engine_s": engine_s,
        "reference_s": reference_s,
    }


def print_rows(rows) -> None:
    print(
        f"{'dtype':<8} {'shots':>5} {'engine q/s':>10} {'ref q/s':>8} {'speedup':>7} {'tok/s':>8} "
        f"{'GFLOP/s':>8} {'peak':>7} {'%peak':>6} {'max|diff|':>9}"
    )
    for r in rows:
        print(
            f"{r['dtype']:<8} {r['shots']:>5} {r['engine_questions_per_s']:>10.2f} "
            f"{r['reference_questions_per_s']:>8.2f} "
            f"{r['speedup']:>7.1f} {r['engine_tokens_per_s']:>8.0f} {r['engine_useful_gflops']:>8.1f} "
            f"{r['matmul_peak_gflops']:>7.1f} {100 * r['fraction_of_peak']:>5.0f}% {r['max_abs_diff']:>9.2e}"
        )


def run(args, dtype_name: str, shots: int, device) -> dict:
    tokenizer = load_tokenizer(args.model)
    model = checkpoint_like(attach_heads(load_base_model(args.model, dtype_name, device), LoraSettings()))
    records = load_spec(args.data)[: args.questions]
    prefix = (
        fewshot_prefix(draw_shots(load_spec(args.fewshot_data), shots, 1234, {r.id for r in records})) if shots else ""
    )
    prefix_ids, questions = tokenize_questions(tokenizer, records, prefix)
    row = measure(model, questions, prefix_ids, device, args.reference_batch, args.batch_tokens, tokenizer.pad_token_id)
    return {"model": args.model, "shots": shots, "prefix_tokens": len(prefix_ids), **row}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="arc_challenge:validation")
    p.add_argument("--fewshot-data", default="arc_challenge:train")
    p.add_argument("--questions", type=int, default=48)
    p.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    p.add_argument("--dtype", nargs="+", default=["fp32"])
    p.add_argument("--batch-tokens", type=int, default=None)
    p.add_argument("--reference-batch", type=int, default=8)
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args()
    device = default_device()
    rows = [run(args, dt, shots, device) for dt in args.dtype for shots in args.shots]
    print_rows(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
