"""The markdown report: a curve's tables, the worth-of-one-example table, and one section per study."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from likra.errors import LikraError
from likra.experiments.figures import (
    base_row,
    curve_csv,
    curve_title,
    draw_curves,
    fmt,
    save_figure,
    series,
    summary_rows,
)
from likra.io import atomic_write_json, atomic_write_text


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


def markdown_report(curve: dict, figure_name: str = "curve.png") -> str:
    lines = [
        f"# Likra learning curve: {curve['model']}",
        "",
        f"Trained on `{curve['data']}`, evaluated on `{curve['eval_data']}` ({curve['n_eval']} questions), "
        f"{curve['seeds']} seed(s). Intervals: 95% normal intervals over questions (one seed) or over seeds.",
        "",
        f"![learning curve]({figure_name})",
        "",
    ]
    for metric in ("acc_norm", "acc"):
        rows = summary_rows(curve, metric)
        modes = [m for m in curve["config"]["modes"] if m != "base"]
        lines += [f"## {metric}", "", "| examples | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
        base = base_row(rows)
        if base is not None:
            lines.append(
                f"| 0 (base model) | {base['value']:.3f} [{base['ci_low']:.3f}, {base['ci_high']:.3f}]"
                + " | -" * (len(modes) - 1)
                + " |"
            )
        for e in sorted({r["examples"] for r in rows if r["examples"] > 0}):
            cells = []
            for m in modes:
                r = next((r for r in rows if r["mode"] == m and r["examples"] == e), None)
                cells.append("-" if r is None else f"{r['value']:.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    worth = worth_table(summary_rows(curve, "acc_norm"))
    if worth:
        lines += [
            "## Worth of one example (acc_norm)",
            "",
            "Accuracy gained per added example. `sft_gain` = (SFT - base)/e per positive example, "
            "`negbase_gain` = (Base-Likra - base)/e per negative example alone, `likra_over_sft` = "
            "(Likra - SFT)/e per negative example on top of the positives; ratios divide by `sft_gain` where "
            "SFT gained anything (the paper's claim: about 10x below 128 examples). Slopes are per interval.",
            "",
            "| e | sft_gain | negbase_gain | negbase/sft | likra_over_sft | likra/sft | interval | sft_slope "
            "| negbase_slope | likra_slope |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for w in worth:
            lines.append(
                "| "
                + " | ".join(
                    fmt(w.get(k))
                    for k in (
                        "examples",
                        "sft_gain",
                        "negbase_gain",
                        "negbase_ratio",
                        "likra_over_sft",
                        "likra_vs_sft_ratio",
                        "interval",
                        "sft_slope",
                        "negbase_slope",
                        "likra_slope",
                    )
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def write_outputs(curve: dict, out: Path) -> list[Path]:
    """curve.json, curve.csv, curve.png, curve.svg (acc_norm) and report.md in `out`."""
    atomic_write_json(out / "curve.json", curve)
    atomic_write_text(out / "curve.csv", curve_csv(curve))
    paths = [out / "curve.json", out / "curve.csv"]
    paths += save_figure(draw_curves([("", curve)], "acc_norm", curve_title(curve, "acc_norm")), out / "curve")
    atomic_write_text(out / "report.md", markdown_report(curve))
    return paths + [out / "report.md"]


def folder_report(folder: Path) -> str:
    """report.md for a curve folder: the curve (if written) and a section for every study found there."""
    from likra.experiments.folder import CurveFolder, read_json
    from likra.experiments.studies import STUDIES

    folder = CurveFolder(folder)
    parts = []
    if (folder.root / "curve.json").is_file():
        parts.append(markdown_report(read_json(folder.root / "curve.json")))
    for name, study in STUDIES.items():
        path = folder.study_file(name)
        if path.is_file():
            lines = [f"## Study: {name}", "", f"![{name}]({folder.study_stem(name).name}.png)", ""]
            parts.append("\n".join(lines + study.report(read_json(path)) + [""]))
    if not parts:
        raise LikraError(f"{folder.root}: no curve.json or study-*.json to report")
    return "\n".join(parts)
