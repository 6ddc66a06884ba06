"""The GPU check: likra's whole pipeline on a GPU, measured against the chip and against the stack users know.

One prepared script, about 8 minutes on one H100/H200 (random weights of real shapes, `--model random:<shape>`:
nothing to download), writing each section's JSON to `--out` as soon as it finishes, so a cut run still reports:

- `correctness`: the engine against the straightforward scorer in fp32 (max |diff| <= 1e-3) and in bf16 (the
  argmax decisions of every mode agree on >= 99% of questions); likra's trainer against the HF Trainer's defaults
  on the same batches (mean answer loss after training within 1%);
- `speed`: scoring questions/s per shape and shots, with useful FLOP/s against an 8192^3 bf16 matmul measured in
  the same run (MFU), and the straightforward scorer's rate on a subset;
- `training`: examples/s of one head, likra (packing decided by likra, forced on, forced off) against the HF
  Trainer's defaults and TRL's SFTTrainer (padding-free), and MFU (4 x parameters x tokens: a frozen base
  computes no weight gradients);
- `curve`: `likra curve` end to end as a user runs it (a fresh process), the default settings on
  `random:smollm2-135m` (the embedded model's shape) and `random:llama-3.2-1b`, wall time per phase;
- `paper`: the paper's Mistral-7B curve (2 heads x 6615 examples, 10 checkpoints x 1172 questions x 2 heads + base,
  5 shots) projected from the rates measured at the 7B shape;
- `profile`: where a training step and a scoring batch spend their time (torch.profiler, top operators).

    python benchmarks/gpu_check.py --out benchmarks/gpu-check            # on the GPU
    python benchmarks/gpu_check.py --toy --out /tmp/gpu-check           # on any CPU, toy sizes (a test runs this)
    python benchmarks/gpu_check.py --sections speed,training --out ...   # some sections only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import body_and_head_params, matmul_peak_gflops, sync  # noqa: E402

from likra.data.examples import Example  # noqa: E402
from likra.model.heads import LoraSettings, attach_heads, use_head  # noqa: E402
from likra.model.loading import load_base_model  # noqa: E402
from likra.model.shapes import get_shape  # noqa: E402
from likra.objectives.losses import answer_token_loss  # noqa: E402
from likra.objectives.mle import PadCollator, train_mle_head  # noqa: E402
from likra.objectives.settings import TrainSettings  # noqa: E402
from likra.scoring.engine import QuestionTokens, ScoringEngine  # noqa: E402
from likra.scoring.modes import get_mode, heads_for  # noqa: E402
from likra.scoring.reference import reference_loglikelihoods  # noqa: E402

SECTIONS = ("correctness", "speed", "training", "curve", "paper", "profile")
DEFAULT_ORDER = ("profile", "speed", "training", "correctness", "curve", "paper")
MODES = ("base", "sft", "likra", "negbase")
PAPER = {"examples": 6615, "checkpoints": 10, "questions": 1172, "shots": 5}

# What each section runs: the GPU sizes, and toy sizes that run the same code on any CPU in seconds.
SIZES = {
    "gpu": {
        "dtype": "bf16",
        "correctness_shape": "llama-3.2-1b",
        "correctness_questions": 128,
        "trainer_shape": "smollm2-135m",
        "trainer_examples": 512,
        "speed": [("smollm2-135m", 256), ("llama-3.2-1b", 256), ("llama-3.2-3b", 128), ("mistral-7b", 128)],
        "reference_questions": 32,
        "training": [("smollm2-135m", 512), ("llama-3.2-1b", 512), ("mistral-7b", 128)],
        "trl": True,
        "curves": [("smollm2-135m", []), ("llama-3.2-1b", [])],
        "matmul": 8192,
        "profile_shape": "llama-3.2-1b",
    },
    "toy": {
        "dtype": "fp32",
        "correctness_shape": "tiny",
        "correctness_questions": 8,
        "trainer_shape": "tiny",
        "trainer_examples": 16,
        "speed": [("tiny", 8)],
        "reference_questions": 4,
        "training": [("tiny", 16), ("tiny-mistral", 8)],
        "trl": False,
        "curves": [("tiny", ["--limit", "16", "--eval-limit", "4", "--batch-size", "8"])],
        "matmul": 256,
        "profile_shape": "tiny",
    },
}


# -- inputs ---------------------------------------------------------------------------------------------------
def synthetic_questions(n: int, vocab: int, seed: int = 0) -> list[QuestionTokens]:
    """ARC-like questions of random tokens: a 25-110 token context, 4 choices of 3-20 tokens."""
    rng = random.Random(seed)

    def tokens(k: int) -> tuple[int, ...]:
        return tuple(rng.randrange(min(100, vocab // 4), vocab - 1) for _ in range(k))

    return [
        QuestionTokens(tokens(rng.randint(25, 110)), tuple(tokens(rng.randint(3, 20)) for _ in range(4)))
        for _ in range(n)
    ]


def fewshot_prefix(vocab: int, shots: int) -> tuple[int, ...]:
    """A shared few-shot prefix of about 90 tokens a shot."""
    return tuple(t for q in synthetic_questions(shots, vocab, seed=1) for t in q.context_ids + q.choice_ids[0])


def synthetic_examples(n: int, vocab: int) -> list[Example]:
    rng = random.Random(2)
    return [
        Example(f"e{i}", q.context_ids, q.choice_ids[rng.randrange(4)])
        for i, q in enumerate(synthetic_questions(n, vocab, seed=2))
    ]


def random_heads(shape: str, dtype: str, device, names=("positive", "negative")):
    """`random:<shape>` with LoRA heads whose B is non-zero (as after training), so every head differs."""
    model = attach_heads(load_base_model(f"random:{shape}", dtype, device), LoraSettings(), names=names)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_((torch.randn(p.shape, generator=generator) * 0.01).to(p.dtype))
    return model.eval()


def free(*objects) -> None:
    del objects
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- measurements ---------------------------------------------------------------------------------------------
def matmul_peak(device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """Best-of-`repeats` TFLOP/s of a size^3 matmul (the peak MFU is measured against)."""
    return matmul_peak_gflops(dtype, device, size=size, repeats=repeats, warmup=3) / 1e3


def useful_flops(model, questions, prefix_ids) -> float:
    """2 x parameters x tokens actually needed per head: prefix once, contexts once, answers once, the output
    projection only at answer tokens."""
    body, head = body_and_head_params(model)
    tokens = len(prefix_ids) + sum(q.row_length for q in questions)
    answers = sum(len(c) for q in questions for c in q.choice_ids)
    return 2.0 * body * tokens + 2.0 * head * answers


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def reference_all(model, questions, heads) -> dict:
    return {h: reference_loglikelihoods(model, questions, h, batch_size=8) for h in heads}


def score_rate(model, questions, prefix_ids, device, heads) -> tuple[float, float, dict]:
    """(questions/s, seconds, scores) of the engine over `heads`, after a warm-up batch."""
    engine = ScoringEngine(model)
    engine.loglikelihoods(questions[:8], heads, prefix_ids)
    scores, seconds = timed(lambda: engine.loglikelihoods(questions, heads, prefix_ids), device)
    return len(questions) / seconds, seconds, scores


def mean_loss(model, head, examples, batch=32) -> float:
    total, count = 0.0, 0
    collate = PadCollator(0, layout=False)
    with use_head(model, head), torch.no_grad():
        for i in range(0, len(examples), batch):
            chunk = examples[i : i + batch]
            n = sum(len(e.answer_ids) for e in chunk)
            batch_inputs = collate([{"input_ids": e.input_ids, "labels": e.labels} for e in chunk])
            batch_inputs = {k: v.to(next(model.parameters()).device) for k, v in batch_inputs.items()}
            total += answer_token_loss(model, batch_inputs).item() * n
            count += n
    return total / count


def train_rate(model, head, examples, settings, bf16: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        stats = train_mle_head(model, head, examples, settings, Path(tmp), 0, bf16=bf16, progress=False)
    tokens = sum(len(e.input_ids) for e in examples)
    return {"examples_per_s": stats.examples_per_second, "seconds": stats.seconds, "tokens": tokens}


def trl_rate(model, head, examples, batch_size: int, lr: float) -> dict:
    """TRL's SFTTrainer with padding_free=True on the same examples (prompt-completion, completion-only loss)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model.set_adapter(head)
    rows = [
        {"input_ids": e.input_ids, "completion_mask": [0] * len(e.prompt_ids) + [1] * len(e.answer_ids)}
        for e in examples
    ]
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            per_device_train_batch_size=batch_size,
            learning_rate=lr,
            lr_scheduler_type="constant",
            num_train_epochs=1,
            seed=0,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            completion_only_loss=True,
            padding_free=True,
            max_length=None,
            bf16=torch.cuda.is_available(),
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    model.eval()
    return {"examples_per_s": len(examples) / seconds, "seconds": seconds}


