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
