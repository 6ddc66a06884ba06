"""likra against the tool a user would otherwise run: the stock lm-eval `hf` model, end to end.

Each side is one fresh process timed by wall clock (start-up, model loading and scoring included), on the same
questions (`likra_arc_challenge`: ARC-Challenge test, first N) and the same model (the embedded SmolLM2-135M,
fp32, CPU). Base mode: `likra eval --model smollm2-135m` vs `lm-eval run --model hf`. Likra mode (with --run):
`likra eval --run RUN --modes likra` vs the only stock way to get it: two harness runs, one per head
(`peft=<run>/adapters/positive` and `.../negative`) with `--log_samples`, combined afterwards (pos - neg per
choice, argmax). Also: the time `likra eval` spends before its first scoring batch (imports, model, data), and
the token positions each side runs through the model per head (their ratio bounds what scoring alone can gain).

    python benchmarks/bench_harness.py --questions 300 --shots 0 5 [--run runs/smol-256] --json results-harness.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

VENV_BIN = Path(sys.executable).parent
FIRST_BATCH = """
import sys, time
start = time.perf_counter()
from likra.scoring import engine
original = engine.ScoringEngine._score_batch
def timed(self, *a, **k):
    if not hasattr(engine, "_first"):
        engine._first = time.perf_counter() - start
        print(f"FIRST_BATCH {engine._first:.3f}", file=sys.stderr, flush=True)
    return original(self, *a, **k)
engine.ScoringEngine._score_batch = timed
from likra.cli import main
sys.exit(main(sys.argv[1:]))
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return seconds, out.stderr


def likra_eval(tmp: Path, n: int, shots: int, run: str | None) -> dict:
    out = tmp / f"likra-{shots}-{'run' if run else 'base'}.json"
    who = ["--run", run, "--modes", "sft,likra"] if run else ["--model", "smollm2-135m", "--modes", "base"]
    cmd = [sys.executable, "-c", FIRST_BATCH, "-q", "eval", *who, "--data", "arc_challenge:test"]
    seconds, err = timed(cmd + ["--limit", str(n), "--shots", str(shots), "--out", str(out)])
    first = float(next(line.split()[1] for line in err.splitlines() if line.startswith("FIRST_BATCH")))
    metrics = json.loads(out.read_text())["metrics"]
    return {"seconds": seconds, "first_batch_seconds": first, "metrics": metrics}


def stock_eval(tmp: Path, tasks: Path, model_dir: Path, n: int, shots: int, peft: str | None = None) -> dict:
    out = tmp / f"stock-{shots}-{Path(peft).name if peft else 'base'}"
    model_args = f"pretrained={model_dir},dtype=float32" + (f",peft={peft}" if peft else "")
    cmd = [str(VENV_BIN / "lm-eval"), "run", "--model", "hf", "--model_args", model_args, "--tasks",
           "likra_arc_challenge", "--include_path", str(tasks), "--limit", str(n), "--num_fewshot", str(shots),
           "--batch_size", "16", "--device", "cpu", "--output_path", str(out), "--log_samples"]  # fmt: skip
    seconds, _ = timed(cmd)
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]["likra_arc_challenge"]
    samples = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    return {"seconds": seconds, "acc": results["acc,none"], "acc_norm": results["acc_norm,none"], "samples": samples}


