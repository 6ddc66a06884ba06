"""Preference pairs built offline from the bundled ARC data, in TRL's conversational format.

    python benchmarks/make_arc_prefs.py --out runs/arc-prefs

writes `train.jsonl` (from `arc-train`: ARC-Easy all splits + ARC-Challenge train) and `eval.jsonl` (ARC-Challenge
validation, never trained on): one row per question,

    {"id": ..., "prompt": [{"role": "user", "content": <question>}],
     "chosen": [{"role": "assistant", "content": <gold answer>}],
     "rejected": [{"role": "assistant", "content": <near-miss>}]}

the near-miss being one incorrect choice of the same question, drawn with likra's seeded near-miss sampler
(`likra.data.negatives.near_miss`, seed 0). `likra train/eval --data <file> --model smollm2-135m` renders the
conversations with SmolLM2's chat template.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from likra.data.benchmarks import load_spec
from likra.data.formats import question_stem
from likra.data.negatives import near_miss


def pairs(spec: str, seed: int) -> list[dict]:
    records = load_spec(spec, source="offline")
    return [
        {
            "id": rec.id,
            "prompt": [{"role": "user", "content": question_stem(rec.prompt)}],
            "chosen": [{"role": "assistant", "content": rec.choices[rec.gold]}],
            "rejected": [{"role": "assistant", "content": wrong}],
        }
        for rec, wrong in near_miss(records, seed)
    ]


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/arc-prefs")
    parser.add_argument("--train", default="arc-train")
    parser.add_argument("--eval", default="arc_challenge:validation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.jsonl", pairs(args.train, args.seed))
    write(out / "eval.jsonl", pairs(args.eval, args.seed))


if __name__ == "__main__":
    main()
