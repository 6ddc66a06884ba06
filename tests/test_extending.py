"""A mode, an objective and a study registered from this file alone run in a tiny curve and reach its report,
with no edit to likra's own files (the README's "Extending likra" recipe)."""

import json
from pathlib import Path

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main
from likra.config import PositiveFloat, option, settings
from likra.experiments.curve import CurveConfig, CurveRun
from likra.experiments.figures import line_figure, mode_points
from likra.experiments.studies import STUDIES, Study, register_study
from likra.model.heads import HeadSpec
from likra.objectives import OBJECTIVES, register_objective
from likra.objectives.mle import MLE
from likra.scoring.modes import MODES, Mode, Term, register_mode

TINY = TINY_CURVE_ARGS


class GoldCopy(MLE):
    """A toy objective: MLE on the gold answers whatever the head's data says. With the positive head's
    initialisation it must give the positive head's numbers exactly, through the plug-in path."""

    name = "toy_gold_copy"
    help = "MLE on gold answers (test objective)"

    def examples(self, ctx, head, records, negatives, settings):
        return super().examples(ctx, HeadSpec(head.name, data="gold"), records, negatives, settings)


@settings
class ToySettings:
    scale: PositiveFloat = option(1.0, help="weight of the toy head's negative term")


TOY_HEAD = HeadSpec("toy", objective="toy_gold_copy", data="gold", init=0)


class ToyStudy(Study):
    name = "toy"
    help = "the copy head against the negative head (test study)"
    settings = ToySettings
    prefix = "toy-"

    def run(self, cfg, options, progress=True):
        register_mode(Mode("toy_ratio", (Term(1, "toy"), Term(-options.scale, "negative", True)), "toy ratio", "black"))
        curve = CurveRun(cfg, progress, extra_heads=[TOY_HEAD], extra_modes=["toy_ratio", "toy-negative"]).run().curve
        return {"study": self.name, "scale": options.scale, "curve": curve}

    def figure(self, result):
        return line_figure({"toy": [("toy ratio", mode_points(result["curve"], "toy_ratio"))]}, None, "toy", "examples")

    def report(self, result):
        return [f"toy study at scale {result['scale']:g}: {len(result['curve']['rows'])} rows"]


@pytest.fixture
def registered():
    register_objective(GoldCopy())
    register_study(ToyStudy())
    yield
    OBJECTIVES.unregister(GoldCopy.name)
    STUDIES.unregister(ToyStudy.name)
    MODES.unregister("toy_ratio")  # registered by the study


def metric(curve, mode, examples, name="acc_norm"):
    return next(r["value"] for r in curve["rows"] if (r["mode"], r["examples"], r["metric"]) == (mode, examples, name))


