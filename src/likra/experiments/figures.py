"""Figures and the reading of curve rows: what `likra curve`, `likra plot`, the studies and the report draw.
Labels and colours come from the mode registry."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from likra.io import atomic_write_bytes
from likra.scoring.modes import mode_color, mode_label

CSV_COLUMNS = ("seed", "examples", "step", "mode", "metric", "value", "n", "ci_low", "ci_high")


def summary_rows(curve: dict, metric: str) -> list[dict]:
    """The rows to show: seed means when there are several seeds, else seed 0."""
    want = "mean" if curve["seeds"] > 1 else 0
    return [r for r in curve["rows"] if r["seed"] == want and r["metric"] == metric]


def curve_csv(curve: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in curve["rows"]:
        writer.writerow({k: row[k] for k in CSV_COLUMNS})
    return buf.getvalue()


def series(rows: Sequence[dict], mode: str) -> list[dict]:
    return sorted((r for r in rows if r["mode"] == mode and r["examples"] > 0), key=lambda r: r["examples"])


def base_row(rows: Sequence[dict]) -> dict | None:
    return next((r for r in rows if r["mode"] == "base" and r["examples"] == 0), None)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure(columns: int, width: float, height: float):
    """A figure of `columns` panels whose layout (constrained) keeps titles, tick labels and legends inside the canvas
    at any size."""
    plt = _pyplot()
    return plt.subplots(1, columns, figsize=(width, height), dpi=120, squeeze=False, layout="constrained")


def _finish_axes(ax, xs: Sequence[int] = (), log_x: bool = True, legend: bool = True) -> None:
    """One style for every panel: on a log2 x axis a tick at every measured example count, labelled with the count;
    a grid; the legend beside the panel, outside the data."""
    if log_x:
        ax.set_xscale("log", base=2)
    if xs:
        from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

        ticks = sorted(set(xs))
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))
        ax.xaxis.set_minor_locator(NullLocator())
        close = log_x and any(b / a < 1.6 for a, b in zip(ticks, ticks[1:]) if a > 0)  # e.g. 32 and 40
        ax.tick_params(axis="x", labelsize=7, labelrotation=90 if close or len(ticks) > 10 else 0)
    ax.grid(True, alpha=0.3)
    ax.xaxis.label.set_wrap(True)
    ax.yaxis.label.set_wrap(True)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _band(ax, x, lo, hi, color, bounds: tuple[float, float] | None, alpha: float = 0.12) -> None:
    """An interval band, kept inside the metric's range `bounds`; none where an end is missing (nan)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if np.isnan(lo).any() or np.isnan(hi).any():
        return
    if bounds is not None:
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    ax.fill_between(x, lo, hi, color=color, alpha=alpha, linewidth=0)


def interval_name(curve: dict, paired: bool = False) -> str:
    """Which interval a figure of `curve` draws, for its title."""
    if curve.get("seeds", 1) > 1:
        return "95% intervals over seeds and questions"
    return "95% paired bootstrap intervals over questions" if paired else "Wilson 95% intervals over questions"


def draw_curves(curves: Sequence[tuple[str, dict]], metric: str, title: str, differences: bool = False):
    """A matplotlib figure: accuracy vs examples (log2 x), one line per (run, mode), CI bands, base lines;
    with `differences` (one curve holding paired rows), a second panel of the paired differences."""
    with_diff = differences and len(curves) == 1 and any(r["metric"] == metric for r in paired_summary(curves[0][1]))
    fig, axes = _figure(2 if with_diff else 1, 13 if with_diff else 8.5, 5.0)
    ax = axes[0][0]
    styles = ["-", "--", ":", "-."]
    xs: list[int] = []
    for i, (label, curve) in enumerate(curves):
        rows = summary_rows(curve, metric)
        prefix = f"{label}: " if len(curves) > 1 else ""
        for mode in [m for m in curve["config"]["modes"] if m != "base"]:
            pts = series(rows, mode)
            if not pts:
                continue
            x = [p["examples"] for p in pts]
            xs += x
            color = mode_color(mode)
            values = [p["value"] for p in pts]
            (line,) = ax.plot(x, values, styles[i % 4], marker="o", ms=3, color=color, label=prefix + mode_label(mode))
            _band(ax, x, [p["ci_low"] for p in pts], [p["ci_high"] for p in pts], line.get_color(), (0.0, 1.0))
        base = base_row(rows)
        if base is not None:
            ax.axhline(
                base["value"],
                color="gray",
                linestyle=styles[i % 4],
                linewidth=1,
                label=prefix + f"base model ({base['value']:.3f})",
            )
    ax.set_xlabel("training examples (questions; one positive and one negative each)", wrap=True)
    ax.set_ylabel(metric)
    ax.set_ylim(*_padded(ax.get_ylim(), 0.0, 1.0))
    ax.set_title(f"{metric} (bands: {interval_name(curves[0][1])})", fontsize=9, wrap=True)
    _finish_axes(ax, xs)
    if with_diff:
        _draw_differences(axes[0][1], curves[0][1], metric)
    fig.suptitle(title, fontsize=10, wrap=True)
    return fig