def positions(n: int, shots: int) -> dict:
    """Token positions each side runs through the model per head: the stock harness one sequence per
    (question, choice), context and continuation but its last token, in length-sorted padded batches of
    16 (as `--batch_size 16` does); likra the shared prefix once and each question's row (context once,
    choices without their last token). Their ratio bounds what scoring alone can gain at equal FLOP/s."""
    from likra.data.examples import encode_pair
    from likra.model.loading import load_tokenizer
    from likra.scoring.engine import tokenize_questions
    from likra.scoring.evaluate import EvalConfig, load_eval_data

    tokenizer = load_tokenizer("smollm2-135m")
    cfg = EvalConfig(model="smollm2-135m", data="arc_challenge:test", limit=n, shots=shots)
    data = load_eval_data(cfg, tokenizer, None)
    lengths = sorted(
        (
            sum(map(len, encode_pair(tokenizer, data.prefix + r.prompt, r.continuation(i)))) - 1
            for r in data.records
            for i in range(len(r.choices))
        ),
        reverse=True,
    )
    stock = sum(max(lengths[k : k + 16]) * len(lengths[k : k + 16]) for k in range(0, len(lengths), 16))
    prefix_ids, questions = tokenize_questions(tokenizer, data.records, data.prefix)
    ours = len(prefix_ids) + sum(q.row_length for q in questions)
    return {"stock": stock, "stock_unpadded": sum(lengths), "likra": ours, "ratio": stock / ours}


def combined_likra(pos: list[dict], neg: list[dict]) -> dict:
    """Likra mode from two stock runs' logged samples: pos - neg per choice, argmax (and per character)."""
    by_doc = {s["doc_id"]: s for s in neg}
    acc, acc_norm = [], []
    for s in pos:
        n = by_doc[s["doc_id"]]
        # the harness writes each response as strings: [["-12.3", "False"], ...]
        score = np.array([float(r[0]) for r in s["filtered_resps"]]) - np.array(
            [float(r[0]) for r in n["filtered_resps"]]
        )
        lengths = np.array([len(c) for c in s["doc"]["choices"]], dtype=float)  # the harness's acc_norm lengths
        gold = int(s["target"])  # also written as a string
        acc.append(float(np.argmax(score) == gold))
        acc_norm.append(float(np.argmax(score / lengths) == gold))
    return {"acc": float(np.mean(acc)), "acc_norm": float(np.mean(acc_norm))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--run", help="a likra run folder: also compare Likra mode with two stock peft runs")
    parser.add_argument("--json")
    args = parser.parse_args()

    from likra.lmeval.tasks import export_task
    from likra.model.loading import embedded_model_dir

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), "?")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tasks = tmp / "tasks"
        export_task("arc_challenge", folder=tasks)
        model_dir = embedded_model_dir()
        for shots in args.shots:
            ours = likra_eval(tmp, args.questions, shots, None)
            stock = stock_eval(tmp, tasks, model_dir, args.questions, shots)
            row = {
                **machine(),
                "what": "base",
                "shots": shots,
                "likra_seconds": ours["seconds"],
                "likra_first_batch_seconds": ours["first_batch_seconds"],
                "stock_seconds": stock["seconds"],
                "speedup": stock["seconds"] / ours["seconds"],
                "likra": {m: ours["metrics"]["base"][m]["value"] for m in ("acc", "acc_norm")},
                "stock": {"acc": stock["acc"], "acc_norm": stock["acc_norm"]},
                "positions_per_head": positions(args.questions, shots),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.run:
                ours = likra_eval(tmp, args.questions, shots, args.run)
                runs = [stock_eval(tmp, tasks, model_dir, args.questions, shots, f"{args.run}/adapters/{h}")
                        for h in ("positive", "negative")]  # fmt: skip
                row = {
                    **machine(),
                    "what": "likra mode (stock: two peft runs combined)",
                    "shots": shots,
                    "likra_seconds": ours["seconds"],
                    "likra_first_batch_seconds": ours["first_batch_seconds"],
                    "stock_seconds": runs[0]["seconds"] + runs[1]["seconds"],
                    "speedup": (runs[0]["seconds"] + runs[1]["seconds"]) / ours["seconds"],
                    "likra": {m: ours["metrics"]["likra"][m]["value"] for m in ("acc", "acc_norm")},
                    "stock": combined_likra(runs[0]["samples"], runs[1]["samples"]),
                    "stock_sft": {"acc": runs[0]["acc"], "acc_norm": runs[0]["acc_norm"]},
                    "likra_sft": {m: ours["metrics"]["sft"][m]["value"] for m in ("acc", "acc_norm")},
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    result = {"cpu": cpu, "questions": args.questions, "model": "smollm2-135m (fp32, CPU)", "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
