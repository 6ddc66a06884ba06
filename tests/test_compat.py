"""Folders written by likra 0.1 (before the heads/objectives/studies core) keep loading, and today's code gives
their numbers. The fixture in tests/fixtures/likra-0.1 was written by likra 0.1 itself (commands in its
README); its adapter weights are not kept (no weights in the repository): where a test needs them it trains
them again with today's code, which must reproduce likra 0.1's metrics exactly (log-likelihoods within fp32
rounding: the scoring engine's layout has changed since)."""

import json
import shutil
from pathlib import Path

from conftest import TINY_CURVE_ARGS
from numerics import assert_kernel_close

from likra.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "likra-0.1"
CURVE = ["-q", "curve", *TINY_CURVE_ARGS]
TRAIN = ["-q", "train", "--model", "random-tiny", "--batch-size", "4", "--lr", "0.01"]
MODES = "base,sft,likra,negbase,pos_base"


def values(curve_dir: Path) -> list[tuple]:
    """A curve's rows without their intervals: likra 0.1's were normal (Wald) intervals, today's are Wilson's
    (checked to be Wilson's of the same value and n)."""
    from likra.scoring.metrics import wilson_interval

    rows = json.loads((curve_dir / "curve.json").read_text())["rows"]
    for r in rows:
        if isinstance(r["seed"], int) and not curve_dir.is_relative_to(FIXTURE):
            assert (r["ci_low"], r["ci_high"]) == wilson_interval(r["value"], r["n"])
    return [(r["seed"], r["examples"], r["mode"], r["metric"], r["value"], r["n"]) for r in rows]


def test_old_curve_folder_reruns_without_recomputing(tmp_path, monkeypatch):
    folder = shutil.copytree(FIXTURE / "curve", tmp_path / "curve")
    (folder / "curve.json").unlink()

    def boom(*args, **kwargs):
        raise AssertionError("recomputed a piece the old folder holds")

    monkeypatch.setattr("transformers.Trainer.train", boom)
    monkeypatch.setattr("likra.scoring.engine.ScoringEngine.loglikelihoods", boom)
    assert main(CURVE + ["--out", str(folder)]) == 0
    assert values(folder) == values(FIXTURE / "curve")
    assert main(["-q", "report", str(folder)]) == 0


def test_todays_curve_equals_the_old_one(tmp_path):
    out = tmp_path / "curve"
    assert main(CURVE + ["--out", str(out)]) == 0
    assert values(out) == values(FIXTURE / "curve")
    # Scores within fp32 rounding (the engine's layout has changed since: a choice's last token is no
    # longer fed, which moves sums by ~1e-6); the metrics above are identical.
    for old in (FIXTURE / "curve" / "seed-0" / "scores").rglob("*.json"):
        new = out / old.relative_to(FIXTURE / "curve")
        got, want = json.loads(new.read_text()), json.loads(old.read_text())
        assert len(got) == len(want), old.name
        for a, b in zip(got, want):
            assert_kernel_close(a, b, what=old.name)


def without_intervals(metrics: dict) -> dict:
    """Every mode's metrics but their intervals (likra 0.1's were normal intervals, today's are Wilson's)."""
    return {
        mode: {k: {f: v for f, v in m.items() if f not in ("ci_low", "ci_high")} for k, m in by.items()}
        for mode, by in metrics.items()
    }


def test_old_run_folder_loads_and_scores_the_same(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURE / "qa.jsonl", tmp_path / "qa.jsonl")
    # Today's training on the same data and settings: the same adapters as likra 0.1's.
    assert main(TRAIN + ["--data", "qa.jsonl", "--out", "today"]) == 0
    old = shutil.copytree(FIXTURE / "run", tmp_path / "old")
    for head in ("positive", "negative"):
        shutil.copy(tmp_path / "today" / "adapters" / head / "adapter_model.safetensors", old / "adapters" / head)
    expected = json.loads((FIXTURE / "run-eval.json").read_text())
    for run in ("old", "today"):
        assert main(["-q", "eval", "--run", run, "--data", "qa.jsonl", "--modes", MODES, "--out", f"{run}.json"]) == 0
        got = json.loads((tmp_path / f"{run}.json").read_text())
        assert without_intervals(got["metrics"]) == without_intervals(expected["metrics"]), run
        for head, scores in expected["loglikelihoods"].items():
            for a, b in zip(got["loglikelihoods"][head], scores, strict=True):
                assert_kernel_close(a, b, what=f"{run} {head}")
