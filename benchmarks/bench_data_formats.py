"""The README's figures for preference pairs and the letter format, on the embedded model.

    python benchmarks/bench_data_formats.py --json benchmarks/results-data-formats.json

Runs, in `--work` (default runs/), each step whose output is not there yet:
1. `benchmarks/make_arc_prefs.py`: ARC as conversational preference pairs (gold chosen, near-miss rejected);
2. `likra train --model smollm2-135m --data <work>/arc-prefs/train.jsonl --limit 512` (SmolLM2's chat template
   renders the conversations);
3. `likra eval` of that run on the 299 held-out ARC-Challenge validation pairs, modes base/sft/likra/negbase/pos_base;
4. `likra eval --model smollm2-135m --data mmlu:test --limit 1000` (0-shot, lm-eval's default for mmlu) in
   `--format cloze` and `--format letter` (and letter with `--chat-template`);
then writes the pairwise accuracies and the MMLU figures (with intervals) to `--json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_objectives import cpu_name  # noqa: E402

LIKRA = [sys.executable, "-m", "likra", "-q"]


def step(name: str, output: Path, command: list[str], timings: dict) -> None:
    if output.exists():
        print(f"{name}: {output} exists, kept")
        return
    print(f"{name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    timings[name] = round(time.perf_counter() - start, 1)


def mmlu_paired(meas: Path, names: list[str]) -> dict:
    """Each format's predicted-letter counts, and every format minus cloze on the same questions (acc, paired
    bootstrap 95% interval, McNemar p)."""
    from collections import Counter

    import numpy as np

    from likra.data.benchmarks import load_spec
    from likra.scoring.stats import credits, paired_difference

    results = {n: json.loads((meas / f"mmlu-{n.replace('_', '-')}.json").read_text()) for n in names}
    by_id = {r.id: r.gold for r in load_spec("mmlu:test", source="offline")}
    golds = [by_id[i] for i in results["cloze"]["question_ids"]]
    assert all(r["question_ids"] == results["cloze"]["question_ids"] for r in results.values())
    out = {}
    for name, result in results.items():
        scores = [np.array(x) for x in result["loglikelihoods"]["base"]]
        out[f"{name}_predicted"] = dict(Counter("ABCD"[int(np.argmax(s))] for s in scores))
    cloze = credits([np.array(x) for x in results["cloze"]["loglikelihoods"]["base"]], golds)
    out["gold_letters"] = dict(Counter("ABCD"[g] for g in golds))
    for name in names[1:]:
        other = credits([np.array(x) for x in results[name]["loglikelihoods"]["base"]], golds)
        out[f"{name}_minus_cloze_acc"] = paired_difference(other, cloze).to_json()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs")
    parser.add_argument("--limit", type=int, default=512, help="training pairs")
    parser.add_argument("--mmlu-limit", type=int, default=1000)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    work = Path(args.work)
    prefs, run, meas = work / "arc-prefs", work / f"arc-prefs-{args.limit}", work / "meas"
    meas.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    if args.json and Path(args.json).is_file():  # keep the times of steps an earlier call ran
        timings.update(json.loads(Path(args.json).read_text()).get("wall_seconds_of_steps_run", {}))
    step(
        "make_arc_prefs",
        prefs / "eval.jsonl",
        [sys.executable, str(HERE / "make_arc_prefs.py"), "--out", str(prefs)],
        timings,
    )
    train = [
        *LIKRA,
        "train",
        "--model",
        "smollm2-135m",
        "--data",
        str(prefs / "train.jsonl"),
        "--limit",
        str(args.limit),
    ]
    step("train", run / "likra.json", [*train, "--out", str(run)], timings)
    pref_eval = meas / "arc-prefs-eval.json"
    modes = "base,sft,likra,negbase,pos_base"
    evaluate = [*LIKRA, "eval", "--run", str(run), "--data", str(prefs / "eval.jsonl"), "--modes", modes]
    step("eval_prefs", pref_eval, [*evaluate, "--out", str(pref_eval)], timings)
    mmlu = [*LIKRA, "eval", "--model", "smollm2-135m", "--data", "mmlu:test", "--limit", str(args.mmlu_limit)]
    variants = {"cloze": ["--format", "cloze"], "letter": ["--format", "letter"],
                "letter_chat": ["--format", "letter", "--chat-template"]}  # fmt: skip
    for name, flags in variants.items():
        out = meas / f"mmlu-{name.replace('_', '-')}.json"
        step(f"mmlu_{name}", out, [*mmlu, *flags, "--out", str(out)], timings)

    pref = json.loads(pref_eval.read_text())
    manifest = json.loads((run / "likra.json").read_text())
    figures = {
        "cpu": cpu_name(),
        "wall_seconds_of_steps_run": timings,
        "preferences": {
            "train": {
                "data": str(prefs / "train.jsonl"),
                "pairs": manifest["data"]["questions"],
                "chat_template_of": "smollm2-135m (conversational pairs)",
                "head_seconds": {h: round(s["seconds"], 1) for h, s in manifest["stats"].items()},
            },
            "eval": {"data": str(prefs / "eval.jsonl"), "pairs": pref["n_questions"], **pref["data"]},
            "pairwise_accuracy": pref["preferences"]["accuracy"],
            "paired": pref["statistics"]["paired"],
            "baselines": pref["statistics"]["baselines"],
        },
        "mmlu": {
            "data": f"mmlu:test, first {args.mmlu_limit} questions, 0-shot",
            **{
                name: json.loads((meas / f"mmlu-{name.replace('_', '-')}.json").read_text())["metrics"]["base"]
                for name in variants
            },
        },
    }
    figures["mmlu"]["paired"] = mmlu_paired(meas, list(variants))
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
