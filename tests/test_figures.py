"""Every figure likra draws, rendered at its default size and at a narrow one: titles, tick labels and legends
inside the canvas, a labelled tick at every measured example count, legends beside the data, interval bands
inside the metric's range, titles that say which interval they draw."""

from __future__ import annotations

import math

import pytest

from likra.experiments.figures import draw_curves, draw_reliability, draw_worth, interval_name, line_figure

EXAMPLES = [1, 2, 4, 8, 16, 32, 40]  # the last point is no power of 2
MODES = ["base", "sft", "likra", "negbase"]


def _curve(seeds: int) -> dict:
    """A curve.json as likra writes it, with intervals that reach past [0, 1] (as earlier versions wrote them)."""
    want = "mean" if seeds > 1 else 0
    rows, paired, calibration = [], [], []
    for metric in ("acc", "acc_norm"):
        rows.append(dict(seed=want, examples=0, step=0, mode="base", metric=metric, value=0.5, n=60, ci_low=0.4,
                         ci_high=0.6))  # fmt: skip
        for k, e in enumerate(EXAMPLES):
            for j, mode in enumerate(MODES[1:]):
                value = min(0.98, 0.3 + 0.1 * k + 0.05 * j)
                rows.append(dict(seed=want, examples=e, step=k + 1, mode=mode, metric=metric, value=value, n=60,
                                 ci_low=value - 0.6, ci_high=value + 0.6))  # fmt: skip
            for a, b in (("likra", "sft"), ("negbase", "base"), ("sft", "base")):
                paired.append(dict(seed=want, examples=e, step=k + 1, a=a, b=b, metric=metric, diff=0.02 * k,
                                   ci_low=-1.4, ci_high=1.3, n=60))  # fmt: skip
    for mode in MODES:
        bins = [dict(confidence=c / 10, accuracy=c / 12, count=5) for c in range(1, 10)]
        calibration.append(dict(seed=0, examples=40, mode=mode, metric="acc_norm", ece=0.1, brier=0.5, bins=bins))
    return {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct-with-a-long-name",
        "data": "arc-train (ARC-Easy all splits and ARC-Challenge train)",
        "eval_data": "arc_challenge:validation",
        "seeds": seeds,
        "n_eval": 60,
        "config": {"modes": MODES, "eval_limit": None, "shots": 0},
        "rows": rows,
        "paired": paired,
        "calibration": calibration,
    }


def _inside(box, canvas, slack: float = 1.0) -> bool:
    return (
        box.x0 >= canvas.x0 - slack
        and box.y0 >= canvas.y0 - slack
        and box.x1 <= canvas.x1 + slack
        and box.y1 <= canvas.y1 + slack
    )


def _check_layout(fig, bounded: dict) -> None:
    """`bounded`: axes index -> the (low, high) range its bands must stay in."""
    from matplotlib.collections import PolyCollection

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    texts = [*fig.texts, *([fig._suptitle] if fig._suptitle is not None else [])]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += ax.get_legend().get_texts() if ax.get_legend() is not None else []
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            texts += [t.label1 for t in axis.get_major_ticks() if low <= t.get_loc() <= high]
    for text in texts:
        if text.get_visible() and text.get_text().strip():
            box = text.get_window_extent(renderer)
            assert _inside(box, canvas), f"{text.get_text()[:60]!r} outside the canvas: {box} vs {canvas}"
    for i, ax in enumerate(fig.axes):
        legend = ax.get_legend()
        if legend is not None:
            assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)), "legend on data"
        if ax.get_xscale() == "log":
            measured = sorted({x for line in ax.get_lines() for x in line.get_xdata() if len(line.get_xdata()) > 2})
            labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible()]
            assert labels == [f"{x:g}" for x in measured], (labels, measured)
            boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_visible()]
            assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:])), "tick labels overlap"
        low, high = bounded.get(i, (-math.inf, math.inf))
        for band in (c for c in ax.collections if isinstance(c, PolyCollection)):
            ys = [y for path in band.get_paths() for _, y in path.vertices]
            assert ys and low <= min(ys) and max(ys) <= high, (min(ys), max(ys))


