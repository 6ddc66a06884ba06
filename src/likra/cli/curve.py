"""`likra curve` (learning curves), `likra plot` (several curve.json files on one figure) and `likra compare`
(two curve folders question by question)."""

from __future__ import annotations

import argparse
from pathlib import Path

from likra.cli.common import Command, add_config_flag, add_objective_flags, config_with_objectives
from likra.errors import LikraError


def add_curve_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.experiments.curve import CurveConfig

    add_config_flag(parser)
    add_flags(parser, CurveConfig)
    add_objective_flags(parser)


def run_curve(args: argparse.Namespace) -> int:
    from likra.distributed import is_main
    from likra.experiments.curve import CurveConfig, CurveRun
    from likra.experiments.report import curve_summary, write_outputs
    from likra.model.loading import check_quantize_available

    cfg = config_with_objectives(CurveConfig, args)
    check_quantize_available(cfg.quantize)
    if cfg.lm_eval_out:
        from likra.io import check_output_folder

        check_output_folder(cfg.lm_eval_out, "--lm-eval-out")
    run = CurveRun(cfg, progress=not args.quiet)
    with run.folder.lock():
        from likra.reports.harness import seed_generators

        seed_generators()  # as the harness does: the base point's seeds in --lm-eval-out (checkpoints: training's)
        result = run.run()
        curve = result.curve
        if is_main():
            paths = write_outputs(curve, run.folder)
            if cfg.lm_eval_out:
                from likra.reports.harness import write_curve_as_harness

                paths += write_curve_as_harness(result)
    if is_main():
        print("\n".join(curve_summary(curve)))
        print(f"report: {run.folder.report_file}")
        others = [p for p in paths if p.parent == run.folder.root and p != run.folder.report_file]
        print(f"also in {run.folder.root}: " + ", ".join(p.name for p in others))
        if cfg.lm_eval_out:
            print(f"lm-eval files: {len(paths) - len(others) - 1} under {cfg.lm_eval_out}")
    return 0


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("curves", nargs="+", help="curve.json files or curve folders")
    parser.add_argument("--labels", help="comma-separated labels, one per curve (default: model names)")
    parser.add_argument(
        "--metric",
        choices=["acc", "acc_norm"],
        default="acc_norm",
        help="accuracy to draw: acc (argmax of the summed score) or acc_norm (per character) (default: acc_norm)",
    )
    parser.add_argument("--out", required=True, help="output stem or file (.png and .svg are written)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing figure files")


def run_plot(args: argparse.Namespace) -> int:
    import logging

    from likra.experiments.figures import curve_title, draw_curves, question_set, save_figure
    from likra.experiments.folder import read_curve
    from likra.io import check_output_file

    stem = Path(args.out).with_suffix("")
    for ext in (".png", ".svg"):
        check_output_file(stem.with_suffix(ext), args.overwrite)
    curves = [read_curve(c) for c in args.curves]
    labels = args.labels.split(",") if args.labels else [c["model"] for c in curves]
    if len(labels) != len(curves):
        raise LikraError(f"--labels has {len(labels)} names for {len(curves)} curves")
    sets = [question_set(c) for c in curves]
    if len(set(sets)) > 1:  # lines over different questions differ for that alone: said, and each labelled
        logging.getLogger("likra.plot").warning(
            "the curves were evaluated on different question sets (%s): compare their lines with care",
            "; ".join(f"{label}: {s}" for label, s in zip(labels, sets)),
        )
        labels = [f"{label} ({s})" for label, s in zip(labels, sets)]
    title = (
        curve_title(curves[0], args.metric)
        if len(curves) == 1
        else f"{' vs '.join(labels)} ({args.metric})"
        if len(set(sets)) > 1
        else f"{' vs '.join(labels)} on {sets[0]} ({args.metric})"
    )
    paths = save_figure(draw_curves(list(zip(labels, curves)), args.metric, title), stem)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


CURVE = Command(
    "curve",
    "learning curves: SFT vs Likra vs Base-Likra over 2^k training examples",
    add_curve_arguments,
    run_curve,
    "Train the heads once with checkpoints after 1, 2, 4, ... optimizer steps, evaluate each checkpoint "
    "in every mode, write curve.json/csv/png and report.md. Re-running the same command resumes "
    "where it stopped.",
)
PLOT = Command("plot", "draw curve.json files (several runs on one figure)", add_plot_arguments, run_plot)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="curve folder A")
    parser.add_argument("b", help="curve folder B (same evaluation questions)")
    parser.add_argument("--labels", help="two comma-separated names for A and B (default: their dtypes, else names)")
    parser.add_argument(
        "--metric",
        choices=["acc", "acc_norm"],
        default="acc_norm",
        help="accuracy to print: acc (argmax of the summed score) or acc_norm (per character); the JSON has both "
        "(default: acc_norm, as plot)",
    )
    parser.add_argument("--out", help="write the comparison (every row, both metrics) to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run_compare(args: argparse.Namespace) -> int:
    from likra.experiments.compare import compare_curves, comparison_table
    from likra.io import atomic_write_json, check_output_file

    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != 2:
        raise LikraError(f"--labels has {len(labels)} names; give two (A,B)")
    if Path(args.a).resolve() == Path(args.b).resolve():
        raise LikraError(f"{args.a}: A and B are the same folder; compare two curve folders")
    if args.out:
        check_output_file(Path(args.out), args.overwrite)
    comparison = compare_curves(args.a, args.b, labels)
    print("\n".join(comparison_table(comparison, args.metric)))
    if args.out:
        atomic_write_json(Path(args.out), comparison)
        print(f"written: {args.out}")
    return 0


COMPARE = Command(
    "compare",
    "two curve folders question by question (e.g. fp32 vs bf16): paired differences of every mode",
    add_compare_arguments,
    run_compare,
    "For every seed, checkpoint and mode the two folders share: A's and B's accuracy on the same questions, "
    "A - B with a paired bootstrap 95% interval and McNemar's exact p-value. The accuracies are recomputed "
    "from the score files and checked against each curve.json first.",
)