def _padded(limits: tuple[float, float], low: float, high: float) -> tuple[float, float]:
    """Axis limits kept inside [low, high] (a band clipped to the range needs no room beyond it)."""
    return max(limits[0], low - 0.02 * (high - low)), min(limits[1], high + 0.02 * (high - low))


def paired_summary(curve: dict) -> list[dict]:
    """The paired-difference rows to show: seed means when there are several seeds, else seed 0."""
    want = "mean" if curve["seeds"] > 1 else 0
    return [r for r in curve.get("paired", []) if r["seed"] == want]


def _draw_differences(ax, curve: dict, metric: str) -> None:
    rows = [r for r in paired_summary(curve) if r["metric"] == metric]
    xs: list[int] = []
    for a, b in dict.fromkeys((r["a"], r["b"]) for r in rows):
        pts = sorted((r["examples"], r["diff"], r["ci_low"], r["ci_high"]) for r in rows if (r["a"], r["b"]) == (a, b))
        x = [p[0] for p in pts]
        xs += x
        (line,) = ax.plot(x, [p[1] for p in pts], marker="o", ms=3, color=mode_color(a), label=f"{a} - {b}")
        _band(ax, x, [p[2] for p in pts], [p[3] for p in pts], line.get_color(), (-1.0, 1.0), alpha=0.15)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"paired difference in {metric}")
    ax.set_title(f"paired differences ({interval_name(curve, paired=True)})", fontsize=9, wrap=True)
    _finish_axes(ax, xs)