# -- sections -------------------------------------------------------------------------------------------------
def correctness(size: dict, device) -> dict:
    shape, n = size["correctness_shape"], size["correctness_questions"]
    vocab = get_shape(shape).vocab_size
    questions = synthetic_questions(n, vocab)
    heads = heads_for(MODES)
    out: dict = {"shape": shape, "questions": n}
    model = random_heads(shape, "fp32", device)
    fast = ScoringEngine(model).loglikelihoods(questions, heads)
    slow = {h: reference_loglikelihoods(model, questions, h, batch_size=16) for h in heads}
    diff = max(float(np.abs(a - b).max()) for h in heads for a, b in zip(fast[h], slow[h]))
    out["fp32"] = {"max_abs_diff": diff, "passes": diff <= 1e-3}
    free(model)
    model = random_heads(shape, "bf16", device)
    bf16 = ScoringEngine(model).loglikelihoods(questions, heads)
    bf16_reference = {h: reference_loglikelihoods(model, questions, h, batch_size=16) for h in heads}
    free(model)

    def pick(m, scores: dict, i: int) -> int:
        return int(np.argmax(m.score({h: scores[h][i] for h in m.heads})))

    def agreement(a: dict, b: dict) -> dict:
        rates = {}
        for mode in MODES:
            m = get_mode(mode)
            same = [pick(m, a, i) == pick(m, b, i) for i in range(n)]
            rates[mode] = float(np.mean(same))
        return rates

    vs_reference, vs_fp32 = agreement(bf16, bf16_reference), agreement(bf16, slow)
    out["bf16"] = {
        "argmax_agreement_vs_bf16_reference": vs_reference,
        "argmax_agreement_vs_fp32": vs_fp32,
        "max_abs_diff_vs_fp32": max(float(np.abs(a - b).max()) for h in heads for a, b in zip(bf16[h], slow[h])),
        "passes": min(vs_reference.values()) >= 0.99,
    }
    # likra's trainer against the HF Trainer's defaults: the same batches (random order), then likra's defaults.
    shape = size["trainer_shape"]
    examples = synthetic_examples(size["trainer_examples"], get_shape(shape).vocab_size)
    names = ("hf_default", "likra_same_order", "likra")
    model = attach_heads(load_base_model(f"random:{shape}", size["dtype"], device), LoraSettings(), names=names)
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    for name in names[1:]:
        set_peft_model_state_dict(model, get_peft_model_state_dict(model, adapter_name=names[0]), adapter_name=name)
    bf16_training = size["dtype"] == "bf16" and device.type == "cuda"
    variants = {
        "hf_default": TrainSettings(learning_rate=1e-3, group_by_length=False, answer_only_logits=False, packing=False),
        "likra_same_order": TrainSettings(learning_rate=1e-3, group_by_length=False, packing=False),
        "likra": TrainSettings(learning_rate=1e-3),
    }
    losses = {"before": mean_loss(model, "base", examples)}
    for name, settings in variants.items():
        train_rate(model, name, examples, settings, bf16_training)
        losses[name] = mean_loss(model, name, examples)
    relative = abs(losses["likra_same_order"] - losses["hf_default"]) / losses["hf_default"]
    out["trainer"] = {
        "shape": shape,
        "examples": len(examples),
        "losses": losses,
        "same_order_relative_diff": relative,
        "passes": relative <= 0.01,
    }
    free(model)
    return out


