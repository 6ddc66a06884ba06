"""Each head trains on exactly the data its spec names (`likra.data.negative_sets`, `likra.training.plan`): the
recipe grammar, refusals before anything loads, the examples handed to each head's trainer checked against the
negative builders, and several negative sets on one curve."""

import json

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main
from likra.config import validate
from likra.data.examples import positive_pairs, tokenize_answers
from likra.data.formats import load_data
from likra.data.negative_sets import NEGATIVE_SETS, DataRecipe, NegativeSet, parse_recipe, register_negative_set
from likra.data.negatives import contaminate, near_miss, random_other_question
from likra.errors import LikraError
from likra.model.loading import TINY_MODEL, load_tokenizer
from likra.training.pipeline import select_questions


def test_the_recipe_grammar_resolves_every_parameter():
    assert parse_recipe("gold") == DataRecipe("gold")
    rq = parse_recipe("negatives:random_question")
    assert (rq.kind, rq.set, rq.values) == ("negatives", "random_question", {"contamination": 0.0})
    assert rq.spec == "negatives:random_question" and rq.variant == "random_question"
    near = parse_recipe("negatives:near_miss?contamination=0.25")
    assert near.values == {"per_question": "one", "contamination": 0.25}
    assert near.spec == "negatives:near_miss?contamination=0.25" and near.variant == "near_miss-contaminated0.25"
    far = parse_recipe("pairs:other_benchmark?pool=mmlu/anatomy:test&contamination=0.5")
    assert far.kind == "pairs" and far.values["pool"] == "mmlu/anatomy:test"
    assert far.negatives == parse_recipe("negatives:other_benchmark?pool=mmlu/anatomy:test&contamination=0.5")
    assert parse_recipe("negatives:other_benchmark").variant == "other_benchmark-hellaswag_validation"
    assert parse_recipe("negatives:near_miss", {"per_question": "all"}).values["per_question"] == "all"


@pytest.mark.parametrize(
    "data, message",
    [
        ("negatives:banana", "unknown negative set 'banana'"),
        ("negatives", "write gold, negatives:<set> or pairs:<set>"),
        ("gold:near_miss", "write gold"),
        ("positives:near_miss", "write gold"),
        ("negatives:near_miss?contamination=1.5", "not a fraction"),
        ("negatives:near_miss?contamination=lots", "not a number"),
        ("negatives:near_miss?pool=x", "takes no parameter 'pool'"),
        ("negatives:near_miss?per_question=some", "not one of one, all"),
        ("negatives:near_miss?contamination=0.1&contamination=0.2", "given twice"),
        ("negatives:near_miss?", "nothing after '?'"),
        ("negatives:near_miss?contamination", "not key=value"),
    ],
)
def test_unknown_sets_parameters_and_values_are_one_line(data, message):
    with pytest.raises(LikraError, match=message.replace("?", r"\?").replace("(", r"\(")):
        parse_recipe(data)


def test_a_plugin_set_is_one_registration_and_names_collide_loudly():
    def reversed_choice(records, seed, inputs, params):
        return [(r, r.choices[-1] if r.gold != len(r.choices) - 1 else r.choices[0]) for r in records]

    register_negative_set(NegativeSet("last_choice", "the last incorrect-looking choice", reversed_choice))
    try:
        assert parse_recipe("negatives:last_choice").set == "last_choice"
        with pytest.raises(LikraError, match="registered twice"):
            register_negative_set(NegativeSet("near_miss", "another", reversed_choice))
    finally:
        NEGATIVE_SETS.unregister("last_choice")


HEADS = "positive=mle:gold,near=mle:negatives:near_miss,rq=mle:negatives:random_question"


@pytest.fixture
def trained_items(monkeypatch):
    """{head: the items `likra train` handed its trainer}, filled as heads train."""
    import likra.training.pipeline as pipeline

    given = {}
    real = pipeline.train_head

    def recording(ctx, head, items, *args, **kwargs):
        given[head.name] = list(items)
        return real(ctx, head, items, *args, **kwargs)

    monkeypatch.setattr(pipeline, "train_head", recording)
    return given


def train(tmp_path, heads: str, *extra: str) -> dict:
    out = tmp_path / "run"
    args = ["-q", "train", "--model", TINY_MODEL, "--data", "arc_easy:train", "--limit", "12", "--batch-size", "4"]
    assert main([*args, "--heads", heads, *extra, "--out", str(out)]) == 0
    return json.loads((out / "likra.json").read_text())


