"""Property-based tests (hypothesis): generated JSONL records and numeric options give either a result or
exit 2 with one line, never a traceback, never NaN in an output."""

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from likra.cli import build_parser, main
from likra.config import check, config_from_args
from likra.data.records import read_jsonl
from likra.errors import LikraError
from likra.experiments.curve import CurveConfig

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=True), texts)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=6)
records = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(texts, st.integers(0, 3), values),
        "prompt": st.one_of(texts, values),
        "choices": st.one_of(st.lists(texts, max_size=5), values),
        "gold": st.one_of(st.integers(-1, 5), values),
        "extra": values,
    },
)
lines = st.one_of(records.map(json.dumps), st.text(max_size=20), st.just(""))


def one_line(e: LikraError) -> bool:
    return "\n" not in str(e) and bool(str(e))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, min_size=0, max_size=6))
def test_jsonl_reader_returns_valid_records_or_one_line_error(rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.jsonl"
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        try:
            out = read_jsonl(path)
        except LikraError as e:
            assert one_line(e) and str(e).startswith(str(path))
            return
    assert out and len({r.id for r in out}) == len(out)
    for rec in out:
        assert len(rec.choices) >= 2 and 0 <= rec.gold < len(rec.choices)
        assert all(c.strip() for c in rec.choices) and isinstance(rec.prompt, str)


numbers = st.one_of(
    st.integers(-5, 3000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e-3", "0", "-0", "abc", "", "1.5", "none"]),
)
OPTIONS = [
    "--batch-size",
    "--lr",
    "--epochs",
    "--limit",
    "--weight",
    "--shots",
    "--lora-r",
    "--contamination",
    "--seeds",
    "--eval-limit",
    "--points",
    "--lora-dropout",
    "--batch-tokens",
]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(OPTIONS), numbers, max_size=4))
def test_numeric_options_give_a_checked_config_or_one_line_error(options):
    argv = ["curve"] + [f"{k}={v}" for k, v in options.items()]
    try:
        cfg = config_from_args(CurveConfig, build_parser(argv).parse_args(argv))
    except LikraError as e:
        assert one_line(e)
        return
    check(cfg)
    assert cfg.train.batch_size >= 1 and cfg.train.learning_rate > 0 and cfg.train.epochs > 0
    assert 0 <= cfg.contamination <= 1 and cfg.shots >= 0 and cfg.seeds >= 1 and cfg.lora.r >= 1
    assert math.isfinite(cfg.weight) and math.isfinite(cfg.train.learning_rate)
    assert cfg.limit is None or cfg.limit >= 1


def no_nan(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} in an output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prop-eval")


mc_record = st.fixed_dictionaries(
    {
        "prompt": st.text(alphabet="abc ?\n", min_size=0, max_size=30),
        "choices": st.lists(st.text(alphabet="xyz ", min_size=0, max_size=6), min_size=1, max_size=4),
        "gold": st.integers(-1, 4),
    }
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(mc_record, min_size=1, max_size=4), limit=numbers, weight=numbers)
def test_eval_gives_finite_results_or_one_line_error(eval_dir, capsys, rows, limit, weight):
    data = eval_dir / "gen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = eval_dir / "res.json"
    out.unlink(missing_ok=True)
    capsys.readouterr()
    code = main(
        [
            "-q",
            "eval",
            "--model",
            "random-tiny",
            "--data",
            str(data),
            f"--limit={limit}",
            f"--weight={weight}",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    if code == 2:
        assert err.startswith("likra: error: ") and "\n" not in err, err
        assert not out.exists()
        return
    assert code == 0, err
    result = no_nan(out.read_text())
    assert all(m["acc"]["n"] >= 1 for m in result["metrics"].values())


# -- hostile files and expressions: nesting depth, lone surrogates, coefficients that overflow ---------------
@settings(max_examples=60, deadline=None)
@given(
    depth=st.one_of(st.integers(0, 130), st.integers(900, 1100), st.just(200_000)),
    opener=st.sampled_from(["[", '{"k": ']),
    field=st.sampled_from(["prompt", "extra", "choices"]),
)
def test_nesting_depth_gives_records_or_one_line_error(depth, opener, field):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    line = json.dumps({"prompt": "Q?", "choices": ["a", "b"], "gold": 0, field: "__X__"}).replace('"__X__"', nested)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "deep.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        try:
            out = read_jsonl(path)
        except LikraError as e:
            assert one_line(e) and str(e).startswith(f"{path}:1: ")
            assert depth < 100 or "nested deeper than 100 levels" in str(e)
            return
    assert field == "extra" and depth < 100 and out[0].choices == ("a", "b")


@settings(max_examples=25, deadline=None)  # a flow of 1000 brackets or more takes PyYAML's scanner half a second
@given(depth=st.one_of(st.integers(0, 130), st.sampled_from([1000, 50_000])), flow=st.booleans())
def test_yaml_nesting_gives_a_mapping_or_one_line_error(depth, flow):
    from likra.config import load_yaml

    if flow:
        text = "x: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "".join("  " * k + f"k{k}:\n" for k in range(min(depth, 500))) + "  " * min(depth, 500) + "v: 1\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            out = load_yaml(path)
        except LikraError as e:
            assert one_line(e) and str(e).startswith(str(path)) and len(str(e)) < 400
            return
    assert isinstance(out, dict) and min(depth, 500) <= 100


code_points = st.one_of(st.integers(0xD800, 0xDFFF), st.integers(0x20, 0x7E).filter(lambda c: c not in (0x22, 0x5C)))


@settings(max_examples=150, deadline=None)
@given(st.lists(code_points, min_size=1, max_size=6), st.sampled_from(["prompt", "choices", "id"]))
def test_surrogate_escapes_give_valid_text_or_one_line_error(points, field):
    escaped = "".join(f"\\u{c:04x}" for c in points)
    row = {"prompt": "Q?", "choices": ["a", "b"], "gold": 0}
    value = f'["{escaped}", "b"]' if field == "choices" else f'"{escaped}"'
    line = json.dumps({**row, field: "__X__"}).replace('"__X__"', value)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        try:
            out = read_jsonl(path)
        except LikraError as e:
            assert one_line(e) and str(e).startswith(f"{path}:1: ")
            return
    rec = out[0]
    for text in (rec.id, rec.prompt, *rec.choices):
        text.encode("utf-8")  # never a lone surrogate: a tokenizer could not encode it


coefficients = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(0, 500).map(lambda n: "9" * n + "1"),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.sampled_from(["1e6", "1000000", "1000000.0", "1000000.1", "0", "0.0", ".5", "nan", "inf"]),
)


@settings(max_examples=300, deadline=None)
@given(coefficients, st.booleans())
def test_mode_coefficients_are_finite_and_bounded_or_one_line_error(coefficient, weighted):
    from likra.scoring.modes import MAX_COEFFICIENT, get_mode

    text = f"positive-{coefficient}*{'w*' if weighted else ''}negative"
    try:
        mode = get_mode(text)
    except LikraError as e:
        assert one_line(e) and len(str(e)) < 500
        return
    assert all(math.isfinite(t.coefficient) and abs(t.coefficient) <= MAX_COEFFICIENT for t in mode.terms)
