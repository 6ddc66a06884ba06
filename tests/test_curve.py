import csv
import json

import numpy as np
import pytest

import likra.objectives.mle as trainer_mod
from likra.cli import main
from likra.errors import LikraError
from likra.experiments.curve import checkpoint_schedule
from likra.scoring.engine import ScoringEngine


def test_schedule_powers_of_two_and_last_point():
    assert checkpoint_schedule(64, 16) == [(1, 16), (2, 32), (4, 64)]
    assert checkpoint_schedule(256, 16) == [(1, 16), (2, 32), (4, 64), (8, 128), (16, 256)]
    # 100 examples in batches of 16: 7 steps, the last one partial.
    assert checkpoint_schedule(100, 16) == [(1, 16), (2, 32), (4, 64), (7, 100)]
    assert checkpoint_schedule(10, 16) == [(1, 10)]


def test_schedule_from_example_counts():
    assert checkpoint_schedule(100, 16, points=[16, 40, 64]) == [(1, 16), (3, 48), (4, 64), (7, 100)]
    with pytest.raises(LikraError, match="outside 1..100"):
        checkpoint_schedule(100, 16, points=[0, 200])


CURVE = [
    "-q",
    "curve",
    "--model",
    "random-tiny",
    "--data",
    "arc_challenge:train",
    "--limit",
    "24",
    "--batch-size",
    "4",
    "--lr",
    "0.01",
    "--eval-data",
    "arc_challenge:validation",
    "--eval-limit",
    "12",
]


def rows_of(path):
    return json.loads((path / "curve.json").read_text())["rows"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve") / "full"
    assert main(CURVE + ["--out", str(out)]) == 0
    return out


def test_curve_outputs_parse(uninterrupted):
    out = uninterrupted
    curve = json.loads((out / "curve.json").read_text())
    assert curve["model"] == "random-tiny" and curve["n_eval"] == 12
    examples = sorted({r["examples"] for r in curve["rows"]})
    assert examples == [0, 4, 8, 16, 24]  # base, 2^k steps of 4, and the whole data
    for r in curve["rows"]:
        assert set(r) == {"seed", "examples", "step", "mode", "metric", "value", "n", "ci_low", "ci_high"}
        assert r["ci_low"] <= r["value"] <= r["ci_high"] and r["n"] == 12
    assert {r["mode"] for r in curve["rows"]} == {"base", "sft", "likra", "negbase"}
    with open(out / "curve.csv") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == ["seed", "examples", "step", "mode", "metric", "value", "n", "ci_low", "ci_high"]
    assert len(table) == len(curve["rows"])
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "curve.svg").read_text().lstrip().startswith("<?xml")
    report = (out / "report.md").read_text()
    assert "Worth of one example" in report and "| 24 |" in report


def test_resume_after_failure_in_training_matches_uninterrupted(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real_loss = trainer_mod.answer_token_loss

    def failing_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 + 6:  # positive head done (6 steps); fail at the negative head's 4th step
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "answer_token_loss", failing_loss)
    assert main(CURVE + ["--out", str(out)]) == 130
    assert (out / "seed-0" / "positive.done.json").is_file()
    assert not (out / "seed-0" / "negative.done.json").exists()
    assert (out / "seed-0" / "negative" / "checkpoint-2" / "optimizer.pt").is_file()
    monkeypatch.setattr(trainer_mod, "answer_token_loss", real_loss)

    trained_steps = []
    from transformers import Trainer

    real_step = Trainer.training_step

    def counting_step(self, *args, **kwargs):
        trained_steps.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", counting_step)
    assert main(CURVE + ["--out", str(out)]) == 0
    assert trained_steps == [2, 3, 4, 5]  # resumed after checkpoint-2: only the negative head's remaining steps
    full, resumed = rows_of(uninterrupted), rows_of(out)
    assert len(full) == len(resumed)
    for a, b in zip(full, resumed):
        assert a["examples"] == b["examples"] and a["mode"] == b["mode"]
        assert a["value"] == pytest.approx(b["value"], abs=1e-12)