def train_records():
    tokenizer = load_tokenizer(TINY_MODEL)
    return tokenizer, select_questions(load_data("arc_easy:train", tokenizer=tokenizer)[0], 12, 0)


def test_each_head_trains_on_the_examples_of_its_own_set(tmp_path, trained_items):
    """The examples handed to each head's trainer in `likra train` are those of the builder its data names."""
    manifest = train(tmp_path, HEADS, "--negative-seed", "3")
    tokenizer, records = train_records()
    want = {
        "positive": positive_pairs(records),
        "near": near_miss(records, 3),
        "rq": random_other_question(records, 3),
    }
    for head, pairs in want.items():
        assert trained_items[head] == tokenize_answers(tokenizer, pairs), head
    assert trained_items["near"] != trained_items["rq"]
    built = manifest["head_data"]
    assert built["rq"] == {
        "kind": "negatives",
        "set": "random_question",
        "params": {"contamination": 0.0},
        "spec": "negatives:random_question",
        "seed": 3,
        "questions": 12,
        "examples": 12,
    }
    assert built["near"]["set"] == "near_miss"
    assert built["positive"] == {"kind": "gold", "spec": "gold", "questions": 12, "examples": 12}


def test_contamination_in_a_head_spec_is_applied(tmp_path, trained_items):
    manifest = train(tmp_path, "mixed=mle:negatives:near_miss?contamination=0.5")
    tokenizer, records = train_records()
    pairs, replaced = contaminate(records, near_miss(records, 0), 0.5, 0)
    assert len(replaced) == 6 and trained_items["mixed"] == tokenize_answers(tokenizer, pairs)
    assert manifest["head_data"]["mixed"]["params"] == {"per_question": "one", "contamination": 0.5}


def test_an_unknown_set_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    import likra.training.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_tokenizer", lambda *a: pytest.fail("loaded before the heads were checked"))
    args = ["train", "--model", TINY_MODEL, "--data", "arc_easy:train", "--limit", "8", "--out", str(tmp_path / "r")]
    err = one_line_error(capsys, main([*args, "--heads", "positive=mle:gold,rq=mle:negatives:banana"]))
    assert "head 'rq'" in err and "unknown negative set 'banana'" in err
    err = one_line_error(capsys, main([*args, "--negatives", "all", "--heads", "rq=mle:negatives:random_question"]))
    assert "applies to near_miss sets whose data gives no per_question, not to head(s) rq" in err
    one = "near=mle:negatives:near_miss?per_question=one"  # the head's own value: --negatives would not reach it
    err = one_line_error(capsys, main([*args, "--negatives", "all", "--heads", f"positive=mle:gold,{one}"]))
    assert err.endswith("not to head(s) near")
    for flag, value in (("--negatives", "all"), ("--negative-seed", "7")):
        err = one_line_error(capsys, main([*args, flag, value, "--heads", "positive=mle:gold"]))
        assert err == f"likra: error: {flag}: no head trains on negatives (heads: positive)"
    assert not (tmp_path / "r").exists()


def test_several_negative_sets_on_one_curve_share_the_positive_head(tmp_path):
    out = tmp_path / "curve"
    modes = "positive-w*near,positive-w*rq,base-w*near,sft"
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--heads", HEADS, "--modes", modes, "--out", str(out)]) == 0
    curve = json.loads((out / "curve.json").read_text())
    (built,) = curve["head_data"]
    assert built["near"]["set"] == "near_miss" and built["rq"]["set"] == "random_question"
    trained = curve["train"][0]
    assert set(trained) == {"positive", "near", "rq"}  # the positive head trained once, beside both sets
    points = sorted({r["examples"] for r in curve["rows"] if r["examples"]})
    for mode in modes.split(","):
        assert sorted({r["examples"] for r in curve["rows"] if r["mode"] == mode}) == points, mode
    scored = {p.name.split("-", 2)[2] for p in (out / "seed-0" / "scores").rglob("step-*.json")}
    assert scored == {"positive.json", "near.json", "rq.json"}
    report = (out / "report.md").read_text()
    assert "`near` (negatives:near_miss, 16 examples)" in report and "`rq` (negatives:random_question" in report
    assert "Precision: trained in fp32, scored in fp32." in report
    near = {r["examples"]: r["value"] for r in curve["rows"] if r["mode"] == "positive-w*near"}
    rq = {r["examples"]: r["value"] for r in curve["rows"] if r["mode"] == "positive-w*rq"}
    assert near.keys() == rq.keys()
    # the curve is named by the sets its heads trained on, not by --negative-kind's default
    assert curve["negatives"] == "+".join(built[h]["set"] for h in ("near", "rq")) == "near_miss+random_question"


