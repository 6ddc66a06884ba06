"""The overall progress line, and tracking to TensorBoard (event files read back) and W&B (a recording stand-in)."""

import importlib.machinery
import importlib.util
import io
import json
import sys
import types

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main
from likra.errors import LikraError
from likra.progress import CurveProgress, duration
from likra.tracking import backends, make_tracker


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_estimate_times_each_kind_of_work_from_what_was_done():
    clock, out = Clock(), io.StringIO()
    p = CurveProgress(label="c", stream=out, interactive=False, clock=clock)
    p.plan(0, 1)
    clock.t = 10
    p.scored(None, "base", 1, 1, 10.0)  # one scoring pass: 10 s
    assert "?" not in out.getvalue() and "%" not in out.getvalue()  # no plan yet: no estimate claimed
    p.plan(8, 4)
    p.train_started()
    for step in range(1, 5):  # 4 steps of 2 s
        clock.t += 2
        p.training(0, "positive", step, 4)
    assert p.timed_steps == 4 and p.step_seconds == 8  # timed from the Trainer's start of training
    p.trained(0, "positive", 4, cached=False)
    assert p.steps_done == 4
    assert p.remaining() == pytest.approx(4 * 2 + 4 * 10)  # 4 steps at 2 s, 4 passes at 10 s
    p.trained(0, "negative", 4, cached=True)  # found finished: counted, not timed
    assert p.steps_done == 8 and p.timed_steps == 4
    p.scored(0, "positive", 1, 2, None)  # cached pass: counted, not timed
    assert p.remaining() == pytest.approx(3 * 10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # one line per finished piece in a log, none per step
    assert "positive checkpoint 1/2 found scored" in lines[-1] and "~30s left" in lines[-1]
    assert "checkpoints scored 2/5" in lines[-1]


def test_untimed_kind_gives_an_unknown_estimate_and_terminal_redraws_in_place():
    out = io.StringIO()
    p = CurveProgress(label="c", stream=out, interactive=True, clock=Clock())
    p.plan(4, 2)
    p.training(0, "positive", 1, 4)
    assert p.remaining() is None and out.getvalue().startswith("\r") and "~? left" in out.getvalue()
    p.close()
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_a_long_head_logs_each_tenth_of_its_training():
    out = io.StringIO()
    p = CurveProgress(label="c", stream=out, interactive=False, clock=Clock())
    p.plan(120, 2)
    for step in range(1, 121):
        p.training(0, "positive", step, 120)
    lines = out.getvalue().splitlines()
    assert [line.split("step ")[1].split(" ")[0] for line in lines] == [f"{12 * k}/120" for k in range(1, 10)]


def test_the_line_moves_with_every_scoring_batch_on_a_terminal():
    clock, out = Clock(), io.StringIO()
    p = CurveProgress(label="c", stream=out, interactive=True, clock=clock)
    p.plan(4, 2)
    p.timed_steps, p.step_seconds, p.steps_done = 4, 8.0, 4  # training done, 2 s a step
    p.scored(0, "positive", 1, 2, 10.0)  # one pass timed: 10 s
    before = p.remaining()
    for batch in range(1, 5):
        clock.t += 0.5
        p.scoring(0, "negative", 2, 2, batch, 4)
        assert f"scoring batch {batch}/4" in out.getvalue().split("\r")[-1]
    assert out.getvalue().count("\r") == 1 + 4 and p.remaining() == pytest.approx(before - 10.0)
    clock.t += 0.01
    p.scoring(0, "negative", 2, 2, 1, 400)  # batches closer than MIN_REDRAW_SECONDS: not redrawn
    assert out.getvalue().count("\r") == 5
    logged = io.StringIO()
    q = CurveProgress(label="c", stream=logged, interactive=False, clock=clock)
    for batch in range(1, 101):
        q.scoring(None, "base", 1, 1, batch, 100)
    assert len(logged.getvalue().splitlines()) == 9  # a long pass in a log: each tenth


def test_engine_reports_each_batch(tiny_heads, records, tiny_tokenizer):
    from likra.scoring.engine import ScoringEngine, tokenize_questions

    _, questions = tokenize_questions(tiny_tokenizer, records)
    calls = []
    engine = ScoringEngine(tiny_heads, max_batch_tokens=256, on_batch=lambda *a: calls.append(a))
    engine.loglikelihoods(questions, ("positive", "negative"))
    n = len(calls) // 2
    assert n > 1 and calls == [(h, k, n) for h in ("positive", "negative") for k in range(1, n + 1)]


def test_disabled_progress_prints_nothing():
    out = io.StringIO()
    p = CurveProgress(enabled=False, stream=out, interactive=False)
    p.plan(1, 1)
    p.scored(0, "positive", 1, 1, 1.0)
    p.close()
    assert out.getvalue() == ""
    assert [duration(s) for s in (None, 5, 65, 3725)] == ["?", "5s", "1m05s", "1h02m"]


def test_curve_prints_one_overall_line_per_finished_piece_and_quiet_silences_it(tmp_path, capsys, monkeypatch):
    batches = []
    scoring = CurveProgress.scoring
    monkeypatch.setattr(CurveProgress, "scoring", lambda self, *a: batches.append(a) or scoring(self, *a))
    assert main(["curve", *TINY_CURVE_ARGS, "--batch-tokens", "256", "--out", str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()
    err, out = captured.err, captured.out
    # every pass (base model, 2 heads x 2 checkpoints) reported each of its batches
    assert [a[:4] for a in batches if a[4] == a[5]] == [(None, "base", 1, 1)] + [
        (0, h, k, 2) for k in (1, 2) for h in ("positive", "negative")
    ]
    assert all(a[5] > 1 for a in batches)
    # a short plain-text summary and where report.md is, no markdown
    assert "#" not in out and "|" not in out and "![" not in out
    assert f"report: {tmp_path / 'c' / 'report.md'}" in out.splitlines()
    assert "10 questions, 1 seed" in out and "acc_norm after 16 examples: sft " in out
    lines = [line for line in err.splitlines() if line.startswith("likra c (near_miss):")]
    # the base model, two heads trained, two heads x two checkpoints scored
    assert len(lines) == 7 and "\r" not in err
    assert "negative checkpoint 2/2 scored" in lines[-1] and "100%" in lines[-1]
    assert all("elapsed" in line for line in lines)
    assert main(["curve", *TINY_CURVE_ARGS, "--out", str(tmp_path / "c"), "--quiet"]) == 0  # cached, and quiet
    assert "likra c (near_miss):" not in capsys.readouterr().err


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_training_losses_and_checkpoint_metrics(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "c"
    args = ["-q", "curve", *TINY_CURVE_ARGS, "--logging-steps", "1", "--out", str(out), "--report-to", "tensorboard"]
    assert main(args) == 0
    curve = json.loads((out / "curve.json").read_text())
    evals = scalars(out / "tensorboard" / "seed-0" / "eval-near_miss-arc_challenge_validation-0shot-first10")
    rows = [r for r in curve["rows"] if r["examples"] > 0]
    assert len(rows) == sum(len(v) for v in evals.values())
    for r in rows:
        assert (r["examples"], pytest.approx(r["value"], abs=1e-6)) in evals[f"eval/{r['metric']}/{r['mode']}"]
    # one x axis: training examples seen (the checkpoints' 8 and 16); optimizer steps are a scalar against it
    seen = sorted({r["examples"] for r in rows})
    for head in ("positive", "negative"):
        logged = scalars(out / "tensorboard" / "seed-0" / head)
        losses = logged["train/loss"]
        done = json.loads((out / "seed-0" / f"{head}.done.json").read_text())
        assert [v for _, v in losses] == pytest.approx(done["losses"], rel=1e-5)
        assert [x for x, _ in losses] == seen == [8, 16]
        assert {(x, int(v)) for x, v in logged["train/optimizer_step"]} == {(8, 1), (16, 2)}


def test_a_short_curve_logs_every_heads_loss_at_the_default_logging_steps(tmp_path):
    """`--logging-steps 10` (the default) on heads of 2 optimizer steps: the last step's loss is logged, against
    the examples seen, where the curve's last checkpoint sits on the eval scalars' axis."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "c"
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(out), "--report-to", "tensorboard"]) == 0
    curve = json.loads((out / "curve.json").read_text())
    last = max(r["examples"] for r in curve["rows"])
    evals = scalars(out / "tensorboard" / "seed-0" / "eval-near_miss-arc_challenge_validation-0shot-first10")
    assert max(x for x, _ in evals["eval/acc/likra"]) == last == 16
    for head in ("positive", "negative"):
        done = json.loads((out / "seed-0" / f"{head}.done.json").read_text())
        assert done["steps"] == 2 and len(done["losses"]) == 1
        (loss,) = scalars(out / "tensorboard" / "seed-0" / head)["train/loss"]
        assert loss == (last, pytest.approx(done["losses"][0], rel=1e-6))


def test_train_reports_to_tensorboard_inside_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "4"]
    assert main(args + ["--logging-steps", "1", "--out", str(run), "--report-to", "tensorboard"]) == 0
    stats = json.loads((run / "likra.json").read_text())["stats"]
    for head in ("positive", "negative"):
        losses = scalars(run / "tensorboard" / "seed-0" / head)["train/loss"]
        assert [v for _, v in losses] == pytest.approx(stats[head]["losses"], rel=1e-5)


class FakeRun:
    def __init__(self, **kwargs):
        self.init, self.logged, self.axes, self.finished = kwargs, [], [], False

    def define_metric(self, name, step_metric=None):
        self.axes.append((name, step_metric))

    def log(self, values):
        self.logged.append(values)

    def finish(self):
        self.finished = True


def test_wandb_logs_each_head_on_its_own_axis_and_metrics_by_examples(tmp_path, monkeypatch):
    """`--report-to all` with wandb (a recording stand-in) and tensorboard installed: both get everything."""
    pytest.importorskip("tensorboard")
    runs = []
    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)  # found, as an installed package is
    fake.init = lambda **kwargs: runs.append(FakeRun(**kwargs)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_PROJECT", "neg")
    out = tmp_path / "c"
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--logging-steps", "1", "--out", str(out), "--report-to", "all"]) == 0
    (run,) = runs
    assert run.init["dir"] == str(out / "wandb")
    series = "eval-near_miss-arc_challenge_validation-0shot-first10"
    assert sorted(p.name for p in (out / "tensorboard" / "seed-0").iterdir()) == [series, "negative", "positive"]
    curve = json.loads((out / "curve.json").read_text())
    assert set(scalars(out / "tensorboard" / "seed-0" / series)) == {
        f"eval/{r['metric']}/{r['mode']}" for r in curve["rows"] if r["examples"] > 0
    }
    assert run.init["project"] == "neg" and run.init["name"] == "c" and run.finished
    assert ("train/seed-0/positive/*", "train/seed-0/positive/step") in run.axes
    curve = json.loads((out / "curve.json").read_text())
    evals = [v for v in run.logged if "examples" in v]
    assert [v["examples"] for v in evals] == sorted({r["examples"] for r in curve["rows"] if r["examples"] > 0})
    for r in curve["rows"]:
        if r["examples"] > 0:
            (logged,) = [v for v in evals if v["examples"] == r["examples"]]
            key = f"eval/near_miss-arc_challenge_validation-0shot-first10/seed-0/{r['metric']}/{r['mode']}"
            assert logged[key] == r["value"]
    losses = [v["train/seed-0/negative/loss"] for v in run.logged if "train/seed-0/negative/loss" in v]
    assert losses == pytest.approx(json.loads((out / "seed-0" / "negative.done.json").read_text())["losses"])


def test_missing_tracking_package_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(LikraError, match="pip install wandb"):
        make_tracker("wandb", tmp_path.joinpath, "x")
    assert backends("all") == (["tensorboard"] if importlib.util.find_spec("tensorboard") else [])  # installed ones
    code = main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(tmp_path / "c"), "--report-to", "tensorboard,wandb"])
    assert "--report-to wandb needs wandb: pip install 'likra[wandb]'" in one_line_error(capsys, code)
    for bad, says in (("none,wandb", "cannot be combined"), ("tensorbord", "'tensorbord' is not one of")):
        err = one_line_error(capsys, main(["-q", "train", "--model", "random-tiny", "--report-to", bad]))
        assert says in err and "--report-to" in err
    assert not (tmp_path / "c").exists()


def test_report_to_takes_lists_from_flags_and_yaml(tmp_path):
    from likra.config import config_from_args, load_yaml
    from likra.experiments.curve import CurveConfig
    from likra.training.pipeline import TrainConfig

    assert TrainConfig().report_to == ["none"] and backends(TrainConfig().report_to) == []
    assert backends(["wandb", "tensorboard"]) == ["tensorboard", "wandb"]
    for text in ("report_to: tensorboard,wandb\n", "report_to: [tensorboard, wandb]\n"):
        (tmp_path / "c.yaml").write_text(text)
        cfg = config_from_args(CurveConfig, types.SimpleNamespace(), load_yaml(tmp_path / "c.yaml"))
        assert cfg.report_to == ["tensorboard", "wandb"]


def test_studies_take_quiet_after_the_kind_and_refuse_lm_eval_out(tmp_path, capsys):
    from likra.cli import build_parser

    argv = ["study", "negatives", "--limit", "4", "--quiet"]
    assert build_parser(argv).parse_args(argv).quiet is True
    code = main(["-q", "study", "negatives", *TINY_CURVE_ARGS, "--out", str(tmp_path / "s"), "--lm-eval-out", "x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--lm-eval-out" in err and "\n" not in err and not (tmp_path / "s").exists()
