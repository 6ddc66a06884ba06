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


def draw_curves(curves: Sequence[tuple[str, dict]], metric: str, title: str, differences: bool = False):
    """A matplotlib figure: accuracy vs examples (log2 x), one line per (run, mode), CI bands, base lines;
    with `differences` (one curve holding paired rows), a second panel of the paired differences."""
    plt = _pyplot()
    with_diff = differences and len(curves) == 1 and any(r["metric"] == metric for r in paired_summary(curves[0][1]))
    fig, axes = plt.subplots(
        1, 2 if with_diff else 1, figsize=(13, 4.8) if with_diff else (7.5, 4.8), dpi=120, squeeze=False
    )
    ax = axes[0][0]
    styles = ["-", "--", ":", "-."]
    for i, (label, curve) in enumerate(curves):
        rows = summary_rows(curve, metric)
        prefix = f"{label}: " if len(curves) > 1 else ""
        for mode in [m for m in curve["config"]["modes"] if m != "base"]:
            pts = series(rows, mode)
            if not pts:
                continue
            x = [p["examples"] for p in pts]
            color = mode_color(mode)
            ax.plot(
                x,
                [p["value"] for p in pts],
                styles[i % 4],
                marker="o",
                ms=3,
                color=color,
                label=prefix + mode_label(mode),
            )
            lo, hi = [p["ci_low"] for p in pts], [p["ci_high"] for p in pts]
            if not any(math.isnan(v) for v in lo + hi):
                ax.fill_between(x, lo, hi, color=color, alpha=0.12, linewidth=0)
        base = base_row(rows)
        if base is not None:
            ax.axhline(
                base["value"],
                color="gray",
                linestyle=styles[i % 4],
                linewidth=1,
                label=prefix + f"base model ({base['value']:.3f})",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training examples (questions; one positive and one negative each)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if with_diff:
        _draw_differences(axes[0][1], curves[0][1], metric)
    fig.tight_layout()
    return fig


def paired_summary(curve: dict) -> list[dict]:
    """The paired-difference rows to show: seed means when there are several seeds, else seed 0."""
    want = "mean" if curve["seeds"] > 1 else 0
    return [r for r in curve.get("paired", []) if r["seed"] == want]


def _draw_differences(ax, curve: dict, metric: str) -> None:
    rows = [r for r in paired_summary(curve) if r["metric"] == metric]
    for a, b in dict.fromkeys((r["a"], r["b"]) for r in rows):
        pts = sorted((r["examples"], r["diff"], r["ci_low"], r["ci_high"]) for r in rows if (r["a"], r["b"]) == (a, b))
        x = [p[0] for p in pts]
        (line,) = ax.plot(x, [p[1] for p in pts], marker="o", ms=3, color=mode_color(a), label=f"{a} - {b}")
        if not any(math.isnan(p[2]) for p in pts):
            ax.fill_between(x, [p[2] for p in pts], [p[3] for p in pts], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"paired difference in {metric}")
    ax.set_title("paired differences (95% bootstrap intervals over questions)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def draw_reliability(curve: dict, metric: str = "acc_norm"):
    """Reliability diagram of every mode at the last checkpoint (seed 0): accuracy against confidence per bin."""
    plt = _pyplot()
    rows = [r for r in curve.get("calibration", []) if r["seed"] == 0 and r["metric"] == metric]
    if not rows:
        return None
    last = max(r["examples"] for r in rows)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
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
    ax.set_title(f"{curve['model']}: calibration after {last} examples ({metric} scores)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
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
):
    """Panels of lines ((x, y[, lo, hi]) points; intervals shaded), with an optional base-model line."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), dpi=120, squeeze=False)
    for ax, (panel, lines) in zip(axes[0], panels.items()):
        for label, pts in lines:
            if not pts:
                continue
            x = [p[0] for p in pts]
            (line,) = ax.plot(x, [p[1] for p in pts], marker="o", ms=3, label=label)
            if len(pts[0]) > 2 and not any(np.isnan(p[2]) for p in pts):
                ax.fill_between(x, [p[2] for p in pts], [p[3] for p in pts], color=line.get_color(), alpha=0.12, lw=0)
        if base is not None:
            ax.axhline(base, color="gray", ls="--", lw=1, label=f"base model ({base:.3f})")
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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
    """The per-example worth figure: accuracy gained per added example (percentage points) against the examples
    seen (log2 x), for positives, negatives alone and negatives on top of positives; None without such modes."""
    points = worth_points(curve, metric)
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    labels = {(a, b): label for a, b, label in WORTH_SERIES}
    for (a, b), pts in points.items():
        x = [p[0] for p in pts]
        color = mode_color(a)
        ax.plot(x, [100 * p[1] for p in pts], marker="o", ms=3, color=color, label=labels[(a, b)])
        if not any(math.isnan(p[2]) for p in pts):
            ax.fill_between(x, [100 * p[2] for p in pts], [100 * p[3] for p in pts], color=color, alpha=0.12, lw=0)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training examples")
    ax.set_ylabel(f"{metric} points gained per example")
    ax.set_title(f"What one example is worth ({curve['model']}, {curve['eval_data']})", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