@pytest.mark.parametrize(
    "flag, value", [("--negative-kind", "random_question"), ("--contamination", "0.25")], ids=["kind", "contamination"]
)
def test_the_default_pairs_settings_beside_configured_heads_are_refused(tmp_path, capsys, monkeypatch, flag, value):
    """--negative-kind and --contamination shape the default pair's negative head: beside --heads they would reach no
    head and name the curve after a set nothing trained on. One line before anything loads or is written."""
    import likra.experiments.curve as curve

    monkeypatch.setattr(curve, "load_tokenizer", lambda *a: pytest.fail("loaded before the heads were checked"))
    out = tmp_path / "curve"
    args = ["-q", "curve", *TINY_CURVE_ARGS, "--heads", HEADS, "--modes", "positive-w*rq", "--out", str(out)]
    err = one_line_error(capsys, main([*args, flag, value]))
    assert err.startswith(f"likra: error: {flag} sets the default pair") and "head's data" in err
    assert not out.exists()


def test_a_negative_pool_no_head_draws_on_is_warned_about(tmp_path, caplog, monkeypatch):
    import likra.experiments.curve as curve

    class Loaded(Exception):
        pass

    monkeypatch.setattr(curve, "load_tokenizer", lambda *a: (_ for _ in ()).throw(Loaded()))
    own = "positive=mle:gold,far=mle:negatives:other_benchmark?pool=arc_easy:validation"  # its own pool, not --'s
    for heads, warned in ((HEADS, True), ("positive=mle:gold,far=mle:negatives:other_benchmark", False), (own, True)):
        values = {"heads": heads.split(","), "modes": ["sft"], "negative_pool": "arc_easy:train", "out": str(tmp_path)}
        cfg = validate(curve.CurveConfig, values, None)
        caplog.clear()
        with pytest.raises(Loaded):
            curve.CurveRun(cfg, progress=False).run()
        assert ("--negative-pool arc_easy:train: no head draws on it (other_benchmark)" in caplog.text) == warned


def test_a_head_reused_with_other_settings_is_refused_and_other_runs_are_not(tmp_path, capsys):
    """Objective settings belong to the heads trained with them: a DPO head's checkpoints are not reused under
    another --dpo-lr, and a study without a DPO head shares the folder."""
    pytest.importorskip("trl")
    out = ["--out", str(tmp_path / "study")]
    assert main(["-q", "study", "dpo", "--dpo-lr", "0.01", *TINY_CURVE_ARGS, *out]) == 0
    record = next((tmp_path / "study").rglob("head-settings.json"))
    err = one_line_error(capsys, main(["-q", "study", "dpo", "--dpo-lr", "0.02", *TINY_CURVE_ARGS, *out]))
    assert "head trained with other settings (settings)" in err
    assert main(["-q", "study", "dpo", "--dpo-lr", "0.01", *TINY_CURVE_ARGS, *out]) == 0  # the same: reused
    assert main(["-q", "curve", *TINY_CURVE_ARGS, *out]) == 0  # no DPO head: its settings do not matter
    assert json.loads(record.read_text())["objective"] in ("mle", "dpo")


def test_a_configured_head_beside_a_studys_own_heads_is_refused(tmp_path, capsys):
    """`likra study dpo` adds a head named dpo on the Likra pair's set: configured heads are refused there (one named
    dpo trained on the study head's pairs while its records named its own), and a plan never holds two heads of
    one name or folder, whoever adds them (a plug-in's study)."""
    from likra.model.heads import HeadSpec
    from likra.objectives.settings import TrainSettings
    from likra.training.plan import plan_heads

    pytest.importorskip("trl")
    heads = "positive=mle:gold,negative=mle:negatives:near_miss,dpo=dpo:pairs:random_question"
    for study in ("dpo", "objectives"):
        out = tmp_path / study
        code = main(["-q", "study", study, *TINY_CURVE_ARGS, "--heads", heads, "--out", str(out)])
        assert one_line_error(capsys, code).startswith("likra: error: --heads: this study trains its own heads")
        assert not out.exists()
    mine, studys = HeadSpec("dpo", objective="dpo", data="pairs:random_question"), HeadSpec("dpo", objective="dpo")
    with pytest.raises(LikraError, match="the name 'dpo' is given twice \\(a study's own heads included\\)"):
        plan_heads([mine, studys], TrainSettings(), {})


