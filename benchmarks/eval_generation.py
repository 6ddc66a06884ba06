"""What the modes do to free text: each mode generates the answer to multiple-choice questions (the choices are
not shown), and a hit is counted when the normalised generation equals the gold choice's text; a "wrong hit" when
it equals one of the question's incorrect choices (the near-misses a negative head was trained on).

Normalisation (SQuAD's): the first line of the generation, lower case, punctuation and the articles a/an/the
removed, whitespace folded. Prompts are those of `likra eval` (same `Question: ...\\nAnswer:` format and the same
seeded few-shot examples, `fewshot_records`); generation stops at a blank line, at "Question:" or after
`--new-tokens` tokens, greedy, plausibility alpha 0.1. A looser reading is reported beside it: the gold
choice (or a wrong one) appears as whole words in the normalised first line, and no other choice does.

    python benchmarks/eval_generation.py --run runs/smol-512 --limit 100 --json benchmarks/results-eval-generation.json
"""

from __future__ import annotations

import argparse
import json
import re
import string
import time
from pathlib import Path

from likra.data.benchmarks import load_spec
from likra.data.examples import fewshot_prefix
from likra.data.formats import fewshot_records
from likra.generation import GenerationSettings, HeadDecoder
from likra.runs import load_run_model

DATASETS = {
    # spec: few-shot pool (SciQ's bundled data has only its validation split; shots never include evaluated ids)
    "arc_challenge:test": None,
    "sciq:validation": "sciq:validation",
}
ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """First non-blank line, lower case, no punctuation, no articles, single spaces."""
    line = next((x for x in text.split("\n") if x.strip()), "")
    line = ARTICLES.sub(" ", line.lower().translate(PUNCTUATION))
    return " ".join(line.split())


def judge(generation: str, choices, gold: int) -> str:
    """'hit' (equals the gold choice), 'wrong' (equals another choice of the question), 'empty' or 'other'."""
    got = normalise(generation)
    if not got:
        return "empty"
    if got == normalise(choices[gold]):
        return "hit"
    if any(got == normalise(c) for i, c in enumerate(choices) if i != gold):
        return "wrong"
    return "other"


def contains(generation: str, choices, gold: int) -> str:
    """The looser reading: 'hit' when the gold choice appears (as whole words) in the normalised first line and
    no other choice does, 'wrong' when another choice appears and the gold one does not, else 'neither'."""
    got = f" {normalise(generation)} "
    found = [bool(normalise(c)) and f" {normalise(c)} " in got for c in choices]
    if found[gold] and sum(found) == 1:
        return "hit"
    if not found[gold] and any(found):
        return "wrong"
    return "neither"


def interval(k: int, n: int) -> tuple[float, float]:
    """Wilson 95% interval of a rate."""
    if n == 0:
        return 0.0, 0.0
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", nargs="+", default=list(DATASETS))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--modes", nargs="+", default=["base", "sft", "likra", "negbase"])
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", help="save the figures and every generation here")
    args = parser.parse_args()
    model, tokenizer, manifest = load_run_model(args.run)
    rows, generations = [], {}
    started = time.perf_counter()
    for spec in args.data:
        records = load_spec(spec)[: args.limit]
        for shots in args.shots:
            prefix = fewshot_prefix(fewshot_records(spec, records, shots, DATASETS.get(spec)))
            prompts = [prefix + r.prompt for r in records]
            for mode in args.modes:
                settings = GenerationSettings(
                    mode=mode,
                    weight=args.weight,
                    alpha=args.alpha,
                    max_new_tokens=args.new_tokens,
                    stop=["\n\n", "Question:"],
                    batch_size=args.batch_size,
                )
                t = time.perf_counter()
                out = HeadDecoder(model, tokenizer, settings).generate(prompts)
                seconds = time.perf_counter() - t
                verdicts = [judge(g.text, r.choices, r.gold) for g, r in zip(out, records)]
                n = len(verdicts)
                row = {"data": spec, "shots": shots, "mode": mode, "n": n, "seconds": round(seconds, 1)}
                for kind in ("hit", "wrong", "other", "empty"):
                    k = verdicts.count(kind)
                    row[kind] = k / n
                    row[f"{kind}_ci"] = interval(k, n)
                loose = [contains(g.text, r.choices, r.gold) for g, r in zip(out, records)]
                row["contains_hit"] = loose.count("hit") / n
                row["contains_wrong"] = loose.count("wrong") / n
                rows.append(row)
                generations[f"{spec}/{shots}shot/{mode}"] = [
                    {"id": r.id, "gold": r.choices[r.gold], "generation": g.text, "verdict": v}
                    for r, g, v in zip(records, out, verdicts)
                ]
                print(
                    f"{spec:<20} {shots}-shot {mode:<8} hit {row['hit']:.2f} "
                    f"[{row['hit_ci'][0]:.2f}, {row['hit_ci'][1]:.2f}]  wrong {row['wrong']:.2f}  "
                    f"other {row['other']:.2f}  empty {row['empty']:.2f}  | contains: hit {row['contains_hit']:.2f} "
                    f"wrong {row['contains_wrong']:.2f}  ({seconds:.0f} s)",
                    flush=True,
                )
    total = time.perf_counter() - started
    print(f"total {total / 60:.1f} min")
    if args.json:
        result = {
            "run": args.run,
            "model": manifest["model"]["name"],
            "training": {k: manifest.get(k) for k in ("data", "n_questions", "limit") if k in manifest},
            "settings": {k: v for k, v in vars(args).items() if k not in ("json", "run")},
            "minutes": round(total / 60, 1),
            "rows": rows,
            "generations": generations,
        }
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"saved {args.json}")


if __name__ == "__main__":
    main()
