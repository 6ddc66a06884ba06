"""Wall time of `likra study objectives` on the embedded model, and each objective's training time and accuracy.

    python benchmarks/bench_objectives.py --limit 256 --json benchmarks/results-objectives.json

Runs the study in a fresh folder (so every head trains), times the whole command, and prints per objective
its training seconds (from the heads' statistics) and acc_norm with the gain per example over the base model
at the last checkpoint. Extra arguments go to `likra study objectives` unchanged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--points", default="16,64,256")
    parser.add_argument("--out", help="study folder (default: a fresh temporary folder)")
    parser.add_argument("--json", help="write the figures here")
    args, extra = parser.parse_known_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="likra-objectives-")) / "study"
    command = [
        sys.executable,
        "-m",
        "likra",
        "-q",
        "study",
        "objectives",
        "--limit",
        str(args.limit),
        "--points",
        args.points,
        "--dpo-lr",
        "5e-4",
        "--kto-lr",
        "5e-4",
        *extra,
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    study = json.loads((out / "study-objectives.json").read_text())
    print(
        f"likra study objectives, {args.limit} questions, checkpoints at {args.points}: {wall / 60:.1f} min wall "
        f"on {cpu_name()}"
    )
    print(f"{'objective':<28} {'mode':<34} {'acc_norm':>8} {'gain/example':>13} {'95% CI':>24} {'train s':>8}")
    for g in study["gains"]:
        ci = f"[{g['gain_low']:+.2e}, {g['gain_high']:+.2e}]" if g["gain_low"] is not None else "-"
        print(
            f"{g['objective']:<28} {g['mode']:<34} {g['value']:8.3f} {g['gain']:+13.2e} {ci:>24} "
            f"{study['train_seconds'].get(g['objective'], 0):8.0f}"
        )
    if args.json:
        result = {
            "cpu": cpu_name(),
            "command": command[1:],
            "wall_seconds": wall,
            "limit": args.limit,
            "points": args.points,
            "gains": study["gains"],
            "train_seconds": study["train_seconds"],
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