def test_a_head_resumed_with_another_pool_is_refused(tmp_path, capsys):
    """--negative-pool reaches an other_benchmark head through its recipe: a head trained on one pool is not reused
    as if trained on another (its record keeps the data as resolved)."""
    heads = ["--heads", "positive=mle:gold,far=mle:negatives:other_benchmark", "--modes", "positive-w*far"]
    args = ["-q", "curve", *TINY_CURVE_ARGS, *heads, "--out", str(tmp_path / "c")]
    assert main([*args, "--negative-pool", "arc_easy:validation"]) == 0
    record = json.loads((tmp_path / "c" / "seed-0" / "far" / "head-settings.json").read_text())
    assert record["recipe"]["params"]["pool"] == "arc_easy:validation"
    assert main([*args, "--negative-pool", "arc_easy:validation"]) == 0  # the same: reused
    err = one_line_error(capsys, main([*args, "--negative-pool", "arc_challenge:validation"]))
    assert "head trained with other settings (recipe)" in err


def test_a_record_of_an_earlier_version_without_the_recipe_is_taken_as_it_is(tmp_path):
    from likra.objectives.registry import check_head_record

    record = {"objective": "mle", "data": "gold", "settings": {}, "lora": None}
    (tmp_path / "head-settings.json").write_text(json.dumps(record))
    check_head_record(tmp_path, {**record, "recipe": {"kind": "gold"}})  # no error: compared without it
    with pytest.raises(LikraError, match="other settings \\(data\\)"):
        check_head_record(tmp_path, {**record, "data": "negatives:near_miss", "recipe": {"kind": "negatives"}})


def test_the_runs_lora_and_learning_rate_that_reach_no_head_are_warned_about(caplog):
    from likra.model.heads import HeadSpec, LoraSettings
    from likra.objectives.settings import TrainSettings
    from likra.training.plan import plan_heads

    pytest.importorskip("trl")
    dpo = HeadSpec("d", objective="dpo", data="pairs:near_miss")
    mle = HeadSpec("positive", data="gold")
    changed, lora = TrainSettings(learning_rate=0.5), LoraSettings(r=4)
    unlikely = HeadSpec("u", objective="unlikelihood", data="pairs:near_miss")  # its settings: its loss's alone
    warning = "--lora-*, --learning-rate given, but every head trains with its objective's own (dpo)"
    for heads, warned in (([dpo], True), ([dpo, mle], False), ([dpo, unlikely], False)):
        caplog.clear()
        plan = plan_heads(heads, changed, {}, None, lora)
        assert (warning in caplog.text) == warned
        assert warned or "not applied" not in caplog.text  # an MLE or unlikelihood head takes the run's lr and LoRA
        assert plan.settings(dpo, changed).learning_rate == 5e-5  # the DPO head's own, either way
    caplog.clear()
    plan_heads([dpo], TrainSettings(), {}, None, LoraSettings())
    assert "not applied" not in caplog.text  # defaults left alone: nothing to warn about


def test_a_section_key_every_head_of_it_overrides_is_warned_about(caplog):
    """`--dpo-beta 0.7` beside a YAML head `settings: {beta: 0.3}`: the head's own value is applied (the head is the
    more specific), and the flag's is said not to be."""
    from likra.model.heads import HeadSpec
    from likra.objectives.dpo import DPOSettings
    from likra.objectives.settings import TrainSettings
    from likra.training.plan import plan_heads

    pytest.importorskip("trl")
    own = HeadSpec("d", objective="dpo", data="pairs:near_miss", params=(("beta", 0.3),))
    plain = HeadSpec("e", objective="dpo", data="pairs:near_miss")
    for sections in ({"dpo": {"beta": 0.7}}, {"dpo": DPOSettings(beta=0.7)}):  # as given, or validated by the CLI
        caplog.clear()
        plan = plan_heads([own], TrainSettings(), sections)
        assert plan.settings(own, TrainSettings()).beta == 0.3
        warning = "objectives.dpo: beta (--dpo-beta) given, but every dpo head sets its own (d): not applied"
        assert warning in caplog.text
        caplog.clear()
        plan = plan_heads([own, plain], TrainSettings(), sections)
        assert plan.settings(plain, TrainSettings()).beta == 0.7 and "not applied" not in caplog.text