def test_toy_mode_objective_and_study(registered, tmp_path):
    out = tmp_path / "curve"
    assert main(["-q", "study", "toy", *TINY, "--toy-scale", "1", "--out", str(out)]) == 0
    result = json.loads((out / "study-toy.json").read_text())
    curve = result["curve"]
    examples = sorted({r["examples"] for r in curve["rows"] if r["examples"]})
    assert examples == [8, 16]
    scores = out / "seed-0" / "scores" / "arc_challenge_validation-0shot-first10"
    for e, step in zip(examples, (1, 2)):
        # The plug-in objective trained the same head as the built-in positive head, bit for bit ...
        assert (scores / f"step-{step}-toy.json").read_text() == (scores / f"step-{step}-positive.json").read_text()
        # ... so the toy mode and the expression equal the registered modes they mirror.
        assert metric(curve, "toy_ratio", e) == metric(curve, "likra", e)
    assert (out / "study-toy.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["-q", "report", str(out)]) == 0
    assert "## Study: toy" in (out / "report.md").read_text()
    assert "toy study at scale 1" in (out / "report.md").read_text()


def test_expression_modes_in_a_curve(tmp_path):
    out = tmp_path / "curve"
    assert (
        main(
            [
                "-q",
                "curve",
                *TINY,
                "--modes",
                "likra,positive-w*negative,positive-0.5*negative",
                "--weight",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    curve = json.loads((out / "curve.json").read_text())
    for e in (8, 16):
        assert metric(curve, "positive-w*negative", e) == metric(curve, "likra", e)
    assert {r["mode"] for r in curve["rows"]} >= {"positive-0.5*negative"}


def test_mode_needing_an_untrained_head_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "curve"
    assert main(["-q", "curve", *TINY, "--modes", "likra,dpo-base", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "needs head(s) dpo" in err and "\n" not in err.strip()
    assert not out.exists()


def test_unknown_objective_is_one_line(tmp_path):
    from likra.errors import LikraError

    with pytest.raises(LikraError, match="unknown objective 'nope'; valid objectives: .*mle"):
        CurveRun(CurveConfig(out=str(tmp_path)), extra_heads=[HeadSpec("x", objective="nope")])


def test_plugin_registration_helpers_return_what_they_register():
    class Other(MLE):
        name = "toy_other"

    try:
        assert register_objective(Other()).name == "toy_other" and "toy_other" in OBJECTIVES
        assert register_study(ToyStudy()) is STUDIES["toy"]
    finally:
        OBJECTIVES.unregister("toy_other")
        STUDIES.unregister("toy")


def test_a_name_registered_twice_names_both_origins():
    from likra.errors import LikraError
    from likra.registry import Registry

    class Again(MLE):
        name = "mle"

    with pytest.raises(LikraError, match=r"objective 'mle' is registered twice: by likra\.objectives\.mle .* and by "):
        register_objective(Again())
    with pytest.raises(LikraError, match=r"mode 'likra' is registered twice: by likra\.scoring\.modes"):
        register_mode(Mode("likra", (Term(1, "positive"),)))
    assert OBJECTIVES["mle"].__class__ is MLE and MODES["likra"].terms[1].head == "negative"  # nothing replaced
    registry = Registry("thing", int)
    with pytest.raises(LikraError, match="thing 'x' must be a int"):
        registry.register("x", 1.5)  # type: ignore[arg-type]
    registry.register("lazy", "math:inf")
    with pytest.raises(LikraError, match="thing 'lazy' must be a int"):
        registry.get("lazy")  # imported and checked on first use
    registry.register("answer", "operator:index")
    with pytest.raises(LikraError, match="unknown thing 'nope'; valid things: lazy, answer"):
        registry.get("nope")


def test_heads_are_configuration_and_the_likra_pair_is_the_default(tmp_path, capsys):
    """`--heads` written as the Likra pair is the default curve (same folder, nothing retrained); other heads
    (any registered objective, any number) train from the flag alone; a bad head is one line before anything."""
    out = tmp_path / "curve"
    assert main(["-q", "curve", *TINY, "--out", str(out)]) == 0
    before = (out / "curve.json").read_text()
    pair = "positive=mle:gold,negative=mle:negatives:near_miss"
    assert main(["-q", "curve", *TINY, "--heads", pair, "--out", str(out)]) == 0
    assert json.loads((out / "curve.json").read_text())["rows"] == json.loads(before)["rows"]
    assert sorted(p.name for p in (out / "seed-0").glob("*.done.json")) == ["negative.done.json", "positive.done.json"]
    three = f"{pair},ul=unlikelihood:pairs:near_miss"
    other = tmp_path / "three"
    args = ["-q", "curve", *TINY, "--heads", three, "--unlikelihood-alpha", "0.5", "--modes", "likra,ul,ul-base"]
    assert main([*args, "--out", str(other)]) == 0
    curve = json.loads((other / "curve.json").read_text())
    assert {r["mode"] for r in curve["rows"]} == {"base", "likra", "ul", "ul-base"}
    recorded = json.loads((other / "curve-config.json").read_text())
    assert [h["objective"] for h in recorded["heads"]] == ["mle", "mle", "unlikelihood"]
    ul = json.loads((other / "seed-0" / "ul" / "head-settings.json").read_text())  # recorded with the head it shaped
    assert ul["objective"] == "unlikelihood" and ul["settings"]["alpha"] == 0.5 and "objectives" not in recorded
    # The Likra heads of the three-head curve are the default curve's, bit for bit.
    scores = Path("seed-0") / "scores" / "arc_challenge_validation-0shot-first10"
    for name in ("step-2-positive.json", "step-2-negative.json"):
        assert (other / scores / name).read_text() == (out / scores / name).read_text()
    for heads, message in (
        ("positive=mle", "write a head as name=objective:data"),
        ("x=nope:gold", "unknown objective 'nope'"),
        ("x=mle:pairs:near_miss", "objective 'mle' trains on gold or negatives:<set>"),
        ("x=dpo:gold", "objective 'dpo' trains on pairs:<set>"),
        ("x=mle:gold,x=mle:gold", "the name 'x' is given twice"),
    ):
        code = main(["-q", "curve", *TINY, "--heads", heads, "--out", str(tmp_path / "bad")])
        assert message in one_line_error(capsys, code)
        assert not (tmp_path / "bad").exists()
