"""The per-example worth figure: gains per example from paired rows (with intervals) or from the rows alone."""

import math

import pytest

from likra.cli import main
from likra.experiments.figures import draw_worth, worth_points


def row(mode, examples, value):
    return {"seed": 0, "examples": examples, "step": examples, "mode": mode, "metric": "acc_norm", "value": value,
            "n": 100, "ci_low": value - 0.1, "ci_high": value + 0.1}  # fmt: skip


def curve(paired=()):
    rows = [row("base", 0, 0.30)]
    for e, (sft, likra, negbase) in {8: (0.34, 0.40, 0.38), 64: (0.36, 0.50, 0.46)}.items():
        rows += [row("sft", e, sft), row("likra", e, likra), row("negbase", e, negbase)]
    return {"seeds": 1, "model": "m", "eval_data": "d", "config": {"modes": ["base", "sft", "likra", "negbase"]},
            "rows": rows, "paired": list(paired)}  # fmt: skip


def test_gain_per_example_from_values_and_from_paired_rows():
    points = worth_points(curve())
    assert [p[:2] for p in points[("sft", "base")]] == [(8, pytest.approx(0.04 / 8)), (64, pytest.approx(0.06 / 64))]
    assert points[("negbase", "base")][1][1] == pytest.approx(0.16 / 64)
    assert points[("likra", "sft")][0][1] == pytest.approx(0.06 / 8)
    assert all(math.isnan(p[2]) for pts in points.values() for p in pts)  # no paired rows: no interval claimed
    paired = [{"seed": 0, "examples": e, "a": "sft", "b": "base", "metric": "acc_norm", "diff": d, "ci_low": lo,
               "ci_high": hi} for e, d, lo, hi in ((8, 0.05, 0.01, 0.09), (64, 0.07, 0.02, 0.12))]  # fmt: skip
    points = worth_points(curve(paired))
    assert points[("sft", "base")][1] == pytest.approx((64, 0.07 / 64, 0.02 / 64, 0.12 / 64))
    fig = draw_worth(curve(paired))
    assert len(fig.axes[0].get_lines()) == 3 + 1  # three series and the zero line
    assert draw_worth({**curve(), "rows": [row("base", 0, 0.3)]}) is None


def test_likra_report_draws_the_worth_figure(tmp_path, capsys):
    from conftest import TINY_CURVE_ARGS

    out = tmp_path / "c"
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(out)]) == 0
    (out / "worth.png").unlink()
    assert main(["-q", "report", str(out)]) == 0
    assert (out / "worth.png").stat().st_size > 0 and "![worth of one example](worth.png)" in (
        out / "report.md"
    ).read_text()