@pytest.mark.parametrize("seeds", [1, 3])
@pytest.mark.parametrize("narrow", [False, True])
def test_every_figure_reads_well(seeds, narrow):
    import matplotlib.pyplot as plt

    curve = _curve(seeds)
    title = "a long title " * 12
    figures = {
        "curve": (draw_curves([("", curve)], "acc_norm", title, differences=True), {0: (0, 1), 1: (-1, 1)}),
        "plot": (draw_curves([("one", curve), ("two", curve)], "acc", title), {0: (0, 1)}),
        "worth": (draw_worth(curve), {}),
        "calibration": (draw_reliability(curve), {}),
        "study": (
            line_figure({"a": [("x", [(e, 0.5, -0.2, 1.3) for e in EXAMPLES])]}, 0.4, title, "examples"),
            {0: (0, 1)},
        ),  # fmt: skip
    }
    from likra.experiments.studies.likelihood import ANSWER_KINDS, LikelihoodStudy

    kinds = {k: [-1.0 - i - 0.1 * j for j in range(20)] for i, k in enumerate(ANSWER_KINDS)}
    per_token = {"base": kinds, "positive": kinds, "negative": kinds}
    result = {"model": curve["model"], "eval_data": curve["eval_data"], "last_step": 40, "per_token": per_token}
    figures["likelihood"] = (LikelihoodStudy().figure(result), {})
    for name, (fig, bounded) in figures.items():
        if narrow:  # 0.6 of its width: a figure in a column of a paper or a narrow window
            width, height = fig.get_size_inches()
            fig.set_size_inches(0.6 * width, height)
        _check_layout(fig, bounded)
        if name in ("curve", "worth"):
            said = " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
            assert interval_name(curve, paired=name == "worth") in said
        plt.close(fig)


def test_the_worth_figure_and_the_report_table_share_one_unit():
    from likra.experiments.figures import summary_rows
    from likra.experiments.report import worth_table

    curve = {**_curve(1), "paired": []}  # the figure then draws the same differences of values as the table
    fig = draw_worth(curve)
    drawn = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    table = worth_table(summary_rows(curve, "acc_norm"))
    assert drawn["a positive example (SFT - base)"] == pytest.approx([r["sft_gain"] for r in table], rel=1e-12)
    assert drawn["a negative example alone (Base-Likra - base)"] == pytest.approx([r["negbase_gain"] for r in table])
    assert "fraction" in fig.axes[0].get_ylabel()


def test_plot_says_when_curves_were_evaluated_on_different_questions(tmp_path, caplog):
    import json

    from likra.cli import main

    whole, first = _curve(1), {**_curve(1), "n_eval": 30}
    first["config"] = {**first["config"], "eval_limit": 30}
    for name, curve in (("a.json", whole), ("b.json", whole), ("c.json", first)):
        (tmp_path / name).write_text(json.dumps(curve))
    with caplog.at_level("WARNING"):
        assert (
            main(["-q", "plot", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "same")])
            == 0
        )
    assert "different question sets" not in caplog.text
    argv = ["-q", "plot", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--labels", "all,part"]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "mixed")]) == 0
    warning = [r.getMessage() for r in caplog.records if "different question sets" in r.getMessage()]
    assert len(warning) == 1 and "\n" not in warning[0]
    assert "all: arc_challenge:validation, 60 questions" in warning[0]
    assert "part: arc_challenge:validation, the first 30 questions" in warning[0]
    assert (tmp_path / "mixed.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_states_the_weight_and_the_shots():
    """report.md says, where it describes the evaluation data, how many shots preceded each question (and from
    where) and the weight w its weighted modes scored with; a curve with no weighted mode names no w."""
    from likra.experiments.report import markdown_report

    curve = _curve(1)
    curve["config"] = {**curve["config"], "weight": 0.25, "shots": 3, "fewshot_data": "arc_easy:train"}
    text = markdown_report(curve)
    assert "(60 questions, 3-shot from `arc_easy:train`), 1 seed(s). Weight w = 0.25 in likra, negbase." in text
    plain = {**_curve(1), "config": {"modes": ["base", "sft"], "shots": 0, "weight": 0.25}}
    text = markdown_report(plain)
    assert "(60 questions, 0-shot), 1 seed(s). Intervals:" in text and "Weight w" not in text
    expression = {**_curve(3), "config": {"modes": ["base", "positive-w*near", "positive"], "weight": 2}}
    assert "(60 questions, 0-shot), 3 seed(s). Weight w = 2.0 in positive-w*near. Values" in markdown_report(expression)