def draw_reliability(curve: dict, metric: str = "acc_norm"):
    """Reliability diagram of every mode at the last checkpoint (seed 0): accuracy against confidence per bin."""
    rows = [r for r in curve.get("calibration", []) if r["seed"] == 0 and r["metric"] == metric]
    if not rows:
        return None
    last = max(r["examples"] for r in rows)
    fig, axes = _figure(1, 7.5, 5.0)
    ax = axes[0][0]
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfectly calibrated")
    for r in (r for r in rows if r["examples"] == last):
        bins = [b for b in r["bins"] if b["count"]]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker="o",
            ms=3,
            color=mode_color(r["mode"]),
            label=f"{r['mode']} (ECE {r['ece']:.3f})",
        )
    ax.set_xlabel("confidence of the top choice (softmax over the choices' scores)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    title = f"{curve['model']}: calibration after {last} examples, seed 0 ({metric} scores)"
    fig.suptitle(title, fontsize=10, wrap=True)
    _finish_axes(ax, log_x=False)
    return fig


def save_figure(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        path = stem.with_suffix(f".{ext}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def question_set(curve: dict) -> str:
    """The questions a curve was evaluated on, in words: data, how many, shots (two curves are comparable point
    by point only on the same set)."""
    config = curve.get("config", {})
    shots = config.get("shots", 0)
    first = "the first " if config.get("eval_limit") else ""
    return f"{curve['eval_data']}, {first}{curve['n_eval']} questions" + (f", {shots}-shot" if shots else "")


def curve_title(curve: dict, metric: str) -> str:
    seeds = f", mean of {curve['seeds']} seeds" if curve["seeds"] > 1 else ""
    return f"{curve['model']}: trained on {curve['data']}, evaluated on {curve['eval_data']} ({metric}{seeds})"


def fmt(v) -> str:
    """A table cell: '-' for missing, 'n/a' for NaN, small numbers in scientific notation."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:+.2e}" if abs(v) < 0.01 and v != 0 else f"{v:.3f}"
    return str(v)


def baselines_line(curve: dict) -> list[str]:
    """One markdown line with the trivial baselines of a curve's evaluation questions (none for old curves)."""
    baselines = curve.get("baselines")
    if not baselines:
        return []
    rules = ", ".join(f"{rule.replace('_', ' by ')} {b['value']:.3f}" for rule, b in baselines.items())
    return ["", f"Trivial baselines on the same questions: {rules}; base model {fmt(base_value(curve))}."]


def mode_points(curve: dict, mode: str, metric: str = "acc_norm") -> list[tuple[int, float, float, float]]:
    """(examples, value, ci_low, ci_high) of one mode of a curve, trained points only."""
    rows = [r for r in summary_rows(curve, metric) if r["mode"] == mode and r["examples"] > 0]
    return sorted((r["examples"], r["value"], r["ci_low"], r["ci_high"]) for r in rows)


def base_value(curve: dict, metric: str = "acc_norm") -> float | None:
    row = base_row(summary_rows(curve, metric))
    return row["value"] if row else None


def line_figure(
    panels: dict[str, list[tuple[str, list]]],
    base: float | None,
    title: str,
    xlabel: str,
    log_x: bool = True,
    ylabel: str = "acc_norm",
    bounds: tuple[float, float] | None = (0.0, 1.0),
):
    """Panels of lines ((x, y[, lo, hi]) points; intervals shaded, kept inside `bounds`), with an optional base-model
    line; the title should say which interval the bands are."""
    fig, axes = _figure(len(panels), 5.6 * len(panels) + 1.5, 4.6)
    for ax, (panel, lines) in zip(axes[0], panels.items()):
        xs: list = []
        for label, pts in lines:
            if not pts:
                continue
            x = [p[0] for p in pts]
            xs += x
            (line,) = ax.plot(x, [p[1] for p in pts], marker="o", ms=3, label=label)
            if len(pts[0]) > 2:
                _band(ax, x, [p[2] for p in pts], [p[3] for p in pts], line.get_color(), bounds)
        if base is not None:
            ax.axhline(base, color="gray", ls="--", lw=1, label=f"base model ({base:.3f})")
        if bounds is not None:
            ax.set_ylim(*_padded(ax.get_ylim(), *bounds))
        ax.set_title(panel, fontsize=9, wrap=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        _finish_axes(ax, xs if log_x else (), log_x)
    fig.suptitle(title, fontsize=10, wrap=True)
    return fig


# What one added example is worth: (gain over the reference mode) / examples, with the paired interval / examples.
WORTH_SERIES = (
    ("sft", "base", "a positive example (SFT - base)"),
    ("negbase", "base", "a negative example alone (Base-Likra - base)"),
    ("likra", "sft", "a negative on top of the positives (Likra - SFT)"),
)


def worth_points(curve: dict, metric: str = "acc_norm") -> dict[tuple[str, str], list[tuple[int, float, float, float]]]:
    """{(mode, reference): [(examples, gain per example, low, high)]}: the paired difference and its interval
    divided by the examples seen where the curve has paired rows, else the difference of the two modes' values
    (interval nan)."""
    rows = summary_rows(curve, metric)
    paired = [r for r in paired_summary(curve) if r["metric"] == metric]
    base = base_row(rows)
    out = {}
    for a, b, _ in WORTH_SERIES:
        pts = []
        values_a = {r["examples"]: r["value"] for r in series(rows, a)}
        values_b = {r["examples"]: r["value"] for r in series(rows, b)} if b != "base" else {}
        for e in sorted(values_a):
            row = next((r for r in paired if (r["a"], r["b"], r["examples"]) == (a, b, e)), None)
            if row is not None:
                pts.append((e, row["diff"] / e, row["ci_low"] / e, row["ci_high"] / e))
            elif b == "base" and base is not None:
                pts.append((e, (values_a[e] - base["value"]) / e, math.nan, math.nan))
            elif e in values_b:
                pts.append((e, (values_a[e] - values_b[e]) / e, math.nan, math.nan))
        if pts:
            out[(a, b)] = pts
    return out


def draw_worth(curve: dict, metric: str = "acc_norm"):
    """The per-example worth figure: accuracy gained per added example (as a fraction, the unit of the report's
    table) against the examples seen (log2 x), for positives, negatives alone and negatives on top of positives;
    None without such modes."""
    points = worth_points(curve, metric)
    if not points:
        return None
    fig, axes = _figure(1, 9.0, 5.0)
    ax = axes[0][0]
    labels = {(a, b): label for a, b, label in WORTH_SERIES}
    xs: list[int] = []
    for (a, b), pts in points.items():
        x = [p[0] for p in pts]
        xs += x
        color = mode_color(a)
        (line,) = ax.plot(x, [p[1] for p in pts], marker="o", ms=3, color=color, label=labels[(a, b)])
        _band(ax, x, [p[2] for p in pts], [p[3] for p in pts], line.get_color(), None)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"{metric} gained per example (fraction)")
    ax.set_title(f"bands: {interval_name(curve, paired=True)}, divided by the examples", fontsize=9, wrap=True)
    fig.suptitle(f"What one example is worth ({curve['model']}, {curve['eval_data']})", fontsize=10, wrap=True)
    _finish_axes(ax, xs)
    return fig
