"""Matmul speed per dtype on this machine, and what `--dtype auto` picks here.

    python benchmarks/bench_matmul.py --sizes 512 1024 --dtypes fp32 bf16 --json benchmarks/results-matmul.json

Each figure is recorded with the CPU's model name, its bf16 flags and the threads (`common.machine`), so figures of
different kinds of machine are never compared as one. On a CPU without bf16 instructions bf16 is emulated: keep
the sizes small there (a 2048^3 bf16 matmul can take tens of seconds)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, matmul_peak_gflops  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


LAYOUTS = ("a@b", "linear")  # see common.matmul_peak_gflops


def measure(sizes: list[int], dtypes: list[str], repeats: int, device: torch.device) -> dict:
    from likra.model.precision import auto_train_dtype

    rows = []
    for size in sizes:
        for name in dtypes:
            for layout in LAYOUTS:
                gflops = matmul_peak_gflops(DTYPES[name], device, size=size, repeats=repeats, layout=layout)
                rows.append({"size": size, "dtype": name, "layout": layout, "gflops": gflops})
    for row in rows:
        fp32 = next(
            (r["gflops"] for r in rows if (r["size"], r["layout"], r["dtype"]) == (row["size"], row["layout"], "fp32")),
            None,
        )
        row["vs_fp32"] = row["gflops"] / fp32 if fp32 else None
    auto = {"train": auto_train_dtype(device.type), "score": "fp32"}  # what --dtype auto does here
    return {"machine": machine(), "device": device.type, "auto": auto, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    p.add_argument("--repeats", type=int, default=3, help="best of this many timed matmuls")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    result = measure(args.sizes, args.dtypes, args.repeats, torch.device(args.device))
    m = result["machine"]
    auto = f"; --dtype auto here: trains in {result['auto']['train']}, scores in fp32"
    print(f"{m['cpu']} (bf16 flags: {', '.join(m['cpu_bf16_flags']) or 'none'}; {m['threads']} threads)"
          + (f", {m['gpu']}" if "gpu" in m else "") + auto)  # fmt: skip
    print(f"{'size':>6} {'layout':>7} {'dtype':>5} {'GFLOP/s':>9} {'vs fp32':>8}")
    for r in result["rows"]:
        ratio = f"{r['vs_fp32']:.3f}" if r["vs_fp32"] is not None else "-"
        print(f"{r['size']:>6} {r['layout']:>7} {r['dtype']:>5} {r['gflops']:>9.2f} {ratio:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
