"""The precision policy measured: the default curve (`make demo`'s `likra curve`) with `--dtype auto` and with
`--dtype fp32`, one after the other on this machine, timed end to end (a fresh process each, as `make demo` runs),
then compared question by question with `likra compare` (paired bootstrap and McNemar per mode and checkpoint).

    .venv/bin/python benchmarks/bench_precision.py --json benchmarks/results-precision.json

Prints and saves: each setting's wall time and phases (curve.json's timing), the ratio auto / fp32, what auto
resolved to here, and the comparison's summary (significant differences, the largest difference per metric).
Extra arguments after `--` go to both curves (e.g. `-- --model random-tiny --limit 64` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402


def run_curve(out: Path, dtype: str, extra: list[str]) -> dict:
    """One `likra curve` in a fresh process; its wall time and what curve.json says it ran and spent."""
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "likra", "-q", "curve", "--dtype", dtype, "--out", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    curve = json.loads((out / "curve.json").read_text())
    timing = curve.get("timing", {})
    return {
        "dtype_flag": dtype,
        "precision": curve.get("precision"),
        "wall_seconds": wall,
        "train_seconds": sum(timing.get("train_seconds", {}).values()),
        "scoring_seconds": timing.get("scoring_seconds"),
        "load_seconds": timing.get("load_seconds"),
    }


def summary(comparison: dict) -> dict:
    out = {}
    for metric in ("acc", "acc_norm"):
        rows = [r for r in comparison["rows"] if r["metric"] == metric]
        largest = max(rows, key=lambda r: abs(r["diff"]))
        out[metric] = {
            "differences": len(rows),
            "significant": sum(r["significant"] for r in rows),
            "largest": {k: largest[k] for k in ("examples", "mode", "diff", "ci_low", "ci_high", "p_mcnemar")},
            "smallest_p": min(r["p_mcnemar"] for r in rows),
        }
    return out


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="runs/bench-precision", help="folder for the two curve folders")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    from likra.experiments.compare import compare_curves, comparison_table

    work = Path(args.work)
    runs = {dtype: run_curve(work / dtype, dtype, extra) for dtype in ("fp32", "auto")}
    comparison = compare_curves(work / "auto", work / "fp32")
    result = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "curve_args": extra,
        "runs": runs,
        "auto_vs_fp32_wall": runs["auto"]["wall_seconds"] / runs["fp32"]["wall_seconds"],
        "comparison": summary(comparison),
        "rows": comparison["rows"],
    }
    m = result["machine"]
    print(f"{m['cpu']} (bf16 flags: {', '.join(m['cpu_bf16_flags']) or 'none'}), {m['threads']} threads")
    for dtype, r in runs.items():
        print(
            f"--dtype {dtype}: {r['precision']} wall {r['wall_seconds']:.0f} s (training {r['train_seconds']:.0f} s, "
            f"scoring {r['scoring_seconds']:.0f} s, loading {r['load_seconds']:.0f} s)"
        )
    print(f"auto / fp32 wall time: {result['auto_vs_fp32_wall']:.2f}")
    for metric in ("acc", "acc_norm"):
        print("\n".join(comparison_table(comparison, metric)[-1:]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
