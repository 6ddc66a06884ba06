"""Curve outputs: CSV, figure (PNG + SVG), and a markdown report with the worth-of-one-example table."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

from likra.io import atomic_write_bytes, atomic_write_text

CSV_COLUMNS = ("seed", "examples", "step", "mode", "metric", "value", "n", "ci_low", "ci_high")
MODE_LABELS = {"sft": "SFT (positive head)", "likra": "Likra (pos - neg)", "negbase": "Base-Likra (base - neg)",
               "pos_base": "pos - base", "base": "base model"}
MODE_COLORS = {"sft": "tab:blue", "likra": "tab:red", "negbase": "tab:green", "pos_base": "tab:purple"}


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


def draw_curves(curves: Sequence[tuple[str, dict]], metric: str, title: str):
    """A matplotlib figure: accuracy vs examples (log2 x), one line per (run, mode), CI bands, base lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    styles = ["-", "--", ":", "-."]
    for i, (label, curve) in enumerate(curves):
        rows = summary_rows(curve, metric)
        prefix = f"{label}: " if len(curves) > 1 else ""
        for mode in [m for m in curve["config"]["modes"] if m != "base"]:
            pts = series(rows, mode)
            if not pts:
                continue
            x = [p["examples"] for p in pts]
            color = MODE_COLORS.get(mode)
            ax.plot(x, [p["value"] for p in pts], styles[i % 4], marker="o", ms=3, color=color,
                    label=prefix + MODE_LABELS.get(mode, mode))
            lo, hi = [p["ci_low"] for p in pts], [p["ci_high"] for p in pts]
            if not any(math.isnan(v) for v in lo + hi):
                ax.fill_between(x, lo, hi, color=color, alpha=0.12, linewidth=0)
        base = base_row(rows)
        if base is not None:
            ax.axhline(base["value"], color="gray", linestyle=styles[i % 4], linewidth=1,
                       label=prefix + f"base model ({base['value']:.3f})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training examples (questions; one positive and one negative each)")
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
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


def worth_table(rows: Sequence[dict]) -> list[dict]:
    """Per point e: accuracy gained per added example, from the base model and per interval.

    sft_gain = (sft(e) - base)/e: what one positive example adds; negbase_gain = (negbase(e) - base)/e:
    what one negative example adds alone; likra_over_sft = (likra(e) - sft(e))/e: what one negative
    adds on top of the positives; ratios compare the negative's worth with the positive's."""
    base = base_row(rows)
    if base is None:
        return []
    by_mode = {m: {r["examples"]: r["value"] for r in series(rows, m)} for m in ("sft", "likra", "negbase")}
    points = sorted(by_mode["sft"])
    out, previous = [], None
    for e in points:
        sft, likra, negbase = by_mode["sft"].get(e), by_mode["likra"].get(e), by_mode["negbase"].get(e)
        row = {"examples": e, "sft_gain": (sft - base["value"]) / e}
        if negbase is not None:
            row["negbase_gain"] = (negbase - base["value"]) / e
        if likra is not None:
            row["likra_over_sft"] = (likra - sft) / e
        if previous is not None:
            de = e - previous
            row["interval"] = f"{previous}-{e}"
            row["sft_slope"] = (sft - by_mode["sft"][previous]) / de
            if negbase is not None and previous in by_mode["negbase"]:
                row["negbase_slope"] = (negbase - by_mode["negbase"][previous]) / de
            if likra is not None and previous in by_mode["likra"]:
                row["likra_slope"] = (likra - by_mode["likra"][previous]) / de
        for key in ("negbase_gain", "likra_over_sft"):
            if key in row and row["sft_gain"] > 0:  # a ratio to a non-positive SFT gain means nothing
                row[key.replace("_gain", "").replace("_over_sft", "_vs_sft") + "_ratio"] = row[key] / row["sft_gain"]
        out.append(row)
        previous = e
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:+.2e}" if abs(v) < 0.01 and v != 0 else f"{v:.3f}"
    return str(v)


