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
    draw_reliability,
    draw_worth,
    fmt,
    paired_summary,
    save_figure,
    series,
    summary_rows,
)
from likra.experiments.folder import CurveFolder, read_curve, read_json
from likra.io import atomic_write_json, atomic_write_text
from likra.scoring.stats import length_rule_warnings


def _significant(paired: Sequence[dict], a: str, b: str, e: int) -> bool | None:
    """Whether the paired interval of a - b at e excludes zero (None when the curve has no such row)."""
    row = next((r for r in paired if (r["a"], r["b"], r["examples"]) == (a, b, e)), None)
    if row is None or row["ci_low"] != row["ci_low"]:
        return None
    return row["ci_low"] > 0 or row["ci_high"] < 0


RANDOM_WEIGHTS_NOTE = (
    "**Random weights** (`random:<shape>`): these numbers measure the pipeline and its speed, not a model."
)


def worth_table(rows: Sequence[dict], paired: Sequence[dict] = ()) -> list[dict]:
    """Per point e: accuracy gained per added example, from the base model and per interval.

    sft_gain = (sft(e) - base)/e: what one positive example adds; negbase_gain = (negbase(e) - base)/e:
    what one negative example adds alone; likra_over_sft = (likra(e) - sft(e))/e: what one negative
    adds on top of the positives; ratios compare the negative's worth with the positive's. With `paired`
    rows (same metric), a ratio is given only where both gains' paired intervals exclude zero; otherwise it
    is "- (n.s.)"."""
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
        for key, ratio, pair in (
            ("negbase_gain", "negbase_ratio", ("negbase", "base")),
            ("likra_over_sft", "likra_vs_sft_ratio", ("likra", "sft")),
        ):
            if key in row and row["sft_gain"] > 0:  # a ratio to a non-positive SFT gain means nothing
                significant = [_significant(paired, "sft", "base", e), _significant(paired, *pair, e)]
                if None in significant or all(significant):
                    row[ratio] = row[key] / row["sft_gain"]
                else:
                    row[ratio] = "- (n.s.)"
        out.append(row)
        previous = e
    return out


def heads_line(curve: dict) -> str | None:
    """The heads a curve trained, each with its data as built (seed 0's), e.g. `positive` (gold, 2048 examples);
    None for curves of earlier versions (they did not record it)."""
    built = (curve.get("head_data") or [{}])[0]
    if not built:
        return None
    return "; ".join(
        f"`{name}` ({d.get('spec', d.get('kind'))}, {d.get('examples')} examples)" for name, d in built.items()
    )


def precision_line(curve: dict) -> str | None:
    precision = curve.get("precision")
    if not precision:
        return None
    note = f" ({precision['note']})" if precision.get("note") else ""
    return f"trained in {precision.get('train')}, scored in {precision.get('score')}{note}"


def interval_sentence(curve: dict) -> str:
    """What the curve's intervals are, in one sentence (report and figures say the same)."""
    if curve["seeds"] == 1:
        return "Intervals: Wilson 95% over questions (one seed: the variation between seeds is not measured)."
    return (
        f"Values are means over the {curve['seeds']} seeds; intervals: 95% over seeds and questions (both sources of "
        "variation, from a two-way analysis of variance with Satterthwaite's degrees of freedom, on the logit scale)."
    )


def shots_phrase(curve: dict) -> str:
    """How many worked examples preceded each evaluation question, e.g. `0-shot`, `5-shot from `arc_easy:train``."""
    config = curve.get("config", {})
    shots = config.get("shots") or 0
    source = config.get("fewshot_data")
    return f"{shots}-shot" + (f" from `{source}`" if shots and source else "")


def weight_sentence(curve: dict) -> str | None:
    """The weight w the curve's weighted modes (likra, negbase, expressions with `w*`) scored with, e.g.
    `Weight w = 0.5 in likra, negbase.`; None when no mode of the curve weighs a head."""
    from likra.scoring.modes import get_mode

    config = curve.get("config", {})
    weighted, unknown = [], []
    for mode in config.get("modes", []):
        try:
            if get_mode(mode).weighted:
                weighted.append(mode)
        except LikraError:  # a plug-in's mode not loaded here: it may use w
            unknown.append(mode)
    weight = config.get("weight", 1.0)
    weight = str(float(weight)) if isinstance(weight, (int, float)) and not isinstance(weight, bool) else str(weight)
    if weighted:
        return f"Weight w = {weight} in {', '.join(weighted)}."
    if unknown:
        return f"Weight w = {weight} (in those of {', '.join(unknown)} that weigh a head)."
    return None


