"""Reading an lm-eval task as likra data against the harness's own request building, on 10,000 questions.

    .venv/bin/python benchmarks/bench_lmeval_data.py --json benchmarks/results-lmeval-data.json

A task YAML over a local JSONL file of `--questions` four-choice questions (written here) is read two ways, each in
a fresh process with a fresh datasets cache, alternating, `--repeats` times: likra's `lmeval_records` (the
TaskManager over the task's folder, the task, every question rendered with `--shots` shots from the task's
sampler) and the harness's `build_all_requests` for the same task (the same TaskManager and task, then every
request of every document). Prints and saves the median seconds of each and their ratio likra / harness (issue
#34's target: at most 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

TASK = """task: bench_mc
dataset_path: json
dataset_kwargs:
  data_files:
    train: {train}
    test: {test}
output_type: multiple_choice
training_split: train
test_split: test
fewshot_split: train
description: "Answer the question.\\n\\n"
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{options}}}}"
doc_to_target: label
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""

LIKRA = """
import sys, time
started = time.perf_counter()
from likra.data.lmeval_tasks import lmeval_records, use_include_paths
use_include_paths([sys.argv[1]])
records = lmeval_records("lmeval:bench_mc", shots=int(sys.argv[2]))
print(time.perf_counter() - started, len(records))
"""

HARNESS = """
import sys, time
started = time.perf_counter()
from lm_eval.tasks import TaskManager, get_task_dict
task = get_task_dict(["bench_mc"], TaskManager(include_path=sys.argv[1], include_defaults=False))["bench_mc"]
task.set_config(key="num_fewshot", value=int(sys.argv[2]))
task.set_fewshot_seed(1234)
task.build_all_requests(limit=None, rank=0, world_size=1)
print(time.perf_counter() - started, len(task.instances) // 4)
"""


def write_task(folder: Path, questions: int) -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    for split, n in (("train", 200), ("test", questions)):
        with open(folder / f"{split}.jsonl", "w") as f:
            for i in range(n):
                question = " ".join(words[(i * k) % len(words)] for k in range(1, 9)) + f" {i}?"
                options = [f"{w} {i % 97}" for w in words[i % 5 : i % 5 + 4]]
                f.write(json.dumps({"question": question, "options": options, "label": i % 4}) + "\n")
    (folder / "bench_mc.yaml").write_text(TASK.format(train=folder / "train.jsonl", test=folder / "test.jsonl"))


def timed(script: str, folder: Path, shots: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as cache:
        env = {"HF_DATASETS_CACHE": cache, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", script, str(folder), str(shots)], env=env, check=True,
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[-2]), int(out[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="save the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_task(folder, args.questions)
        likra, harness = [], []
        for _ in range(args.repeats):
            seconds, n = timed(LIKRA, folder, args.shots)
            assert n == args.questions, n
            likra.append(seconds)
            seconds, n = timed(HARNESS, folder, args.shots)
            assert n == args.questions, n
            harness.append(seconds)
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "questions": args.questions,
        "shots": args.shots,
        "likra_seconds": likra,
        "harness_seconds": harness,
        "likra_median": statistics.median(likra),
        "harness_median": statistics.median(harness),
    }
    result["ratio"] = result["likra_median"] / result["harness_median"]
    print(
        f"{args.questions} questions, {args.shots} shots: likra lmeval_records {result['likra_median']:.2f} s, "
        f"harness build_all_requests {result['harness_median']:.2f} s (medians of {args.repeats}); "
        f"likra / harness = {result['ratio']:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