def markdown_report(curve: dict, figure_name: str = "curve.png") -> str:
    lines = [f"# Likra learning curve: {curve['model']}", "",
             f"Trained on `{curve['data']}`, evaluated on `{curve['eval_data']}` ({curve['n_eval']} questions), "
             f"{curve['seeds']} seed(s). Intervals: 95% normal intervals over questions (one seed) or over seeds.", "",
             f"![learning curve]({figure_name})", ""]
    for metric in ("acc_norm", "acc"):
        rows = summary_rows(curve, metric)
        modes = [m for m in curve["config"]["modes"] if m != "base"]
        lines += [f"## {metric}", "", "| examples | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
        base = base_row(rows)
        if base is not None:
            lines.append(f"| 0 (base model) | {base['value']:.3f} [{base['ci_low']:.3f}, {base['ci_high']:.3f}]"
                         + " | -" * (len(modes) - 1) + " |")
        for e in sorted({r["examples"] for r in rows if r["examples"] > 0}):
            cells = []
            for m in modes:
                r = next((r for r in rows if r["mode"] == m and r["examples"] == e), None)
                cells.append("-" if r is None else f"{r['value']:.3f} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    worth = worth_table(summary_rows(curve, "acc_norm"))
    if worth:
        lines += ["## Worth of one example (acc_norm)", "",
                  "Accuracy gained per added example. `sft_gain` = (SFT - base)/e per positive example, "
                  "`negbase_gain` = (Base-Likra - base)/e per negative example alone, `likra_over_sft` = "
                  "(Likra - SFT)/e per negative example on top of the positives; ratios divide by `sft_gain` where "
                  "SFT gained anything (the paper's claim: about 10x below 128 examples). Slopes are per interval.", "",
                  "| e | sft_gain | negbase_gain | negbase/sft | likra_over_sft | likra/sft | interval | sft_slope | negbase_slope | likra_slope |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for w in worth:
            lines.append("| " + " | ".join(_fmt(w.get(k)) for k in (
                "examples", "sft_gain", "negbase_gain", "negbase_ratio", "likra_over_sft", "likra_vs_sft_ratio",
                "interval", "sft_slope", "negbase_slope", "likra_slope")) + " |")
        lines.append("")
    return "\n".join(lines)


def write_outputs(curve: dict, out: Path) -> list[Path]:
    """curve.json, curve.csv, curve.png, curve.svg (acc_norm) and report.md in `out`."""
    from likra.io import atomic_write_json

    atomic_write_json(out / "curve.json", curve)
    atomic_write_text(out / "curve.csv", curve_csv(curve))
    paths = [out / "curve.json", out / "curve.csv"]
    paths += save_figure(draw_curves([("", curve)], "acc_norm", curve_title(curve, "acc_norm")), out / "curve")
    atomic_write_text(out / "report.md", markdown_report(curve))
    return paths + [out / "report.md"]


def _study_section(name: str, study: dict) -> list[str]:
    lines = [f"## Study: {name}", "", f"![{name}](study-{name}.png)", ""]
    if name in ("negatives", "contamination"):
        lines += [f"| {study['by']} | examples | Likra | Base-Likra | SFT |", "|---|---|---|---|---|"]
        for label, curve in study["curves"].items():
            rows = summary_rows(curve, "acc_norm")
            for e in sorted({r["examples"] for r in rows if r["examples"] > 0}):
                get = {r["mode"]: r["value"] for r in rows if r["examples"] == e}
                lines.append(f"| {label} | {e} | {_fmt(get.get('likra'))} | {_fmt(get.get('negbase'))} | {_fmt(get.get('sft'))} |")
    elif name == "weight":
        lines += [f"w tuned on `{study['tune_data']}`, reported on `{study['eval_data']}` (acc_norm).", "",
                  "| seed | examples | mode | chosen w | test acc at chosen w | test acc at w=1 |", "|---|---|---|---|---|---|"]
        for r in study["rows"]:
            lines.append(f"| {r['seed']} | {r['examples']} | {r['mode']} | {r['chosen_weight']:g} | "
                         f"{_fmt(r['test_at_chosen'])} | {_fmt(r['test_at_1'])} |")
    elif name == "dpo":
        rows = [r for r in study["rows"] if r["metric"] == "acc_norm" and r["seed"] == 0]
        lines += ["| examples | DPO (log p_dpo) | DPO (log p_dpo - log p_base) |", "|---|---|---|"]
        for e in sorted({r["examples"] for r in rows}):
            get = {r["mode"]: r["value"] for r in rows if r["examples"] == e}
            lines.append(f"| {e} | {_fmt(get.get('dpo'))} | {_fmt(get.get('dpo_base'))} |")
    elif name == "likelihood":
        lines += ["Mean answer log-likelihood per token:", "", "| head | correct | near-miss | implausible |", "|---|---|---|---|"]
        for head, means in study["means"].items():
            lines.append(f"| {head} | {means['correct']:.3f} | {means['near_miss']:.3f} | {means['implausible']:.3f} |")
        lines += ["", "Summary (shifts from the base model, nats per token): "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in study["summary"].items())]
    return lines + [""]


STUDIES = ("negatives", "contamination", "weight", "dpo", "likelihood")


def folder_report(folder: Path) -> str:
    """report.md for a curve folder: the curve (if written) and every study found there."""
    import json

    folder = Path(folder)
    parts = []
    if (folder / "curve.json").is_file():
        parts.append(markdown_report(json.loads((folder / "curve.json").read_text())))
    for name in STUDIES:
        path = folder / f"study-{name}.json"
        if path.is_file():
            parts.append("\n".join(_study_section(name, json.loads(path.read_text()))))
    if not parts:
        from likra.errors import LikraError

        raise LikraError(f"{folder}: no curve.json or study-*.json to report")
    return "\n".join(parts)