def markdown_report(curve: dict, figure_name: str = "curve.png") -> str:
    heads, precision, weight = heads_line(curve), precision_line(curve), weight_sentence(curve)
    lines = [
        f"# Likra learning curve: {curve['model']}",
        "",
        *([RANDOM_WEIGHTS_NOTE, ""] if curve.get("random_weights") else []),
        f"Trained on `{curve['data']}`, evaluated on `{curve['eval_data']}` ({curve['n_eval']} questions, "
        f"{shots_phrase(curve)}), {curve['seeds']} seed(s). {weight + ' ' if weight else ''}{interval_sentence(curve)}",
        "",
        *([f"Note: {curve['seed_note']}.", ""] if curve.get("seed_note") and curve["seeds"] > 1 else []),
        *([f"Heads: {heads}.", ""] if heads else []),
        *([f"Precision: {precision}.", ""] if precision else []),
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
    worth = worth_table(
        summary_rows(curve, "acc_norm"), [r for r in paired_summary(curve) if r["metric"] == "acc_norm"]
    )
    if worth:
        lines += [
            "## Worth of one example (acc_norm)",
            "",
            "Accuracy gained per added example. `sft_gain` = (SFT - base)/e per positive example, "
            "`negbase_gain` = (Base-Likra - base)/e per negative example alone, `likra_over_sft` = "
            "(Likra - SFT)/e per negative example on top of the positives; ratios divide by `sft_gain` where "
            "SFT gained anything (the paper's claim: about 10x below 128 examples), and only where both gains' "
            "paired 95% intervals exclude zero (else `- (n.s.)`: not significant). Slopes are per interval.",
            "",
            "![worth of one example](worth.png)",
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
    return "\n".join(lines + statistics_sections(curve))


def statistics_sections(curve: dict) -> list[str]:
    """Paired differences, trivial baselines (with warnings) and calibration, when the curve has them."""
    lines = []
    paired = paired_summary(curve)
    if paired:
        pairs = list(dict.fromkeys((r["a"], r["b"]) for r in paired))
        lines += [
            "## Paired differences",
            "",
            (
                "Mean per-question difference on the same questions, with a paired bootstrap 95% interval over "
                f"questions ({curve['config'].get('bootstrap', 10000)} seeded resamples) and McNemar's exact p-value."
                if curve["seeds"] == 1
                else "Mean per-question difference on the same questions over every seed, with a 95% interval over "
                "seeds and questions, paired question by question within each seed (no p-value across seeds: an "
                "interval that excludes 0 is the test)."
            ),
            "",
        ]
        for metric in ("acc_norm", "acc"):
            lines += [
                f"| {metric}: examples | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |",
                "|---|" + "---|" * len(pairs),
            ]
            for e in sorted({r["examples"] for r in paired}):
                cells = []
                for a, b in pairs:
                    r = next(
                        (r for r in paired if (r["a"], r["b"], r["examples"], r["metric"]) == (a, b, e, metric)), None
                    )
                    p = f" p={r['p_mcnemar']:.2g}" if r is not None and "p_mcnemar" in r else ""
                    cells.append("-" if r is None else f"{r['diff']:+.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]{p}")
                lines.append(f"| {e} | " + " | ".join(cells) + " |")
            lines.append("")
    baselines = curve.get("baselines")
    if baselines:
        lines += [
            "## Trivial baselines",
            "",
            "What a rule with no model scores on the same questions (acc = acc_norm for these rules; ties shared).",
            "",
            "| rule | accuracy | 95% CI |",
            "|---|---|---|",
        ]
        for rule, b in baselines.items():
            lines.append(
                f"| {rule.replace('_', ' by ')} | {b['value']:.3f} | [{b['ci_low']:.3f}, {b['ci_high']:.3f}] |"
            )
        rows = summary_rows(curve, "acc_norm")
        last = max((r["examples"] for r in rows), default=0)
        metrics = {r["mode"]: {"acc_norm": r} for r in rows if r["examples"] == last}
        lines.append("")
        for warning in length_rule_warnings(metrics, baselines):
            lines += [f"**Warning:** {warning}.", ""]
    calib = [r for r in curve.get("calibration", []) if r["seed"] == 0]
    if calib:
        last = max(r["examples"] for r in calib)
        lines += [
            "## Calibration",
            "",
            f"After {last} examples (seed 0): a softmax over each question's choice scores "
            "(summed, or length-normalised for acc_norm) as the probability of each choice; expected calibration "
            "error of the top choice (15 bins) and multi-class Brier score.",
            "",
            "![reliability diagram](calibration.png)",
            "",
            "| mode | ECE (summed) | Brier (summed) | ECE (normalised) | Brier (normalised) |",
            "|---|---|---|---|---|",
        ]
        for mode in dict.fromkeys(r["mode"] for r in calib):
            by = {r["metric"]: r for r in calib if r["mode"] == mode and r["examples"] == last}
            if {"acc", "acc_norm"} <= set(by):
                lines.append(
                    f"| {mode} | {by['acc']['ece']:.3f} | {by['acc']['brier']:.3f} | "
                    f"{by['acc_norm']['ece']:.3f} | {by['acc_norm']['brier']:.3f} |"
                )
        lines.append("")
    return lines


def paired_csv(curve: dict) -> str:
    import csv
    import io

    columns = ("seed", "examples", "step", "a", "b", "metric", "diff", "ci_low", "ci_high", "p_mcnemar", "n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in curve.get("paired", []):
        writer.writerow({k: row.get(k, "") for k in columns})
    return buf.getvalue()


def curve_summary(curve: dict) -> list[str]:
    """A few plain-text lines for the end of a curve (report.md has the tables): what was run and, per
    metric, every mode at the last checkpoint next to the base model, with their 95% intervals."""
    seeds = curve["seeds"]
    trained = heads_line(curve) or f"{curve.get('negatives', 'near_miss')} negatives"
    lines = [
        f"{curve['model']} trained on {curve['data']} ({trained}), "
        f"evaluated on {curve['eval_data']}: {curve['n_eval']} questions, {seeds} seed{'s' if seeds > 1 else ''}",
        *([f"note: {curve['seed_note']}"] if curve.get("seed_note") else []),
    ]
    for metric in ("acc_norm", "acc"):
        rows = summary_rows(curve, metric)
        trained = [r for r in rows if r["examples"] > 0 and r["mode"] != "base"]
        if not trained:
            continue
        last = max(r["examples"] for r in trained)
        cells = [
            f"{r['mode']} {r['value']:.3f} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"
            for r in trained
            if r["examples"] == last
        ]
        base = base_row(rows)
        if base is not None:
            cells.append(f"base model {base['value']:.3f}")
        lines.append(f"{metric} after {last} examples: " + ", ".join(cells))
    return lines


def write_outputs(curve: dict, folder: CurveFolder) -> list[Path]:
    """curve.json, curve.csv, curve-paired.csv, curve.png/svg (acc_norm, with the paired differences),
    calibration.png/svg, worth.png/svg and report.md, where the curve folder puts them."""
    atomic_write_json(folder.curve_file, curve)
    atomic_write_text(folder.csv_file, curve_csv(curve))
    paths = [folder.curve_file, folder.csv_file]
    if curve.get("paired"):
        atomic_write_text(folder.paired_csv_file, paired_csv(curve))
        paths.append(folder.paired_csv_file)
    fig = draw_curves([("", curve)], "acc_norm", curve_title(curve, "acc_norm"), differences=True)
    paths += save_figure(fig, folder.figure_stem("curve"))
    reliability = draw_reliability(curve)
    if reliability is not None:
        paths += save_figure(reliability, folder.figure_stem("calibration"))
    paths += folder_figures(folder, curve)
    atomic_write_text(folder.report_file, markdown_report(curve))
    return paths + [folder.report_file]


def folder_report(folder: CurveFolder, curve: dict | None = None) -> str:
    """report.md for a curve folder: the curve (`curve`, read from the folder where not given and written) and a
    section for every study found there."""
    from likra.experiments.studies import STUDIES

    parts = []
    if curve is None and folder.curve_file.is_file():
        curve = read_curve(folder.curve_file)
    if curve is not None:
        parts.append(markdown_report(curve))
    for name, study in STUDIES.items():
        path = folder.study_file(name)
        if path.is_file():
            lines = [f"## Study: {name}", "", f"![{name}]({folder.study_stem(name).name}.png)", ""]
            parts.append("\n".join(lines + study.report(read_json(path)) + [""]))
    if not parts:
        raise LikraError(f"{folder.root}: no curve.json or study-*.json to report")
    return "\n".join(parts)


def folder_figures(folder: CurveFolder, curve: dict | None = None) -> list[Path]:
    """The figures report.md links that `likra report` draws again from curve.json (today: worth.png)."""
    if curve is None:
        curve = read_curve(folder.curve_file) if folder.curve_file.is_file() else None
    worth = draw_worth(curve) if curve is not None else None
    return save_figure(worth, folder.figure_stem("worth")) if worth is not None else []


def write_folder_report(folder: CurveFolder) -> list[Path]:
    """`likra report`: the figures again and report.md of the whole folder."""
    curve = read_curve(folder.curve_file) if folder.curve_file.is_file() else None  # read and checked once
    text = folder_report(folder, curve)
    paths = folder_figures(folder, curve)
    atomic_write_text(folder.report_file, text)
    return [*paths, folder.report_file]