def speed(size: dict, device, peak: float) -> dict:
    rows = []
    for shape, n in size["speed"]:
        vocab = get_shape(shape).vocab_size
        questions = synthetic_questions(n, vocab)
        model = random_heads(shape, size["dtype"], device)
        heads = heads_for(MODES)
        for shots in (0, 5):
            prefix = fewshot_prefix(vocab, shots) if shots else ()
            rate, seconds, _ = score_rate(model, questions, prefix, device, heads)
            flops = useful_flops(model, questions, prefix) * len(heads)
            row = {
                "shape": shape,
                "shots": shots,
                "questions": n,
                "heads": len(heads),
                "questions_per_s": rate,
                "seconds": seconds,
                "useful_tflops": flops / seconds / 1e12,
                "mfu": flops / seconds / 1e12 / peak,
            }
            if shots == 0 and size["reference_questions"] and shape in ("smollm2-135m", "llama-3.2-1b", "tiny"):
                subset = questions[: size["reference_questions"]]
                _, ref_seconds = timed(partial(reference_all, model, subset, heads), device)
                row["reference_questions_per_s"] = len(subset) / ref_seconds
                row["engine_vs_reference"] = rate / row["reference_questions_per_s"]
            rows.append(row)
            print(f"speed {shape} {shots}-shot: {rate:.1f} q/s, MFU {row['mfu']:.1%}", flush=True)
        free(model)
    return {"rows": rows}


