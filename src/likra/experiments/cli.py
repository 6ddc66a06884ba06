"""Sub-commands of the experiments: `likra curve` and `likra plot`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from likra.errors import LikraError


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _curve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with CurveConfig keys")
    p.add_argument("--model", help="hub id, local path, smollm2-135m (default) or random-tiny")
    p.add_argument("--data", help="training data spec (default arc-train)")
    p.add_argument("--eval-data", help="evaluation data spec (default arc_challenge:validation)")
    p.add_argument("--source", choices=["auto", "offline", "hub"])
    p.add_argument("--limit", type=int, help="training questions (default 2048)")
    p.add_argument("--points", type=_int_list, help="example counts to checkpoint at, e.g. 16,64,256 (default 2^k steps)")
    p.add_argument("--seeds", type=int, help="independent runs (data order, negatives, subset); mean and CI across them")
    p.add_argument("--negatives", choices=["one", "all"], help="near-miss negatives per question (default one)")
    p.add_argument("--negative-kind", help="near_miss (default), random_question, other_benchmark, hardest, easiest")
    p.add_argument("--negative-pool", help="spec of the other benchmark for --negative-kind other_benchmark")
    p.add_argument("--contamination", type=float, help="fraction of negatives replaced by correct answers")
    p.add_argument("--modes", help="comma-separated modes (default base,sft,likra,negbase)")
    p.add_argument("--weight", type=float, help="negative-head weight w")
    p.add_argument("--shots", type=int)
    p.add_argument("--fewshot-data")
    p.add_argument("--eval-limit", type=int, help="evaluate on the first N questions only")
    p.add_argument("--dtype")
    p.add_argument("--batch-tokens", type=int)
    p.add_argument("--lr", dest="learning_rate", type=float)
    p.add_argument("--batch-size", type=int, help="examples per optimizer step, over all processes (default 16)")
    p.add_argument("--lora-r", type=int)
    p.add_argument("--lora-alpha", type=int)
    p.add_argument("--out", help="curve folder (default runs/curve)")


STUDY_FLAGS = ("kinds", "rates", "tune_data", "weights", "dpo_lr", "dpo_beta", "study", "eval_data_default")


def add_experiment_parsers(sub) -> None:
    p = sub.add_parser("curve", help="learning curves: SFT vs Likra vs Base-Likra over 2^k training examples",
                       description="Train both heads once with checkpoints after 1, 2, 4, ... optimizer steps, "
                                   "evaluate each checkpoint in every mode, write curve.json/csv/png and report.md. "
                                   "Re-running the same command resumes where it stopped.")
    _curve_flags(p)
    p.set_defaults(func=cmd_curve)

    study = sub.add_parser("study", help="the paper's studies: negatives, contamination, weight, dpo, likelihood")
    kinds = study.add_subparsers(dest="study", required=True)
    p = kinds.add_parser("negatives", help="curves per kind of negative (near-miss vs implausible, hardest, easiest)")
    _curve_flags(p)
    p.add_argument("--kinds", default="near_miss,random_question,other_benchmark,hardest,easiest")
    p = kinds.add_parser("contamination", help="curves with a fraction of negatives replaced by correct answers")
    _curve_flags(p)
    p.add_argument("--rates", type=_float_list, default=[0.0, 0.1, 0.25, 0.5])
    p = kinds.add_parser("weight", help="accuracy against the negative weight w, tuned on a held-out split")
    _curve_flags(p)
    p.add_argument("--tune-data", default="arc_challenge:validation", help="held-out split w is chosen on")
    p.set_defaults(eval_data_default="arc_challenge:test")
    p.add_argument("--weights", type=_float_list, default=[round(0.1 * i, 1) for i in range(21)])
    p = kinds.add_parser("dpo", help="the DPO baseline (TRL) on the same questions and negatives")
    _curve_flags(p)
    p.add_argument("--dpo-lr", type=float, help="DPO learning rate (default 5e-5, cosine)")
    p.add_argument("--dpo-beta", type=float, help="DPO beta (default 0.1)")
    p = kinds.add_parser("likelihood", help="likelihoods of correct / near-miss / implausible answers per head")
    _curve_flags(p)
    for p in kinds.choices.values():
        p.set_defaults(func=cmd_study)

    p = sub.add_parser("report", help="one markdown report of a curve folder's curve and studies")
    p.add_argument("folder", help="a curve folder")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plot", help="draw curve.json files (several runs on one figure)")
    p.add_argument("curves", nargs="+", help="curve.json files or curve folders")
    p.add_argument("--labels", help="comma-separated labels, one per curve (default: model names)")
    p.add_argument("--metric", choices=["acc", "acc_norm"], default="acc_norm")
    p.add_argument("--out", required=True, help="output stem or file (.png and .svg are written)")
    p.set_defaults(func=cmd_plot)
    add_lmeval_parser(sub)


def cmd_study(args) -> int:
    from likra.cli import TRAIN_NESTED, config_from_args
    from likra.experiments import studies
    from likra.experiments.curve import CurveConfig

    curve_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in STUDY_FLAGS})
    cfg = config_from_args(CurveConfig, curve_args, TRAIN_NESTED)
    if getattr(args, "eval_data_default", None) and args.eval_data is None and not args.config:
        cfg.eval_data = args.eval_data_default  # the weight study reports on the test split by default
    progress = not args.quiet
    if args.study == "negatives":
        paths = studies.study_negatives(cfg, [k.strip() for k in args.kinds.split(",") if k.strip()], progress)
    elif args.study == "contamination":
        paths = studies.study_contamination(cfg, args.rates, progress)
    elif args.study == "weight":
        paths = studies.study_weight(cfg, args.tune_data, args.weights, progress)
    elif args.study == "dpo":
        from dataclasses import replace

        from likra.training.dpo import DPOSettings

        overrides = {k: v for k, v in (("learning_rate", args.dpo_lr), ("beta", args.dpo_beta)) if v is not None}
        paths = studies.study_dpo(cfg, replace(DPOSettings(), **overrides), progress)
    else:
        paths = studies.study_likelihood(cfg, progress)
    if paths:
        print("written: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_report(args) -> int:
    from likra.experiments.report import folder_report
    from likra.io import atomic_write_text

    folder = Path(args.folder)
    text = folder_report(folder)
    atomic_write_text(folder / "report.md", text)
    print(f"written: {folder / 'report.md'}")
    return 0


def cmd_curve(args) -> int:
    from likra.cli import TRAIN_NESTED, config_from_args
    from likra.experiments.curve import CurveConfig, CurveRun
    from likra.experiments.report import write_outputs

    from likra.distributed import is_main
    from likra.experiments.report import markdown_report

    cfg = config_from_args(CurveConfig, args, TRAIN_NESTED)
    curve = CurveRun(cfg, progress=not args.quiet).run()
    if is_main():
        paths = write_outputs(curve, Path(cfg.out))
        print(markdown_report(curve).split("## acc\n")[0])
        print("written: " + ", ".join(str(p) for p in paths))
    return 0


def load_curve(path: str) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "curve.json"
    if not p.is_file():
        raise LikraError(f"{p}: no such curve file")
    try:
        curve = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise LikraError(f"{p}: not valid JSON ({e.msg})") from None
    if not isinstance(curve, dict) or "rows" not in curve or "config" not in curve:
        raise LikraError(f"{p}: not a likra curve.json (no rows/config)")
    return curve


def cmd_plot(args) -> int:
    from likra.experiments.report import curve_title, draw_curves, save_figure

    curves = [load_curve(c) for c in args.curves]
    labels = args.labels.split(",") if args.labels else [c["model"] for c in curves]
    if len(labels) != len(curves):
        raise LikraError(f"--labels has {len(labels)} names for {len(curves)} curves")
    title = curve_title(curves[0], args.metric) if len(curves) == 1 else \
        f"{' vs '.join(labels)} on {curves[0]['eval_data']} ({args.metric})"
    out = Path(args.out)
    paths = save_figure(draw_curves(list(zip(labels, curves)), args.metric, title), out.with_suffix(""))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def add_lmeval_parser(sub) -> None:
    p = sub.add_parser(
        "lm-eval", help="run the stock lm-evaluation-harness with the `likra` model (extra flags go to lm-eval)",
        description="Score any lm-eval multiple-choice task in a Likra mode. Flags not listed here (--tasks, "
                    "--num_fewshot, --limit, --log_samples, --output_path, ...) are passed to lm-eval unchanged. "
                    "Offline tasks for the bundled benchmarks: likra_arc_challenge, likra_arc_easy, likra_hellaswag, "
                    "likra_winogrande, likra_openbookqa, likra_piqa, likra_socialiqa, likra_commonsense_qa, likra_mmlu.")
    p.add_argument("--run", help="run folder written by likra train")
    p.add_argument("--model", dest="base_model", help="a plain model instead of a run (mode base)")
    p.add_argument("--mode", default="likra", help="likra, negbase, sft, base or pos_base (default likra)")
    p.add_argument("--weight", type=float, default=1.0, help="negative-head weight w (default 1)")
    p.add_argument("--dtype", help="model dtype (default: the run's)")
    p.add_argument("--batch-tokens", type=int, help="token budget of one forward pass")
    p.add_argument("--source", choices=["auto", "offline", "hub"], default="auto", help="data of the likra_* tasks")
    p.set_defaults(func=cmd_lmeval)


def harness_argv(args, extra: list[str], include_path: str) -> list[str]:
    model_args = [f"mode={args.mode}", f"weight={args.weight}"]
    if args.run:
        model_args.append(f"run={args.run}")
    if args.base_model:
        model_args.append(f"model={args.base_model}")
    if args.dtype:
        model_args.append(f"dtype={args.dtype}")
    if args.batch_tokens:
        model_args.append(f"batch_tokens={args.batch_tokens}")
    return ["lm-eval", "run", "--model", "likra", "--model_args", ",".join(model_args),
            "--include_path", include_path, *extra]


def cmd_lmeval(args, extra: list[str]) -> int:
    import importlib.util
    import sys

    if importlib.util.find_spec("lm_eval") is None:
        raise LikraError("lm-eval is not installed: pip install 'likra[lmeval]' (lm-eval 0.4.x)")
    if not args.run and not args.base_model:
        raise LikraError("give --run RUN (a trained run folder) or --model MODEL (mode base)")
    if args.run:
        from likra.runs import read_manifest

        read_manifest(args.run)
    from likra.lmeval.tasks import export_requested

    tasks = next((extra[i + 1] for i, a in enumerate(extra[:-1]) if a == "--tasks"), "")
    tasks = tasks or next((a.split("=", 1)[1] for a in extra if a.startswith("--tasks=")), "")
    if not tasks:
        raise LikraError("give --tasks (e.g. likra_arc_challenge, or any lm-eval multiple-choice task)")
    folder = export_requested(tasks, source=args.source)
    import likra.lmeval.model  # noqa: F401  (registers the `likra` model with lm-eval)
    from lm_eval._cli import HarnessCLI

    saved = sys.argv
    sys.argv = harness_argv(args, extra, str(folder))
    try:
        cli = HarnessCLI()
        cli.execute(cli.parse_args())
    finally:
        sys.argv = saved
    return 0