def test_finished_curve_recomputes_nothing(uninterrupted, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("recomputed a finished piece")

    monkeypatch.setattr(ScoringEngine, "loglikelihoods", boom)
    monkeypatch.setattr("transformers.Trainer.train", boom)
    before = (uninterrupted / "curve.json").read_text()
    assert main(CURVE + ["--out", str(uninterrupted)]) == 0
    assert json.loads((uninterrupted / "curve.json").read_text())["rows"] == json.loads(before)["rows"]


def test_resume_after_failure_in_evaluation(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "evalfail"
    real = ScoringEngine.loglikelihoods
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # base, then two checkpoints' two heads ... fail on the third checkpoint
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ScoringEngine, "loglikelihoods", failing)
    assert main(CURVE + ["--out", str(out)]) == 130
    scored = sorted(p.name for p in (out / "seed-0" / "scores").rglob("*.json"))
    assert len(scored) == 3
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "seed-0" / "scores").rglob("*.json")}
    calls["n"] = -100
    monkeypatch.setattr("transformers.Trainer.train", lambda *a, **k: pytest.fail("retrained"))
    assert main(CURVE + ["--out", str(out)]) == 0
    for p, t in mtimes.items():
        assert p.stat().st_mtime_ns == t
    assert [r["value"] for r in rows_of(out)] == pytest.approx([r["value"] for r in rows_of(uninterrupted)], abs=1e-12)


def test_other_training_settings_are_refused(uninterrupted, capsys):
    code = main(CURVE + ["--lr", "0.02", "--out", str(uninterrupted)])
    assert code == 2 and "other settings (train)" in capsys.readouterr().err


def test_new_evaluation_reuses_the_trained_checkpoints(uninterrupted, monkeypatch):
    monkeypatch.setattr("transformers.Trainer.train", lambda *a, **k: pytest.fail("retrained"))
    out = uninterrupted
    assert main(CURVE[:-2] + ["--eval-limit", "6", "--out", str(out)]) == 0
    assert {r["n"] for r in rows_of(out)} == {6}
    assert len(list((out / "seed-0" / "scores").iterdir())) == 2  # two evaluation sets side by side
    assert main(CURVE + ["--out", str(out)]) == 0  # restore the fixture's outputs


def test_seeds_give_means_and_plot_several_runs(tmp_path, uninterrupted):
    out = tmp_path / "seeds"
    assert main(CURVE + ["--seeds", "2", "--out", str(out)]) == 0
    rows = rows_of(out)
    means = [r for r in rows if r["seed"] == "mean"]
    assert means and all(r["n"] == 2 for r in means)
    for m in means:
        per_seed = [
            r["value"]
            for r in rows
            if r["seed"] in (0, 1)
            and (r["examples"], r["mode"], r["metric"]) == (m["examples"], m["mode"], m["metric"])
        ]
        assert m["value"] == pytest.approx(sum(per_seed) / 2)
        assert 0 <= m["ci_low"] < m["value"] < m["ci_high"] <= 1  # never a point, never outside [0, 1]
    # each interval is the one over seeds and questions of the per-question credits in the score files
    from likra.data.formats import load_data
    from likra.experiments.folder import CurveFolder, read_scores
    from likra.model.heads import HeadSpec
    from likra.scoring.stats import credits, seeds_and_questions

    curve = json.loads((out / "curve.json").read_text())
    records = load_data("arc_challenge:validation")[0][:12]
    folder, last = CurveFolder(out), max(r["examples"] for r in means)
    step = next(r["step"] for r in means if r["examples"] == last)
    tag = next((out / "seed-0" / "scores").iterdir()).name
    scores = [read_scores(folder.scores_file(s, tag, HeadSpec("positive"), step), 12) for s in (0, 1)]
    matrix = np.stack([credits(s, [r.gold for r in records]) for s in scores])
    sft = next(r for r in means if (r["examples"], r["mode"], r["metric"]) == (last, "sft", "acc"))
    expected = seeds_and_questions(matrix)
    assert (sft["ci_low"], sft["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), rel=1e-12)
    assert curve["seed_note"].startswith("2 seeds:")
    fig = tmp_path / "both.png"
    assert (
        main(["-q", "plot", str(uninterrupted), str(out / "curve.json"), "--labels", "one,two", "--out", str(fig)]) == 0
    )
    assert fig.read_bytes()[:4] == b"\x89PNG"


def test_schedule_counts_epochs():
    assert checkpoint_schedule(32, 16, epochs=2) == [(1, 16), (2, 32), (4, 64)]
    assert checkpoint_schedule(40, 16, epochs=2) == [(1, 16), (2, 32), (4, 56), (6, 80)]
    assert checkpoint_schedule(64, 16, epochs=0.5) == [(1, 16), (2, 32)]
    with pytest.raises(LikraError, match="batch size"):
        checkpoint_schedule(64, 0)


def test_curves_refuse_all_negatives(tmp_path, capsys):
    assert main(CURVE + ["--negatives", "all", "--out", str(tmp_path / "c")]) == 2
    assert "--negatives one" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written for a refused run
