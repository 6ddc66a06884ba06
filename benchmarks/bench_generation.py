"""Two-head decoding (likra: log p_pos - w log p_neg among the positive head's plausible tokens) against
transformers' `generate` with one adapter active, greedy, in one process on the same prompts and model.

Both sides generate exactly `--new-tokens` tokens per prompt (end of text disabled: `min_new_tokens` for
transformers, no end tokens for likra), from left-padded batches of ARC-Challenge validation questions.
Two-head decoding runs two single-token forwards per step (one per head, each with its own KV cache), so
about 0.5x of one-adapter generation is the cost of the arithmetic; the target of issue #12 is >= 0.45x.
Also timed: likra's decoder in mode sft (one head) to show its own overhead, and a check that mode sft's
tokens equal transformers' greedy tokens.

    python benchmarks/bench_generation.py --prompts 16 --new-tokens 32 --batch-sizes 1 8 \\
        --json benchmarks/results-generation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_scoring import checkpoint_like  # noqa: E402
from common import cpu_name  # noqa: E402

from likra.data.benchmarks import load_spec  # noqa: E402
from likra.generation import GenerationSettings, HeadDecoder  # noqa: E402
from likra.generation.decoder import encode_prompts, left_pad  # noqa: E402
from likra.model.heads import LoraSettings, attach_heads, unwrap_lm, use_head  # noqa: E402
from likra.model.loading import load_base_model, load_tokenizer  # noqa: E402


def hf_generate(model, tokenizer, prompt_ids, new_tokens: int, batch_size: int) -> tuple[float, list[list[int]]]:
    """Seconds and generated ids of transformers' greedy `generate` with the positive adapter active."""
    lm, out = unwrap_lm(model), []
    start = time.perf_counter()
    with use_head(model, "positive"), torch.inference_mode():
        for i in range(0, len(prompt_ids), batch_size):
            ids, mask = left_pad(prompt_ids[i : i + batch_size], tokenizer.pad_token_id)
            gen = lm.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
            out += gen[:, ids.shape[1] :].tolist()
    return time.perf_counter() - start, out


def likra_generate(model, tokenizer, prompt_ids, mode: str, new_tokens: int, batch_size: int):
    settings = GenerationSettings(mode=mode, max_new_tokens=new_tokens, batch_size=batch_size)
    decoder = HeadDecoder(model, tokenizer, settings)
    decoder.eos = set()  # exactly new_tokens per prompt, as min_new_tokens does for transformers
    start = time.perf_counter()
    result = decoder.generate_ids(prompt_ids)
    return time.perf_counter() - start, [list(g.token_ids) for g in result]


def sft_equals_transformers(model, tokenizer, prompt_ids, new_tokens: int) -> bool:
    """Whether likra's mode sft (the positive head alone, end of text on) gives transformers' greedy tokens."""
    lm, eos = unwrap_lm(model), tokenizer.eos_token_id
    ours = HeadDecoder(model, tokenizer, GenerationSettings(mode="sft", max_new_tokens=new_tokens)).generate_ids(
        prompt_ids
    )
    with use_head(model, "positive"), torch.inference_mode():
        for ids, g in zip(prompt_ids, ours):
            out = lm.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=new_tokens, pad_token_id=eos)
            theirs = out[0, len(ids) :].tolist()
            if eos in theirs:
                theirs = theirs[: theirs.index(eos)]
            if list(g.token_ids) != theirs:
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="timings per side (the best is kept)")
    parser.add_argument("--json", help="save the figures here")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    model = checkpoint_like(attach_heads(load_base_model(args.model, "fp32"), LoraSettings())).eval()
    records = load_spec("arc_challenge:validation")[: args.prompts]
    prompt_ids = encode_prompts(tokenizer, [r.prompt for r in records])
    likra_generate(model, tokenizer, prompt_ids[:2], "likra", 4, 2)  # warm-up
    hf_generate(model, tokenizer, prompt_ids[:2], 4, 2)
    rows = []
    total = args.prompts * args.new_tokens
    for batch in args.batch_sizes:
        hf = min(hf_generate(model, tokenizer, prompt_ids, args.new_tokens, batch) for _ in range(args.repeats))
        two = min(
            likra_generate(model, tokenizer, prompt_ids, "likra", args.new_tokens, batch) for _ in range(args.repeats)
        )
        one = min(
            likra_generate(model, tokenizer, prompt_ids, "sft", args.new_tokens, batch) for _ in range(args.repeats)
        )
        row = {
            "batch_size": batch,
            "hf_one_adapter_tokens_per_s": total / hf[0],
            "likra_two_heads_tokens_per_s": total / two[0],
            "likra_sft_one_head_tokens_per_s": total / one[0],
            "ratio_two_heads_vs_hf": hf[0] / two[0],
            "ratio_one_head_vs_hf": hf[0] / one[0],
        }
        rows.append(row)
        print(
            f"batch {batch:3d}: transformers generate (1 adapter) {row['hf_one_adapter_tokens_per_s']:7.1f} tok/s | "
            f"likra 2 heads {row['likra_two_heads_tokens_per_s']:7.1f} tok/s = {row['ratio_two_heads_vs_hf']:.2f}x | "
            f"likra sft (1 head) {row['likra_sft_one_head_tokens_per_s']:7.1f} tok/s "
            f"= {row['ratio_one_head_vs_hf']:.2f}x"
        )
    equal = sft_equals_transformers(model, tokenizer, prompt_ids[:4], args.new_tokens)
    print(f"mode sft's greedy tokens equal transformers' generate with the positive adapter: {equal}")
    result = {
        "sft_tokens_equal_transformers": equal,
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": args.model,
        "prompts": args.prompts,
        "new_tokens": args.new_tokens,
        "rows": rows,
    }
    print(f"CPU: {result['cpu']} ({result['threads']} threads)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
