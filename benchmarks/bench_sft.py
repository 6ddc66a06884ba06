"""Training a head: likra against TRL's `SFTTrainer`, the tool a user would otherwise run.

Both train a LoRA head (likra's settings: r=8 on the MLP projections) from the same initialisation, on
the same tokenized examples (ARC questions with their gold answers: prompt tokens without loss, answer
tokens with loss), for one epoch with the same batch size, learning rate and seed. TRL gets the
prompt-completion layout (`completion_mask`, so `completion_only_loss` applies) in each setting its
documentation offers for speed on one device:

- `trl_padded`: batches padded to their longest example (TRL's default);
- `trl_grouped`: the same, batches grouped by length (the Trainer's `group_by_length` sampler);
- `trl_padding_free`: `padding_free=True`: each batch flattened into one row with restarted positions;
- `trl_packed`: `packing=True` (best-fit decreasing) with rows of `batch size x mean example length`
  tokens and one row per step, so a step still sees about `batch size` examples.

likra runs `likra train`'s defaults (`likra`), with `--packing` (`likra_packed`), and in bf16 autocast
(`likra_bf16`: fp32 weights, bf16 matmuls; worth it only on CPUs with AVX512-BF16/AMX or on GPUs). The script prints
examples/s of each (the `train()` call only; TRL's dataset preparation is timed apart) and the mean answer
loss of every trained head on the training examples, computed the same way for all (equal loss = the
same training), then the ratio of likra to the fastest TRL setting.

    python benchmarks/bench_sft.py --model smollm2-135m --examples 512 --json benchmarks/results-sft.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from bench_training import mean_loss
from common import cpu_bf16_flags, cpu_name

from likra.data.benchmarks import load_spec
from likra.data.examples import positive_pairs, tokenize_answers
from likra.model.heads import LoraSettings, attach_heads
from likra.model.loading import load_base_model, load_tokenizer
from likra.objectives.mle import train_mle_head
from likra.objectives.settings import TrainSettings
from likra.training.pipeline import select_questions

LIKRA = ("likra", "likra_packed", "likra_bf16")
TRL = ("trl_padded", "trl_grouped", "trl_padding_free", "trl_packed")


def trl_trainer(name: str, model, examples, batch_size: int, lr: float, seed: int, out: str):
    """An SFTTrainer for TRL setting `name` on already tokenized prompt-completion examples."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rows = [
        {"input_ids": e.input_ids, "completion_mask": [0] * len(e.prompt_ids) + [1] * len(e.answer_ids)}
        for e in examples
    ]
    mean_length = sum(len(e.input_ids) for e in examples) / len(examples)
    packed = name == "trl_packed"
    config = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=1 if packed else batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        num_train_epochs=1,
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        completion_only_loss=True,
        # Packing sets the row length; padding-free without packing refuses a max_length (no truncation).
        max_length=round(batch_size * mean_length) if packed else None if name == "trl_padding_free" else 1024,
        packing=packed,
        padding_free=name == "trl_padding_free",
        train_sampling_strategy="group_by_length" if name == "trl_grouped" else "random",
    )
    return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows))


def run_variant(name: str, model, examples, pad: int, batch_size: int, lr: float) -> dict:
    model.set_adapter(name)
    with tempfile.TemporaryDirectory() as tmp:
        if name in LIKRA:
            settings = TrainSettings(
                learning_rate=lr, batch_size=batch_size, logging_steps=1, packing=name == "likra_packed"
            )
            bf16 = name == "likra_bf16"
            stats = train_mle_head(model, name, examples, settings, Path(tmp), pad, bf16=bf16, progress=False)
            seconds, steps, prepare = stats.seconds, stats.steps, 0.0
        else:
            start = time.perf_counter()
            trainer = trl_trainer(name, model, examples, batch_size, lr, 0, tmp)
            prepare = time.perf_counter() - start
            start = time.perf_counter()
            trainer.train()
            seconds, steps = time.perf_counter() - start, trainer.state.global_step
    model.eval()
    return {
        "examples_per_s": len(examples) / seconds,
        "seconds": seconds,
        "prepare_seconds": prepare,
        "optimizer_steps": steps,
        "final_loss": mean_loss(model, name, examples, pad),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--data", default="arc-train")
    p.add_argument("--examples", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--variants", default=",".join(LIKRA + TRL))
    p.add_argument("--json")
    args = p.parse_args()
    names = [v for v in args.variants.split(",") if v]
    tokenizer = load_tokenizer(args.model)
    model = attach_heads(load_base_model(args.model), LoraSettings(), names=tuple(names))
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    init = get_peft_model_state_dict(model, adapter_name=names[0])
    for name in names[1:]:
        set_peft_model_state_dict(model, init, adapter_name=name)
    examples = tokenize_answers(tokenizer, positive_pairs(select_questions(load_spec(args.data), args.examples, 0)))
    pad = tokenizer.pad_token_id
    initial = mean_loss(model, names[0], examples, pad)
    print(
        f"{len(examples)} examples ({sum(len(e.input_ids) for e in examples)} tokens), batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads on {cpu_name()}; answer loss before training {initial:.4f}"
    )
    rows = {}
    for name in names:
        if name == "likra_bf16" and len(names) > 1:
            # accelerate keeps the first Trainer's mixed precision for the whole process (a bf16 Trainer
            # built after an fp32 one trains in fp32): bf16 runs in a process of its own.
            rows[name] = in_own_process(name, args)
        else:
            rows[name] = run_variant(name, model, examples, pad, args.batch_size, args.lr)
        r = rows[name]
        print(
            f"{name:<17} {r['examples_per_s']:7.2f} examples/s {r['seconds']:7.1f} s "
            f"({r['optimizer_steps']} steps, {r['prepare_seconds']:.1f} s preparing)  loss after {r['final_loss']:.4f}"
        )
    result = {
        "model": args.model,
        "examples": len(examples),
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_bf16_instructions": cpu_bf16_flags(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "versions": {"torch": torch.__version__, **_versions()},
        "initial_loss": initial,
        "rows": rows,
    }
    trl_rows = {k: v for k, v in rows.items() if k in TRL}
    if trl_rows and "likra" in rows:
        fastest = max(trl_rows, key=lambda k: trl_rows[k]["examples_per_s"])
        result["fastest_trl"] = fastest
        result["speedup_vs_fastest_trl"] = rows["likra"]["examples_per_s"] / trl_rows[fastest]["examples_per_s"]
        print(f"likra / fastest TRL setting ({fastest}): {result['speedup_vs_fastest_trl']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


def in_own_process(name: str, args: argparse.Namespace) -> dict:
    """Variant `name` measured by a fresh run of this script (same examples, same initialisation)."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, __file__, "--model", args.model, "--data", args.data, "--variants", name]
        command += ["--examples", str(args.examples), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
        subprocess.run([*command, "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())["rows"][name]


def _versions() -> dict:
    import peft
    import transformers
    import trl

    return {"transformers": transformers.__version__, "peft": peft.__version__, "trl": trl.__version__}


if __name__ == "__main__":
    main()