def training(size: dict, device, peak: float) -> dict:
    rows = []
    bf16 = size["dtype"] == "bf16" and device.type == "cuda"
    for shape, n in size["training"]:
        spec = get_shape(shape)
        examples = synthetic_examples(n, spec.vocab_size)
        small = spec.parameters() < 5e9
        variants = (
            {
                "hf_default": TrainSettings(
                    learning_rate=1e-4, group_by_length=False, answer_only_logits=False, packing=False
                )
            }
            if small
            else {}
        )
        variants["likra"] = TrainSettings(learning_rate=1e-4)
        if small:
            variants["likra_packing_off"] = TrainSettings(learning_rate=1e-4, packing=False)
            variants["likra_packing_on"] = TrainSettings(learning_rate=1e-4, packing=True)
        names = tuple(variants) + (("trl_padding_free",) if size["trl"] and small else ())
        model = attach_heads(load_base_model(f"random:{shape}", size["dtype"], device), LoraSettings(), names=names)
        body, head = body_and_head_params(model)
        row: dict = {"shape": shape, "examples": n}
        for name, settings in variants.items():
            result = train_rate(model, name, examples, settings, bf16)
            result["mfu"] = 4 * (body + head) * result["tokens"] / result["seconds"] / 1e12 / peak
            row[name] = result
            print(f"training {shape} {name}: {result['examples_per_s']:.1f} examples/s", flush=True)
        if "trl_padding_free" in names:
            try:
                row["trl_padding_free"] = trl_rate(model, "trl_padding_free", examples, 16, 1e-4)
            except ImportError as e:
                row["trl_padding_free"] = f"not run: {e}"
        if "hf_default" in row:
            row["likra_vs_hf_default"] = row["likra"]["examples_per_s"] / row["hf_default"]["examples_per_s"]
        if isinstance(row.get("trl_padding_free"), dict):
            row["likra_vs_trl_padding_free"] = (
                row["likra"]["examples_per_s"] / row["trl_padding_free"]["examples_per_s"]
            )
        rows.append(row)
        free(model)
    return {"rows": rows, "mfu_flops": "4 x parameters x tokens (forward and activation gradients; frozen base)"}


def curve(size: dict, work: Path) -> dict:
    """`likra curve` with its defaults in a fresh process, per shape: wall time and phases."""
    rows = []
    for shape, extra in size["curves"]:
        folder = work / f"curve-{shape}"
        command = [
            sys.executable,
            "-m",
            "likra",
            "-q",
            "curve",
            "--model",
            f"random:{shape}",
            "--out",
            str(folder),
            *extra,
        ]
        start = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        row = {"shape": shape, "command": " ".join(command[2:]), "wall_seconds": wall, "exit": proc.returncode}
        if proc.returncode != 0:
            row["stderr"] = proc.stderr[-2000:]
        else:
            result = json.loads((folder / "curve.json").read_text())
            row["timing"] = result.get("timing")
            row["rows"] = len(result["rows"])
        rows.append(row)
        print(f"curve {shape}: {wall:.1f} s wall (exit {proc.returncode})", flush=True)
    return {"rows": rows}


