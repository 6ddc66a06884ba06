"""Two data-parallel CPU processes under `accelerate launch` give the 1-process results."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = [
    "-q",
    "curve",
    "--model",
    "random-tiny",
    "--data",
    "arc_challenge:train",
    "--limit",
    "32",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--eval-data",
    "arc_challenge:validation",
    "--eval-limit",
    "20",
]


def run(cmd, timeout=300):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def scores(folder: Path) -> dict:
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "seed-0" / "scores").rglob("*.json"))}


def test_two_process_curve_matches_one_process(tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        pytest.skip("accelerate launcher not installed")
    run([sys.executable, "-m", "likra", *ARGS, "--out", str(tmp_path / "one")])
    # On a CPU-only machine `--multi_gpu` starts the processes (torch.distributed.run) and likra joins them
    # as data-parallel CPU workers (gloo); `--cpu` alone would start a single process.
    run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "likra",
            *ARGS,
            "--out",
            str(tmp_path / "two"),
        ]
    )
    one = json.loads((tmp_path / "one" / "curve.json").read_text())
    two = json.loads((tmp_path / "two" / "curve.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert [r["value"] for r in one["rows"]] == [r["value"] for r in two["rows"]]
    a, b = scores(tmp_path / "one"), scores(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) == 6
    for name in a:
        diff = max(abs(u - v) for p, q in zip(a[name], b[name]) for u, v in zip(p, q))
        assert diff < 1e-4, name