def paper(results: dict) -> dict:
    """The paper's 7B curve projected from the 7B shape's measured rates (5 shots, one seed)."""
    speed_rows = [r for r in results.get("speed", {}).get("rows", []) if r["shape"] == "mistral-7b"]
    train_rows = [r for r in results.get("training", {}).get("rows", []) if r["shape"] == "mistral-7b"]
    if not speed_rows or not train_rows:
        return {"skipped": "needs the mistral-7b rows of the speed and training sections"}
    scoring = next(r for r in speed_rows if r["shots"] == PAPER["shots"])
    per_head_q_per_s = scoring["questions_per_s"] * scoring["heads"]
    passes = PAPER["checkpoints"] * 2 + 1
    train_s = 2 * PAPER["examples"] / train_rows[0]["likra"]["examples_per_s"]
    score_s = passes * PAPER["questions"] / per_head_q_per_s
    return {
        "train_seconds": train_s,
        "scoring_seconds": score_s,
        "total_minutes": (train_s + score_s) / 60,
        "assumes": PAPER,
    }


def profile(size: dict, device) -> dict:
    """Top operators of three training steps and one scoring pass (self time on the device, or on the CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    shape = size["profile_shape"]
    spec = get_shape(shape)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    out = {"shape": shape}
    model = random_heads(shape, size["dtype"], device)
    questions = synthetic_questions(64, spec.vocab_size)
    engine = ScoringEngine(model)
    engine.loglikelihoods(questions[:8], ("positive",))
    with torch_profile(activities=activities) as prof:
        engine.loglikelihoods(questions, ("positive",))
        sync(device)
    out["scoring"] = prof.key_averages().table(sort_by=key, row_limit=25)
    examples = synthetic_examples(48, spec.vocab_size)
    bf16 = size["dtype"] == "bf16" and device.type == "cuda"
    with torch_profile(activities=activities) as prof:
        train_rate(model, "positive", examples, TrainSettings(learning_rate=1e-4, batch_size=16), bf16)
    out["training"] = prof.key_averages().table(sort_by=key, row_limit=25)
    out["training_cpu"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    free(model)
    return out


# -- driver ---------------------------------------------------------------------------------------------------
def environment(device) -> dict:
    import transformers

    info = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cpu":
        from common import cpu_bf16_flags, cpu_name

        info.update(cpu=cpu_name(), cpu_bf16_flags=cpu_bf16_flags(), threads=torch.get_num_threads())
    return info


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for each section's JSON (written as it finishes)")
    p.add_argument("--toy", action="store_true", help="toy sizes in fp32 (any CPU, seconds): the suite runs this")
    p.add_argument("--sections", default=",".join(DEFAULT_ORDER), help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--work", help="folder for the curves' folders (default: a temporary one)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    size = SIZES["toy" if args.toy else "gpu"]
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    began = time.perf_counter()
    results: dict = {"environment": environment(device)}
    peak_dtype = torch.bfloat16 if size["dtype"] == "bf16" else torch.float32
    results["peak_tflops"] = peak = matmul_peak(device, peak_dtype, size["matmul"])
    print(
        f"{results['environment']['device']}: {size['matmul']}^3 {size['dtype']} matmul {peak:.1f} TFLOP/s", flush=True
    )

    def save(name: str, value) -> None:
        results[name] = value
        (out / f"{name}.json").write_text(
            json.dumps(
                {**value, "seconds_since_start": time.perf_counter() - began} if isinstance(value, dict) else value,
                indent=2,
            )
        )

    save("environment", {**results["environment"], "peak_tflops": peak, "matmul_size": size["matmul"]})
    for name in sections:
        start = time.perf_counter()
        try:
            if name == "correctness":
                value = correctness(size, device)
            elif name == "speed":
                value = speed(size, device, peak)
            elif name == "training":
                value = training(size, device, peak)
            elif name == "curve":
                value = curve(size, Path(args.work or tempfile.mkdtemp(prefix="likra-gpu-check-")))
            elif name == "paper":
                value = paper(results)
            else:
                value = profile(size, device)
        except Exception as e:  # a section that fails must not lose the others' results
            import traceback

            value = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        value["section_seconds"] = time.perf_counter() - start
        save(name, value)
        print(
            f"== {name}: {value['section_seconds']:.0f} s" + (f" ERROR {value['error']}" if "error" in value else ""),
            flush=True,
        )
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
